"""Evaluation: retrieval recall, zero-shot accuracy, gallery precision and patch localisation.

Retrieval works on any image-text pairs; the other measures use generated scenes, whose
structured labels say exactly which answers are right. Every measure comes with its chance
level: what a model that ranks at random scores on the same data.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from koclip.api import KoCLIP
from koclip.bench.scoring import recall_at_k, recall_chance
from koclip.data import scenes
from koclip.patches import grid_boxes
from koclip.registry import DEFAULT_TEMPLATE

COLOR_LABEL = "{} 것"  # "빨간 것": a bare adjective needs a noun to read as Korean
PRECISION_KINDS = ("color_shape", "size_color_shape", "position_color_shape")
CROWDED_SCALE = 4  # the crowded gallery holds this many times as many scenes as the plain one


def pair_label(color: str, shape: str) -> str:
    """The colour+shape phrase that names an object, as captions do: "빨간 원"."""
    return f"{color} {shape}"


def object_label(obj: dict[str, Any]) -> str:
    """The colour+shape phrase of a scene's object (see `pair_label`)."""
    return pair_label(obj["color"], obj["shape"])


# ---------------------------------------------------------------- retrieval


def retrieval(model: KoCLIP, images: Sequence, captions: Sequence[str], relevant: np.ndarray | None = None) -> dict:
    """Text→image and image→text Recall@1/5/10; `relevant[i, j]`: caption i describes image j."""
    relevant = np.eye(len(captions), dtype=bool) if relevant is None else relevant
    sim = model.encode_text(list(captions)) @ model.encode_image(list(images)).T
    return {
        "text_to_image": recall_at_k(sim, relevant),
        "image_to_text": recall_at_k(sim.T, relevant.T),
    }


def retrieval_chance(relevant: np.ndarray) -> dict:
    """The chance levels of `retrieval`, both ways, for a (captions, images) boolean relevance matrix."""
    return {"text_to_image": recall_chance(relevant), "image_to_text": recall_chance(relevant.T)}


def relevance(queries: Sequence[scenes.Query], gallery: Sequence[scenes.Scene]) -> np.ndarray:
    """`relevant[i, j]`: a caption claiming `queries[i]` describes `gallery[j]`.

    Only scenes holding every colour+shape pair a query names are checked in full.
    """
    holding = defaultdict(set)
    for j, s in enumerate(gallery):
        for o in s.objects:
            holding[(o["shape"], o["color"])].add(j)
    everyone = set(range(len(gallery)))
    relevant = np.zeros((len(queries), len(gallery)), dtype=bool)
    for i, query in enumerate(queries):
        named = [holding[(sp.shape, sp.color)] for sp in query.specs if sp.shape and sp.color]
        for j in set.intersection(everyone, *named):
            relevant[i, j] = scenes.matches(query, gallery[j].objects)
    return relevant


def scene_relevance(gallery: Sequence[scenes.Scene]) -> np.ndarray:
    """Which scenes each scene's main caption (its first) describes."""
    return relevance([s.queries[0] for s in gallery], gallery)


def scene_retrieval(model: KoCLIP, gallery: Sequence[scenes.Scene]) -> dict:
    """`retrieval` between scenes and their main captions; any scene a caption describes is a hit."""
    return retrieval(model, [s.image for s in gallery], [s.captions_ko[0] for s in gallery], scene_relevance(gallery))


# ---------------------------------------------------------------- zero-shot classification


def zero_shot_accuracy(
    model: KoCLIP, images: Sequence, truth: Sequence[str], labels: Sequence[str], template=DEFAULT_TEMPLATE
) -> float:
    """Accuracy of picking `truth[i]` among `labels` for image i (labels embedded once)."""
    label_emb = model.label_embeddings(labels, template)
    predicted = np.argmax(model.encode_image(list(images)) @ label_emb.T, axis=1)
    return float(np.mean([labels[p] == t for p, t in zip(predicted, truth)]))


def single_objects(n: int, seed: int, size: int) -> list[scenes.Scene]:
    """`n` scenes of one object each from stream `seed`, `size` pixels a side."""
    return [scenes.scene(seed, i, size, max_objects=1) for i in range(n)]


def zero_shot_on_scenes(model: KoCLIP, singles: Sequence[scenes.Scene]) -> dict[str, float]:
    """Zero-shot accuracy on one-object scenes: of the shape, of the colour, of the shape with bare labels (no
    template), and of the shape asked in English."""
    images = [s.image for s in singles]
    shapes = [s.objects[0]["shape"] for s in singles]
    colors = [s.objects[0]["color"] for s in singles]
    return {
        "shape": zero_shot_accuracy(model, images, shapes, list(scenes.SHAPES)),
        "color": zero_shot_accuracy(
            model, images, [COLOR_LABEL.format(c) for c in colors], [COLOR_LABEL.format(c) for c in scenes.COLORS]
        ),
        "shape_no_template": zero_shot_accuracy(model, images, shapes, list(scenes.SHAPES), template=None),
        # The multilinguality probe: the same task asked in English.
        "shape_english": zero_shot_accuracy(
            model,
            images,
            [scenes.ENGLISH[s] for s in shapes],
            [scenes.ENGLISH[s] for s in scenes.SHAPES],
            template="this is a {}.",
        ),
    }


