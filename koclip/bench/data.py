"""The benchmark sets by name: where each lives (Hub dataset, split, columns), what it measures and
what to know about it; and any other captioned dataset or folder, or koclip's generated scenes.

Every set is read through `koclip.data.datasets.open_dataset`. Images are decoded a batch at a time.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from koclip.errors import KoCLIPError
from koclip.registry import DEFAULT_TEMPLATE

# CIFAR-10's classes in label order (airplane, automobile, bird, cat, deer, dog, frog, horse, ship, truck).
CIFAR10_KO = ("비행기", "자동차", "새", "고양이", "사슴", "개", "개구리", "말", "배", "트럭")

# Template sets for zero-shot classification, by name: the bare label, koclip's prompt, an ensemble.
TEMPLATE_SETS: dict[str, tuple[str, ...]] = {
    "bare": ("{}",),
    "prompt": (DEFAULT_TEMPLATE,),
    "ensemble": (DEFAULT_TEMPLATE, "{}의 사진", "{}의 그림", "사진 속의 {}", "작은 {}의 사진", "{}의 흐릿한 사진"),
}

XTD10_WARNING = (
    "XTD10's 1,000 images come from COCO 2014, and about 800 of them are in train2014, which koclip-base and "
    "koclip-large were trained on: their XTD10 scores are inflated; compare models on xm3600-ko"
)
SCENE_SEED = 1_000_003  # held out: training uses seed 0, as `eval` does


@dataclasses.dataclass(frozen=True)
class Benchmark:
    """A named benchmark: `task` "retrieval" (images with captions) or "classification" (images with
    a class each, named by `labels`), read from `hub`'s `split` or generated (`hub` "scenes")."""

    name: str
    task: str
    about: str
    hub: str | None
    split: str = "test"
    image_column: str = "image"
    text_column: str | None = None
    label_column: str | None = None
    labels: tuple[str, ...] = ()
    language: str = "ko"
    warning: str | None = None


BENCHMARKS = {
    b.name: b
    for b in (
        Benchmark(
            "xm3600-ko",
            "retrieval",
            "Crossmodal-3600: 3,600 Open Images photos, human Korean captions (no COCO overlap)",
            "floschne/xm3600",
            split="ko",
            text_column="captions",
        ),
        Benchmark(
            "xm3600-en",
            "retrieval",
            "Crossmodal-3600 with its English captions: the same photos, the language swapped",
            "floschne/xm3600",
            split="en",
            text_column="captions",
            language="en",
        ),
        Benchmark(
            "xtd10-ko",
            "retrieval",
            "XTD10: 1,000 COCO 2014 images with a Korean caption each",
            None,
            text_column="captions",
            warning=XTD10_WARNING,
        ),
        Benchmark(
            "cifar10-ko",
            "classification",
            "CIFAR-10's 10,000 test images, classes named in Korean",
            "uoft-cs/cifar10",
            image_column="img",
            label_column="label",
            labels=CIFAR10_KO,
        ),
        Benchmark("scenes", "retrieval", "koclip's generated scenes with their Korean captions (offline)", "scenes"),
        Benchmark(
            "scenes-en",
            "retrieval",
            "the same scenes with an English caption each: the language swap",
            "scenes",
            language="en",
        ),
        Benchmark(
            "scenes-objects",
            "classification",
            "generated single objects, classed by colour and shape (40 classes, 빨간 원 ...)",
            "scenes",
        ),
    )
}


@dataclasses.dataclass
class Data:
    """A benchmark's rows, ready to score: `images(start, end)` decodes rows start..end-1; `captions[i]`
    (retrieval) or `targets[i]` (classification) is row i's. `identity` names the rows for the cache."""

    name: str
    task: str
    source: str
    split: str
    identity: str
    size: int
    images: Callable[[int, int], list]
    captions: list[list[str]] | None = None
    targets: list[int] | None = None
    labels: tuple[str, ...] = ()
    language: str = "ko"
    warning: str | None = None


def parse(spec: str) -> tuple[str, str | None]:
    """`NAME` or `NAME=FOLDER` (a benchmark's copy saved by datasets' `save_to_disk`) as (name, folder)."""
    name, _, folder = spec.partition("=")
    if folder and name not in BENCHMARKS:
        raise KoCLIPError(
            f"{name!r} is not a benchmark name (they are {', '.join(BENCHMARKS)}), so =FOLDER means nothing"
        )
    return name, folder or None


