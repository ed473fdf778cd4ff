"""Building galleries from an image folder, a Hugging Face dataset, or generated scenes.

Inputs are taken in a fixed order (sorted paths, dataset rows, scene numbers) and cut into
chunks of `batch_size`. Each finished chunk is saved under `OUT/.partial/`, so a run that stops
resumes at the first unfinished chunk. The gallery files are assembled at the end and
`manifest.json` is written last: until then, `Gallery.open` refuses the folder.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import posixpath
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from koclip import ann, domain, gallery
from koclip.atomic import replace_folder, staged, write_atomic
from koclip.api import KoCLIP, load
from koclip.errors import GalleryError, InvalidImageError, KoCLIPError
from koclip.images import ImageInput, open_image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
THUMB_SIDE = 256
THUMB_QUALITY = 85
PARTIAL = ".partial"
MAX_SKIPPED_LISTED = 1_000  # unreadable inputs the manifest names (it counts them all), keeping it small
ENGINES = ("local", "ray")

Key = str | int  # a path relative to the folder, or a row / scene number

# A folder's captions, in Hugging Face imagefolder's layout: metadata.jsonl at its top, one JSON
# object per line, with the image's path (relative to the folder) in `file_name`; its caption is
# the first of CAPTION_COLUMNS the object has.
FOLDER_METADATA = "metadata.jsonl"
CAPTION_COLUMNS = ("caption_ko", "text", "caption")
MAX_METADATA_BYTES = 256 << 20  # a larger file is not read: the folder is indexed without captions
MAX_METADATA_LINE = 1 << 20


class Source(Protocol):
    def describe(self) -> dict[str, Any]: ...

    def keys(self) -> list[Key]: ...

    def read(self, key: Key) -> tuple[ImageInput, dict[str, Any]]:
        """The image (anything `open_image` takes) and extra metadata for it, such as a caption."""
        ...


def _damaged(path: Path, line: int, reason: str) -> KoCLIPError:
    return KoCLIPError(f"{path} line {line} {reason}; correct it, or move the file away to index the images "
                       "without captions")


def read_captions(path: Path) -> dict[str, str]:
    """Captions by image path ('/'-separated, relative to the folder) from an imagefolder metadata.jsonl.

    Only JSON is parsed. A file over MAX_METADATA_BYTES is not read (a warning says so); a line
    that is not a JSON object with a text `file_name` and a text (or null) caption is refused.
    """
    try:
        size = path.stat().st_size
        if size > MAX_METADATA_BYTES:
            print(f"warning: {path} is {size / 2**20:.0f} MiB, more than the {MAX_METADATA_BYTES >> 20} MiB read "
                  "for captions; indexing without captions", file=sys.stderr)
            return {}
        with path.open("rb") as f:
            return _parse_captions(path, iter(lambda: f.readline(MAX_METADATA_LINE + 1), b""))
    except OSError as exc:
        raise KoCLIPError(f"{path} could not be read ({exc}); move it away to index the images without captions") from None


def _parse_captions(path: Path, lines: Iterable[bytes]) -> dict[str, str]:
    captions: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if len(line) > MAX_METADATA_LINE:
            raise _damaged(path, number, f"is longer than {MAX_METADATA_LINE >> 20} MiB")
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _damaged(path, number, f"is not JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
        if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
            raise _damaged(path, number, "is not a JSON object with a file_name")
        column = next((c for c in CAPTION_COLUMNS if row.get(c) is not None), None)
        if column is None:
            continue
        if not isinstance(row[column], str):
            raise _damaged(path, number, f"has a {column} that is not text")
        captions[posixpath.normpath(row["file_name"])] = row[column]
    return captions


@dataclass(frozen=True)
class FolderSource:
    root: Path

    @functools.cached_property
    def captions(self) -> dict[str, str]:
        metadata = self.root / FOLDER_METADATA
        return read_captions(metadata) if metadata.is_file() else {}

    def describe(self) -> dict[str, Any]:
        description = {"kind": "folder", "path": str(self.root.resolve())}
        if self.captions:  # their digest: a resumed run whose captions changed starts over
            text = json.dumps(sorted(self.captions.items()), ensure_ascii=False)
            description["captions"] = f"{FOLDER_METADATA} sha256:{hashlib.sha256(text.encode()).hexdigest()[:16]}"
        return description

    def keys(self) -> list[Key]:
        if not self.root.is_dir():
            raise KoCLIPError(f"{self.root} is not a folder")
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )

    def read(self, key: Key) -> tuple[ImageInput, dict[str, Any]]:
        caption = self.captions.get(str(key))
        return self.root / str(key), {} if caption is None else {"caption": caption}


@dataclass(frozen=True)
class DatasetSource:
    name: str  # a Hub dataset, a folder for `load_dataset`, or one written by `save_to_disk`
    split: str = "train"
    image_column: str = "image"
    caption_column: str | None = None

    def describe(self) -> dict[str, Any]:
        return {"kind": "dataset", "name": self.name, "split": self.split,
                "image_column": self.image_column, "caption_column": self.caption_column}

    @functools.cached_property
    def dataset(self):
        import datasets

        path = Path(self.name)
        try:
            if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
                data = datasets.load_from_disk(str(path))
                data = data[self.split] if isinstance(data, datasets.DatasetDict) else data
            else:
                data = datasets.load_dataset(self.name, split=self.split)
        except (FileNotFoundError, ValueError, KeyError) as exc:
            raise KoCLIPError(f"cannot load dataset {self.name!r} split {self.split!r}: {exc}") from None
        except OSError as exc:  # ConnectionError among them: offline, or the Hub did not answer
            raise KoCLIPError(
                f"dataset {self.name!r} is not in the datasets cache ({datasets.config.HF_DATASETS_CACHE}) and "
                f"could not be downloaded ({exc}). Run this where the Hugging Face Hub can be reached, "
                "or name a dataset folder on this machine instead."
            ) from None
        for column in (self.image_column, self.caption_column):
            if column is not None and column not in data.column_names:
                raise KoCLIPError(f"dataset {self.name!r} has no column {column!r}; it has {', '.join(data.column_names)}")
        if isinstance(data.features[self.image_column], datasets.Image):
            # Undecoded, so that a broken image is skipped here instead of failing inside datasets.
            data = data.cast_column(self.image_column, datasets.Image(decode=False))
        return data

    def keys(self) -> list[Key]:
        return list(range(len(self.dataset)))

    def read(self, key: Key) -> tuple[ImageInput, dict[str, Any]]:
        row = self.dataset[int(key)]
        value = row[self.image_column]
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if value is None:
            raise InvalidImageError(f"row {key} has no image")
        caption = row[self.caption_column] if self.caption_column else None
        return value, {} if caption is None else {"caption": str(caption)}


@dataclass(frozen=True)
class SceneSource:
    n: int
    seed: int = 0
    size: int = 64

    def describe(self) -> dict[str, Any]:
        return {"kind": "scenes", "n": self.n, "seed": self.seed, "size": self.size}

    def keys(self) -> list[Key]:
        return list(range(self.n))

    def read(self, key: Key) -> tuple[ImageInput, dict[str, Any]]:
        from koclip import scenes

        scene = scenes.scene(self.seed, int(key), size=self.size)
        return scene.image, {"caption": scene.captions_ko[0], "objects": scene.objects}


def thumbnail_name(position: int) -> str:
    return f"{gallery.THUMBS}/{position:07d}.jpg"


def thumbnail_jpeg(image: Image.Image) -> bytes:
    """A small JPEG of `image`, at most THUMB_SIDE pixels a side, to show beside results."""
    small = image.copy()
    small.thumbnail((THUMB_SIDE, THUMB_SIDE))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=THUMB_QUALITY)
    return buffer.getvalue()


@dataclass(frozen=True)
class Decoder:
    """Turns a batch of (position, key) into pixels, thumbnails and metadata; unreadable images
    are kept as rows with `ok` False, zero pixels and the reason in `record`."""

    source: Source
    transform: Any  # the model's image preprocessing (`KoCLIP.image_transform`)
    pixel_shape: tuple[int, ...]
    # For a model trained on generated scenes: mark the images unlike them (koclip.domain).
    check_domain: bool = False

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        positions = [int(p) for p in batch["position"]]
        keys = batch["key"].tolist()
        ok = np.zeros(len(keys), bool)
        unlike = np.zeros(len(keys), bool)
        records, thumbs, images = [], [], []
        for row, (position, key) in enumerate(zip(positions, keys)):
            try:
                raw, extra = self.source.read(key)
                image = open_image(raw)
            except InvalidImageError as exc:
                records.append(json.dumps({"source": key, "reason": str(exc)}, ensure_ascii=False))
                thumbs.append(b"")
                continue
            ok[row] = True
            unlike[row] = self.check_domain and domain.scene_likeness(image) < domain.THRESHOLD
            record = {"source": key, "width": image.width, "height": image.height, **extra,
                      "thumbnail": thumbnail_name(position)}
            records.append(json.dumps(record, ensure_ascii=False))
            thumbs.append(thumbnail_jpeg(image))
            images.append(image)
        pixels = np.zeros((len(keys), *self.pixel_shape), np.float32)
        if images:
            pixels[ok] = self.transform(images)
        return {"position": np.array(positions, np.int64), "ok": ok, "unlike": unlike, "record": np.array(records, object),
                "thumb": np.array(thumbs, object), "pixels": pixels}


def encode(model: KoCLIP, batch: dict[str, np.ndarray]) -> np.ndarray:
    """Embeddings for the readable rows of a decoded batch; zeros for the others."""
    vectors = np.zeros((len(batch["ok"]), model.dim), np.float32)
    if batch["ok"].any():
        vectors[batch["ok"]] = model.encode_pixels(batch["pixels"][batch["ok"]])
    return vectors


def _describe_source(description: dict[str, Any]) -> str:
    details = {k: v for k, v in description.items() if k != "kind" and v is not None}
    return f"the {description['kind']} " + ", ".join(f"{k} {v}" for k, v in details.items())


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


class Job:
    """One gallery being built: its chunks, which of them are done, and the final assembly."""

    def __init__(self, out: Path, keys: Sequence[Key], batch_size: int, identity: dict[str, Any]):
        self.out = out
        self.partial = out / PARTIAL
        self.keys = list(keys)
        self.batch_size = batch_size
        self.identity = identity

    @classmethod
    def start(cls, out: str | os.PathLike, keys: Sequence[Key], batch_size: int, identity: dict[str, Any]) -> Job:
        """Prepare `out`, keeping the finished chunks of an interrupted run of the same job."""
        # The inputs' digest: a folder whose files changed since the interrupted run starts over.
        digest = hashlib.sha256(json.dumps(list(keys), ensure_ascii=False).encode()).hexdigest()[:16]
        job = cls(Path(out), keys, batch_size, {**identity, "batch_size": batch_size, "inputs": digest})
        if (job.out / gallery.MANIFEST).exists():
            raise GalleryError(f"{job.out} already holds a gallery; pass --overwrite to replace it")
        if job.out.is_dir() and any(job.out.iterdir()) and not job.partial.is_dir():
            raise GalleryError(f"{job.out} is not empty and is not a gallery; choose another --out")
        stamp = job.partial / "job.json"
        if job.partial.is_dir() and (not stamp.is_file() or json.loads(stamp.read_text()) != job.identity):
            print(f"{job.out}: the unfinished run there used other settings; starting over", file=sys.stderr)
            shutil.rmtree(job.partial)
            _remove(job.out / gallery.THUMBS)
        (job.out / gallery.THUMBS).mkdir(parents=True, exist_ok=True)
        job.partial.mkdir(exist_ok=True)
        write_atomic(stamp, json.dumps(job.identity, sort_keys=True).encode())
        return job

    @property
    def chunk_count(self) -> int:
        return -(-len(self.keys) // self.batch_size)

    def chunk_length(self, index: int) -> int:
        return min(self.batch_size, len(self.keys) - index * self.batch_size)

    def chunk(self, index: int) -> dict[str, np.ndarray]:
        """The (position, key) batch of chunk `index`, as the `Decoder` takes it."""
        start = index * self.batch_size
        keys = self.keys[start : start + self.batch_size]
        return {"position": np.arange(start, start + len(keys)), "key": np.array(keys)}

    def _chunk_file(self, index: int, suffix: str) -> Path:
        return self.partial / f"{index:06d}{suffix}"

    def pending(self) -> list[int]:
        # The .json file is written after the chunk's vectors and thumbnails: it marks it done.
        return [i for i in range(self.chunk_count) if not self._chunk_file(i, ".json").is_file()]

    def commit(self, index: int, batch: dict[str, np.ndarray]) -> None:
        """Save a finished chunk: rows in position order, with a `vector` column."""
        ok = batch["ok"]
        for position, thumb in zip(batch["position"][ok], batch["thumb"][ok]):
            (self.out / thumbnail_name(int(position))).write_bytes(thumb)
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(batch["vector"][ok], np.float32))
        write_atomic(self._chunk_file(index, ".npy"), buffer.getvalue())
        records = [json.loads(r) for r in batch["record"]]
        done = {"rows": [r for r, good in zip(records, ok) if good],
                "skipped": [r for r, good in zip(records, ok) if not good],
                "unlike_training": int(batch["unlike"].sum())}
        write_atomic(self._chunk_file(index, ".json"), json.dumps(done, ensure_ascii=False).encode())

    def finish(self, model: KoCLIP, dtype: str, source: dict[str, Any], ann_threshold: int,
               model_path: str | None = None, memory_budget: int = ann.DEFAULT_BUDGET,
               target_recall: float = ann.TARGET_RECALL, log: Callable[[str], None] = lambda message: None,
               ) -> dict[str, Any]:
        """Assemble the gallery files from the chunks, choose its search index, then write the manifest."""
        rows: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        unlike = 0
        for i in range(self.chunk_count):
            done = json.loads(self._chunk_file(i, ".json").read_text(encoding="utf-8"))
            rows += done["rows"]
            skipped += done["skipped"]
            unlike += done.get("unlike_training", 0)
        if not rows:
            first = skipped[0]
            raise KoCLIPError(
                f"none of the {len(skipped)} inputs could be read as an image (the first, {first['source']}: "
                f"{first['reason']}); no gallery was written"
            )
        tmp = self.out / (gallery.VECTORS + ".tmp")
        vectors = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(len(rows), model.dim))
        start = 0
        for i in range(self.chunk_count):
            part = np.load(self._chunk_file(i, ".npy"), allow_pickle=False)
            vectors[start : start + len(part)] = part
            start += len(part)
        vectors.flush()
        del vectors
        os.replace(tmp, self.out / gallery.VECTORS)
        lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        write_atomic(self.out / gallery.METADATA, lines.encode())
        _remove(self.out / gallery.INDEX_DIR)
        tuning = None
        if len(rows) >= max(ann_threshold, ann.MIN_ROWS):
            final = np.load(self.out / gallery.VECTORS, mmap_mode="r", allow_pickle=False)
            log(f"choosing a search index for {len(rows):,} rows (memory budget {ann.size_text(memory_budget)}, "
                f"target recall@10 {target_recall})")
            choice = ann.choose(final, memory_budget, target_recall, log=log,
                                texts_of=lambda held: _caption_vectors(model, [rows[i] for i in held]))
            if choice.index is not None:
                ann.save(choice.index, self.out)
            tuning = choice.manifest()
            log(f"chose {choice.describe()}")
        manifest = {
            "format_version": gallery.FORMAT_VERSION,
            "model": model.name,
            "model_revision": model.revision,
            "model_path": model_path,
            "dim": model.dim,
            "dtype": dtype,
            "count": len(rows),
            "index": tuning["kind"] if tuning else gallery.EXACT,
            "index_tuning": tuning,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "source": source,
            "skipped": skipped[:MAX_SKIPPED_LISTED],
            "skipped_count": len(skipped),
        }
        if not domain.trained_on_photos(model):
            manifest["unlike_training"] = unlike  # images unlike the generated scenes the model knows
        write_atomic(self.out / gallery.MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2).encode())
        shutil.rmtree(self.partial)
        return manifest


def _caption_vectors(model: KoCLIP, rows: list[dict[str, Any]]) -> np.ndarray:
    """Text embeddings of the rows' captions (rows without one are left out): queries like a visitor's."""
    captions = [row["caption"] for row in rows if isinstance(row.get("caption"), str) and row["caption"].strip()]
    return model.encode_text(captions) if captions else np.zeros((0, model.dim), np.float32)


def _encode_locally(job: Job, pending: list[int], decoder: Decoder, model: KoCLIP, bar: tqdm) -> None:
    """Encode the pending chunks in order, decoding the next chunk on a thread while this one encodes
    (PIL and XLA both release the GIL, so the two overlap)."""
    with ThreadPoolExecutor(1) as pool:
        upcoming = pool.submit(decoder, job.chunk(pending[0])) if pending else None
        for position, index in enumerate(pending):
            batch = upcoming.result()
            if position + 1 < len(pending):
                upcoming = pool.submit(decoder, job.chunk(pending[position + 1]))
            batch["vector"] = encode(model, batch)
            job.commit(index, batch)
            bar.update(len(batch["ok"]))


class _ReportingBar(tqdm):
    """A progress bar that also tells `report(done, total)` of every step, for callers without a terminal."""

    def __init__(self, *args, report: Callable[[int, int], None] | None = None, **kwargs):
        self._report = report
        super().__init__(*args, **kwargs)
        self._count = int(kwargs.get("initial", 0))  # a disabled tqdm does not count

    def update(self, n: float | None = 1) -> bool | None:
        shown = super().update(n)
        self._count += int(n or 0)
        if self._report is not None:
            self._report(self._count, int(self.total))
        return shown


def build(source: Source, model: KoCLIP | str, out: str | os.PathLike, *, batch_size: int = 64,
          dtype: str = "float32", engine: str = "local", workers: int = 1,
          ann_threshold: int = gallery.ANN_THRESHOLD, memory_budget: int = ann.DEFAULT_BUDGET,
          target_recall: float = ann.TARGET_RECALL, overwrite: bool = False,
          backend: str = "auto", progress: bool = True,
          on_progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Index `source` into the gallery folder `out`; returns its manifest.

    `model` is a loaded model, or a name, Hub id or folder to load with `backend`. `on_progress`
    is called with (images done, images in all) after every chunk, and once at the start. Galleries
    of `ann_threshold` rows or more get the fastest approximate index whose memory fits
    `memory_budget` (bytes) and whose recall@10 on held-out rows reaches `target_recall`.
    """
    if engine not in ENGINES:
        raise KoCLIPError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
    if dtype not in gallery.DTYPES:
        raise KoCLIPError(f"unknown dtype {dtype!r}; choose {' or '.join(gallery.DTYPES)}")
    if batch_size < 1:
        raise KoCLIPError(f"batch size must be at least 1, got {batch_size}")
    if isinstance(model, (str, os.PathLike)):
        model_ref, model = str(model), load(model, backend)
    else:  # what a Ray worker loads to get the same model
        model_ref = model.name if model.info is not None else str(model.directory)
        backend = model.backend.name
    description = source.describe()
    identity = {"format_version": gallery.FORMAT_VERSION, "model": model.name,
                "revision": model.revision, "source": description}
    keys = source.keys()
    if not keys:
        raise KoCLIPError(f"{_describe_source(description)} holds no images to index")
    final = Path(out)
    gallery.recover(final)
    if (final / gallery.MANIFEST).exists():
        if not overwrite:
            raise GalleryError(f"{final} already holds a gallery; pass --overwrite to replace it")
        # Built beside the old gallery, which stays searchable until the new one is complete.
        out = staged(final)
        if (out / gallery.MANIFEST).exists() or not (out / PARTIAL).is_dir():
            # Not a run to resume: a gallery a crash kept from the swap (new or, swapped out, old), or
            # what is left of one half deleted.
            _remove(out)
    job = Job.start(out, keys, batch_size, identity)
    pending = job.pending()
    done = len(job.keys) - sum(job.chunk_length(i) for i in pending)
    bar = _ReportingBar(total=len(job.keys), initial=done, unit="img", desc="indexing", disable=not progress,
                        report=on_progress)
    if on_progress is not None:
        on_progress(done, len(job.keys))
    # Every image is resized to one shape: zeros of it stand in for unreadable ones.
    pixel_shape = model.preprocess([Image.new("RGB", (8, 8))]).shape[1:]
    decoder = Decoder(source, model.image_transform, pixel_shape, not domain.trained_on_photos(model))
    with bar:
        if engine == "ray":
            from koclip import ray_engine

            ray_engine.run(job, pending, decoder, model_ref, backend, workers, bar)
        else:
            _encode_locally(job, pending, decoder, model, bar)
    model_path = str(Path(model_ref).resolve()) if Path(model_ref).is_dir() else None
    log = (lambda message: print(message, file=sys.stderr, flush=True)) if progress else (lambda message: None)
    manifest = job.finish(model, dtype, description, ann_threshold, model_path, memory_budget, target_recall, log)
    if job.out != final:
        replace_folder(job.out, final)
    return manifest