ZERO_SHOT_CHANCE = {
    "shape": 1 / len(scenes.SHAPES),
    "color": 1 / len(scenes.COLORS),
    "shape_no_template": 1 / len(scenes.SHAPES),
    "shape_english": 1 / len(scenes.SHAPES),
}


def near_misses(obj: dict[str, Any], objects: Sequence[dict[str, Any]]) -> list[tuple[str, str]]:
    """The (colour, shape) pairs one attribute away from `obj`'s that no object in `objects` has.

    For a red circle beside a blue star: 빨간 사각형, 빨간 별, ... and 파란 원, 초록 원, ...; 빨간 별
    and 파란 원 are made of words that do describe something in the scene.
    """
    held = {(o["color"], o["shape"]) for o in objects}
    color, shape = obj["color"], obj["shape"]
    return [(c, s) for c, s in scenes.PAIRS if (s == shape) != (c == color) and (c, s) not in held]


def near_miss_items(crowd: Sequence[scenes.Scene]) -> list[tuple[int, int, list[int]]]:
    """(scene, true pair, candidate pairs) for every object of every scene with several objects;
    pairs are indices into scenes.PAIRS, candidates in its order (the first wins a tie)."""
    items = []
    for i, s in enumerate(crowd):
        if len(s.objects) < 2:
            continue
        for obj in s.objects:
            truth = scenes.PAIRS.index((obj["color"], obj["shape"]))
            candidates = sorted([truth] + [scenes.PAIRS.index(p) for p in near_misses(obj, s.objects)])
            items.append((i, truth, candidates))
    return items


def near_miss_accuracy(model: KoCLIP, crowd: Sequence[scenes.Scene], template=DEFAULT_TEMPLATE) -> float:
    """Share of objects in scenes of several objects whose colour+shape label beats its near misses.

    A model that knows colours and shapes but not which goes with which falls for the near misses
    made of words that describe other objects in the scene.
    """
    labels = model.label_embeddings([pair_label(*pair) for pair in scenes.PAIRS], template)
    scores = model.encode_image([s.image for s in crowd]) @ labels.T
    return float(np.mean([c[int(np.argmax(scores[i, c]))] == t for i, t, c in near_miss_items(crowd)]))


def near_miss_chance(crowd: Sequence[scenes.Scene]) -> float:
    """The accuracy of a random pick among each near-miss item's candidate pairs (see `near_miss_items`), averaged
    over the items."""
    return float(np.mean([1 / len(c) for _, _, c in near_miss_items(crowd)]))


# ---------------------------------------------------------------- gallery precision, binding, patches


def object_queries(kind: str = "color_shape") -> list[tuple[str, scenes.ObjectSpec]]:
    """Phrases that name one object, as captions do, with what each claims.

    "color_shape": 빨간 원; "size_color_shape": 큰 빨간 원; "position_color_shape": 왼쪽에 있는
    빨간 원. The last two have near misses in every crowded gallery: the same object at another
    size or in another place.
    """
    if kind == "color_shape":
        return [(pair_label(c, s), scenes.ObjectSpec(shape=s, color=c)) for c, s in scenes.PAIRS]
    if kind == "size_color_shape":
        return [
            (f"{z} {pair_label(c, s)}", scenes.ObjectSpec(shape=s, color=c, size=z))
            for z in scenes.SIZES
            for c, s in scenes.PAIRS
        ]
    if kind == "position_color_shape":
        return [
            (f"{p}에 있는 {pair_label(c, s)}", scenes.ObjectSpec(shape=s, color=c, position=p))
            for p in scenes.POSITIONS
            for c, s in scenes.PAIRS
        ]
    raise ValueError(f"unknown kind of query: {kind!r}")


def _object_relevance(gallery: Sequence[scenes.Scene], kind: str) -> tuple[list[str], np.ndarray]:
    """The queries of `kind` that some scene answers, and which scenes answer each."""
    queries = object_queries(kind)
    relevant = relevance([scenes.Query((spec,)) for _, spec in queries], gallery)
    held = relevant.any(axis=1)
    return [text for (text, _), h in zip(queries, held) if h], relevant[held]