def open_data(
    spec: str,
    limit: int | None = None,
    split: str = "test",
    image_column: str = "image",
    text_column: str = "captions",
    scenes: int = 500,
    scene_size: int = 64,
) -> Data:
    """The rows of `spec`: a benchmark name (BENCHMARKS), `NAME=FOLDER`, or any dataset folder or Hub
    dataset with images in `image_column` and a caption or a list of captions in `text_column` (retrieval).
    At most `limit` rows (the first); generated scene sets hold `scenes` scenes of `scene_size` pixels."""
    name, folder = parse(spec)
    bench = BENCHMARKS.get(name)
    if bench is None:
        bench = Benchmark(name, "retrieval", "a captioned dataset", name, split, image_column, text_column)
    if bench.hub == "scenes":
        return _scene_data(bench, scenes if limit is None else min(scenes, limit), scene_size)
    if folder is None and bench.hub is None:
        raise KoCLIPError(
            f"{name} has no copy on the Hugging Face Hub that holds its images, so none was looked for; save one with "
            f"datasets' save_to_disk (columns {bench.image_column!r}: images, {bench.text_column!r}: captions) and "
            f"give it as --data {name}=FOLDER"
        )
    source = folder or bench.hub
    columns = (bench.image_column, bench.text_column, bench.label_column)
    instead = f"save it elsewhere with save_to_disk, copy it here and give --data {name}=FOLDER"
    rows = _open(source, bench.split, columns, instead if name in BENCHMARKS else "name a dataset folder instead")
    fingerprint = getattr(rows, "_fingerprint", "")  # of all the rows: a --limit run shares their cache
    if limit is not None:
        rows = rows.select(range(min(limit, len(rows))))
    images = _image_rows(rows, source, bench.image_column)
    data = Data(
        name,
        bench.task,
        str(source),
        bench.split,
        f"{source}:{bench.split}:{fingerprint}",
        len(rows),
        lambda start, end: images[start:end][bench.image_column],
        language=bench.language,
        warning=bench.warning,
    )
    if bench.task == "retrieval":
        data.captions = _captions(rows, source, bench.text_column)
    else:
        data.targets = [int(t) for t in _column(rows, bench.label_column)]
        data.labels = bench.labels
        if data.targets and not 0 <= min(data.targets) <= max(data.targets) < len(bench.labels):
            raise KoCLIPError(
                f"column {bench.label_column!r} of {source} holds classes {min(data.targets)}..{max(data.targets)}, "
                f"but {name} names {len(bench.labels)}"
            )
    return data


def _open(source: str, split: str, columns: Sequence[str | None], instead: str):
    from koclip.data.datasets import open_dataset

    return open_dataset(
        str(Path(source).expanduser()) if Path(source).expanduser().exists() else source, split, columns, instead
    )


def _image_rows(rows, source: str, column: str):
    from koclip.data.datasets import image_column

    return image_column(rows, source, column).select_columns([column])


def _column(rows, column: str) -> list:
    return rows.select_columns([column])[0 : len(rows)][column]


def _captions(rows, source: str, column: str) -> list[list[str]]:
    values = _column(rows, column)
    captions = []
    for i, value in enumerate(values):
        texts = [value] if isinstance(value, str) else value
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise KoCLIPError(
                f"column {column!r} of {source} must hold a caption or a list of captions; row {i} holds "
                f"{type(value).__name__}"
            )
        captions.append(texts)
    return captions


def _scene_data(bench: Benchmark, n: int, size: int) -> Data:
    from koclip.data import scenes
    from koclip.training.evaluate import pair_label, single_objects

    identity = f"scenes:{bench.name}:seed={SCENE_SEED}:size={size}"
    common = dict(source="generated", split=f"seed {SCENE_SEED}", identity=identity, size=n, language=bench.language)
    if bench.task == "classification":
        singles = single_objects(n, SCENE_SEED, size)
        targets = [scenes.PAIRS.index((s.objects[0]["color"], s.objects[0]["shape"])) for s in singles]
        labels = tuple(pair_label(*pair) for pair in scenes.PAIRS)
        images = [s.image for s in singles]
        return Data(
            bench.name, "classification", images=lambda a, b: images[a:b], targets=targets, labels=labels, **common
        )
    gallery = scenes.generate(n, SCENE_SEED, size)
    captions = [s.captions_ko if bench.language == "ko" else [s.caption_en] for s in gallery]
    images = [s.image for s in gallery]
    return Data(bench.name, "retrieval", images=lambda a, b: images[a:b], captions=captions, **common)