def precision_at_k(model: KoCLIP, gallery: Sequence[scenes.Scene], k: int = 10, kind: str = "color_shape") -> float:
    """Mean precision@k of one-object queries (`object_queries(kind)`) over a scene gallery.

    A hit is any image holding such an object; with fewer than k such images the best
    possible count is the denominator, so a perfect ranking scores 1. Queries that no image
    answers are left out.
    """
    texts, relevant = _object_relevance(gallery, kind)
    scores = model.encode_text(texts) @ model.encode_image([s.image for s in gallery]).T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    hits = np.take_along_axis(relevant, top, axis=1).sum(axis=1)
    return float(np.mean(hits / np.minimum(k, relevant.sum(axis=1))))


def precision_chance(gallery: Sequence[scenes.Scene], k: int = 10, kind: str = "color_shape") -> float:
    """The expected `precision_at_k` of a random ranking: k r / n hits for r relevant of n."""
    counts = _object_relevance(gallery, kind)[1].sum(axis=1)
    return float(np.mean(k * counts / len(gallery) / np.minimum(k, counts)))


def binding(model: KoCLIP, pairs: Sequence[tuple[scenes.Scene, scenes.Scene]]) -> float:
    """Share of swapped pairs (`scenes.swapped_pair`) in which "colour shape" of the first scene's
    first object scores that scene above its swap. A bag of attributes scores 0.5."""
    true = model.encode_image([a.image for a, _ in pairs])
    swapped = model.encode_image([b.image for _, b in pairs])
    queries = model.encode_text([object_label(a.objects[0]) for a, _ in pairs])
    return float(np.mean((queries * true).sum(axis=1) > (queries * swapped).sum(axis=1)))


Board = tuple[Image.Image, list[tuple[str, tuple[int, int]]]]  # an image, and (query, the right cell) pairs


def composite_board(composite: scenes.Scene) -> Board:
    """A `scenes.composite` board, with every object's colour+shape as a query."""
    return composite.image, [(object_label(o), tuple(o["cell"])) for o in composite.objects]


def mosaic_boards(crowd: Sequence[scenes.Scene], count: int, seed: int, grid: int = 3) -> list[Board]:
    """`count` grid x grid mosaics of scenes from `crowd`, each with one query.

    The query names an object of one cell's scene. Every other cell's scene has the query's
    colour and its shape, on different objects, so only binding colour to shape finds the cell.
    """
    rng = np.random.default_rng(seed)
    side = crowd[0].image.width
    crowded = [s for s in crowd if len(s.objects) > 1]
    others = grid * grid - 1
    boards = []
    while len(boards) < count:
        target = crowded[rng.integers(len(crowded))]
        obj = target.objects[rng.integers(len(target.objects))]
        parts = scenes.Query((scenes.ObjectSpec(shape=obj["shape"]), scenes.ObjectSpec(color=obj["color"])))
        whole = scenes.Query((scenes.ObjectSpec(shape=obj["shape"], color=obj["color"]),))
        misses = [s for s in crowded if scenes.matches(parts, s.objects) and not scenes.matches(whole, s.objects)]
        if not misses:
            continue
        tiles = [misses[i] for i in rng.choice(len(misses), others, replace=len(misses) < others)]
        where = int(rng.integers(grid * grid))
        tiles.insert(where, target)
        image = Image.new("RGB", (grid * side, grid * side))
        for i, tile in enumerate(tiles):
            image.paste(tile.image, (i % grid * side, i // grid * side))
        boards.append((image, [(object_label(obj), divmod(where, grid))]))
    return boards


def patch_localisation(model: KoCLIP, boards: Sequence[Board], grid: int = 3) -> float:
    """Share of board queries whose cell ranks first, the cells scored as
    `koclip.patches.rank_patches` scores them. Each cell is encoded once for all its board's queries."""
    crops = [image.crop(box) for image, _ in boards for box in grid_boxes(image.width, image.height, grid, grid)]
    cells = model.encode_image(crops).reshape(len(boards), grid * grid, -1)
    queries = iter(model.encode_text([text for _, asked in boards for text, _ in asked]))
    correct = [
        divmod(int(np.argmax(board_cells @ next(queries))), grid) == cell
        for (_, asked), board_cells in zip(boards, cells)
        for _, cell in asked
    ]
    return float(np.mean(correct))


# ---------------------------------------------------------------- the whole evaluation


def evaluate_scenes(
    model: KoCLIP,
    n: int = 500,
    seed: int = 1_000_003,
    size: int = 64,
    composites: int = 50,
    grid: int = 3,
    progress: bool = False,
) -> dict:
    """Every scene measure, on scenes generated afresh from `seed` (unseen in training).

    The top-level measures use `n` scenes of 1 to 3 objects, `n` single objects, `n // 2` swapped
    pairs and `composites` grid x grid boards of single objects. Those under "crowded" are
    harder: a gallery of `4 n` scenes of 1 to 5 objects, labels against near misses (with the
    template and without), queries that also name size or position, `n` swapped pairs of up to
    5 objects and `composites` grid x grid mosaics of crowded scenes. "chance" holds each
    measure's chance level under the same keys. `progress` shows a bar on stderr.
    """
    many = scenes.MAX_OBJECTS

    @functools.cache
    def gallery():
        return scenes.generate(n, seed, size)

    @functools.cache
    def crowd():
        return scenes.generate(CROWDED_SCALE * n, seed, size, many)

    def swapped(count: int, max_objects: int) -> list[tuple[scenes.Scene, scenes.Scene]]:
        return [scenes.swapped_pair(seed, i, size, max_objects) for i in range(count)]

    def boards() -> list[Board]:
        return [composite_board(scenes.composite(seed, grid, size, i)) for i in range(composites)]

    def precision(scenes_of: Callable[[], list[scenes.Scene]], kind: str = "color_shape"):
        return lambda: precision_at_k(model, scenes_of(), kind=kind), lambda: precision_chance(scenes_of(), kind=kind)

    def retrieval_of(scenes_of: Callable[[], list[scenes.Scene]]):
        return lambda: scene_retrieval(model, scenes_of()), lambda: retrieval_chance(scene_relevance(scenes_of()))

    patch_chance = 1 / grid**2
    # (where the result goes, the measure, its chance level)
    steps: list[tuple[tuple[str, ...], Callable[[], Any], Callable[[], Any]]] = [
        (("zero_shot",), lambda: zero_shot_on_scenes(model, single_objects(n, seed, size)), lambda: ZERO_SHOT_CHANCE),
        (("precision@10",), *precision(gallery)),
        (("binding",), lambda: binding(model, swapped(n // 2, 3)), lambda: 0.5),
        (("retrieval",), *retrieval_of(gallery)),
        (("patch_top1",), lambda: patch_localisation(model, boards(), grid), lambda: patch_chance),
        (("crowded", "near_miss"), lambda: near_miss_accuracy(model, crowd()), lambda: near_miss_chance(crowd())),
        (
            ("crowded", "near_miss_no_template"),
            lambda: near_miss_accuracy(model, crowd(), template=None),
            lambda: near_miss_chance(crowd()),
        ),
        *[(("crowded", "precision@10", kind), *precision(crowd, kind)) for kind in PRECISION_KINDS],
        (("crowded", "binding"), lambda: binding(model, swapped(n, many)), lambda: 0.5),
        (("crowded", "retrieval"), *retrieval_of(crowd)),
        (
            ("crowded", "patch_top1"),
            lambda: patch_localisation(model, mosaic_boards(crowd(), composites, seed, grid), grid),
            lambda: patch_chance,
        ),
    ]
    results: dict[str, Any] = {"model": model.name, "seed": seed}
    chance: dict[str, Any] = {}
    with tqdm(steps, desc="evaluating", unit="measure", disable=not progress) as bar:
        for path, score, expected in bar:
            bar.set_postfix_str("/".join(path))
            _put(results, path, score())
            _put(chance, path, expected())
    results["chance"] = chance
    return results


def _put(tree: dict, path: tuple[str, ...], value) -> None:
    for key in path[:-1]:
        tree = tree.setdefault(key, {})
    tree[path[-1]] = value


def evaluate_dataset(model: KoCLIP, name: str, split: str, image_column: str, text_column: str, n: int) -> dict:
    """Recall@1/5/10 on the first `n` rows of a captioned dataset (the first caption of each row)."""
    from koclip.data.datasets import image_column as images_in
    from koclip.data.datasets import open_dataset

    rows = open_dataset(name, split, (image_column, text_column))
    rows = images_in(rows.select(range(min(n, len(rows)))), name, image_column)
    captions = [t if isinstance(t, str) else t[0] for t in rows[text_column]]
    return {
        "model": model.name,
        "data": name,
        "split": split,
        "n": len(rows),
        "retrieval": retrieval(model, rows[image_column], captions),
        "chance": {"retrieval": retrieval_chance(np.eye(len(rows), dtype=bool))},
    }


def format_report(results: dict) -> str:
    """The nested results as `name: value` lines, each measure followed by its chance level."""
    lines: list[str] = []

    def walk(tree: dict, chance: dict, indent: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                lines.append(f"{indent}{key}:")
                walk(value, chance.get(key, {}), indent + "  ")
            elif isinstance(value, float):
                suffix = f"  (chance {chance[key]:.3f})" if key in chance else ""
                lines.append(f"{indent}{key}: {value:.3f}{suffix}")
            else:
                lines.append(f"{indent}{key}: {value}")

    walk({k: v for k, v in results.items() if k != "chance"}, results.get("chance", {}), "")
    return "\n".join(lines)
