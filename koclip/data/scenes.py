"""Synthetic scenes: coloured shapes on plain backgrounds, with Korean captions.

Every caption comes with a `Query` that states exactly what the caption claims. Training uses it
to find every image in a batch that a caption also describes (several positives per caption);
evaluation uses it to score a retrieved image as a hit. Scene `i` of seed `s` depends only on
`(s, i)`, so a larger run extends a smaller one without changing it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw

if TYPE_CHECKING:
    import datasets

SHAPES = ("원", "사각형", "삼각형", "별", "하트")
COLORS = ("빨간", "파란", "초록", "노란", "보라", "주황", "검은", "흰")
SIZES = ("큰", "작은")
POSITIONS = ("왼쪽", "오른쪽", "위", "아래", "가운데")
PAIRS = tuple((color, shape) for color in COLORS for shape in SHAPES)  # every (colour, shape) an object may be
ENGLISH: dict[str, str] = dict(
    zip(
        SHAPES + COLORS + SIZES + POSITIONS,
        ("circle", "square", "triangle", "star", "heart")
        + ("red", "blue", "green", "yellow", "purple", "orange", "black", "white")
        + ("big", "small")
        + ("left", "right", "top", "bottom", "center"),
    )
)

MIN_SIZE = 16  # below this a small shape is a few pixels and no longer recognisable
MAX_OBJECTS = 5  # more small shapes than this rarely fit a canvas without overlapping
MAX_GRID = 6  # a composite needs a distinct colour+shape pair per cell: 36 of the 40 pairs

RGB = {
    "빨간": (220, 30, 30),
    "파란": (30, 70, 220),
    "초록": (30, 160, 50),
    "노란": (245, 210, 20),
    "보라": (140, 50, 180),
    "주황": (245, 130, 20),
    "검은": (20, 20, 20),
    "흰": (250, 250, 250),
}
# Light pastels, two mid tones and a dark one. The mid tones contrast with every object colour,
# so any set of colours has at least one background to go on.
BACKGROUNDS = np.array(
    [
        (238, 236, 230),
        (222, 228, 236),
        (246, 214, 220),
        (214, 238, 214),
        (204, 222, 244),
        (248, 240, 204),
        (226, 216, 242),
        (120, 150, 140),
        (150, 140, 120),
        (56, 60, 70),
    ],
    dtype=float,
)
MIN_CONTRAST = 100.0  # RGB distance between an object colour and any background colour under it
GRADIENT = 18.0  # largest brightness shift across a gradient background
_NOISE = 4.0  # std of the per-pixel background noise
_SUPERSAMPLE = 4
_SIDE = {"큰": (0.40, 0.55), "작은": (0.22, 0.30)}  # object extent as a fraction of the canvas
_ROTATABLE = ("사각형", "삼각형", "별")
_MAX_ROTATION = 15.0
_MAX_OVERLAP = 0.1  # of the smaller box; below 0.25 no object can cover another's centre
_SINGLE_SHARE = 0.4

_NUMBERS = ("한", "두", "세", "네", "다섯", "여섯", "일곱", "여덟", "아홉")
_EN_WHERE = {
    "왼쪽": "on the left",
    "오른쪽": "on the right",
    "위": "at the top",
    "아래": "at the bottom",
    "가운데": "in the center",
}
# Centre ranges (x, y), as canvas fractions, whose objects `_position` names each position.
_REGIONS = {
    "왼쪽": ((0.0, 1 / 3), (0.0, 1.0)),
    "오른쪽": ((2 / 3, 1.0), (0.0, 1.0)),
    "위": ((1 / 3, 2 / 3), (0.0, 1 / 3)),
    "아래": ((1 / 3, 2 / 3), (2 / 3, 1.0)),
    "가운데": ((1 / 3, 2 / 3), (1 / 3, 2 / 3)),
}


@dataclass(frozen=True)
class ObjectSpec:
    """A partial description of one object; a field left as None matches anything."""

    shape: str | None = None
    color: str | None = None
    size: str | None = None
    position: str | None = None


@dataclass(frozen=True)
class Query:
    """What a caption claims: every spec is met by some object in the image.

    When `count` is set (only with a single spec), exactly `count` objects meet `specs[0]`.
    """

    specs: tuple[ObjectSpec, ...]
    count: int | None = None


_SPEC_KEYS = ("shape", "color", "size", "position")


@dataclass
class Scene:
    """One generated scene: the PIL image, its objects (dicts with their shape, colour and place), Korean captions
    with the query each claims, and an English caption."""

    image: Image.Image
    objects: list[dict[str, Any]]
    captions_ko: list[str]
    queries: list[Query]  # queries[i] is what captions_ko[i] claims
    caption_en: str


def _fits(spec: ObjectSpec, obj: dict[str, Any]) -> bool:
    return all((wanted := getattr(spec, key)) is None or obj[key] == wanted for key in _SPEC_KEYS)


def matches(query: Query, objects: list[dict[str, Any]]) -> bool:
    """Whether an image with these objects is described by a caption with this query."""
    if not all(any(_fits(spec, o) for o in objects) for spec in query.specs):
        return False
    return query.count is None or sum(_fits(query.specs[0], o) for o in objects) == query.count


# ---------------------------------------------------------------- geometry and drawing


def _normalise(points: np.ndarray) -> np.ndarray:
    """Centre a polygon on its bounding box and scale its longer side to 1."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    return (points - (lo + hi) / 2) / (hi - lo).max()


def _unit_outline(shape: str) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    if shape == "원":
        points = np.stack([np.cos(t), np.sin(t)], axis=1)
    elif shape == "사각형":
        points = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], dtype=float)
    elif shape == "삼각형":
        points = np.array([[0, -1], [1, 1], [-1, 1]], dtype=float)
    elif shape == "별":
        # Inner radius 0.45 rather than the geometric 0.38: fatter arms survive downsampling.
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, 1.0, 0.45)
        points = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    else:  # heart: the classic parametric curve, y flipped because image y points down
        x = 16 * np.sin(t) ** 3
        y = 13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t)
        points = np.stack([x, -y], axis=1)
    return _normalise(points)


_OUTLINES = {shape: _unit_outline(shape) for shape in SHAPES}


def _outline(shape: str, extent: float, angle: float, cx: float, cy: float) -> np.ndarray:
    """The shape's polygon in pixels: bounding box centred on (cx, cy), longer side `extent`."""
    a = np.radians(angle)
    rotation = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return _normalise(_OUTLINES[shape] @ rotation.T) * extent + (cx, cy)


def _position(box: list[int], width: int, height: int) -> str:
    """Name the position of a box from its centre, so the word always agrees with the box."""
    cx, cy = (box[0] + box[2]) / 2 / width, (box[1] + box[3]) / 2 / height
    if cx < 1 / 3:
        return "왼쪽"
    if cx > 2 / 3:
        return "오른쪽"
    if cy < 1 / 3:
        return "위"
    return "아래" if cy > 2 / 3 else "가운데"


def _make(
    rng: np.random.Generator,
    shape: str,
    color: str,
    size: str,
    extent: float,
    cx: float,
    cy: float,
    canvas: tuple[int, int],
) -> tuple[dict[str, Any], np.ndarray]:
    """One object: its record (box, derived position) and the polygon to draw."""
    angle = rng.uniform(-_MAX_ROTATION, _MAX_ROTATION) if shape in _ROTATABLE else 0.0
    outline = _outline(shape, extent, angle, cx, cy)
    (x0, y0), (x1, y1) = np.floor(outline.min(axis=0)), np.ceil(outline.max(axis=0))
    box = [int(x0), int(y0), int(x1), int(y1)]
    position = _position(box, *canvas)
    obj = {"shape": shape, "color": color, "size": size, "position": position, "box": box}
    return obj, outline


def _overlap(a: list[float], b: list[int]) -> float:
    """Intersection area as a fraction of the smaller box."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    smaller = min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))
    return max(w, 0) * max(h, 0) / smaller


def _scatter(
    rng: np.random.Generator, pairs: list[tuple[str, str]], side: int
) -> list[tuple[dict[str, Any], np.ndarray]]:
    """Place the (shape, colour) pairs on a side x side canvas with little overlap."""
    while True:  # start the layout over when an object finds no free spot
        placed: list[tuple[dict[str, Any], np.ndarray]] = []
        for shape, color in pairs:
            size = SIZES[rng.integers(len(SIZES))]  # drawn once, so big objects stay common
            for _ in range(50):
                extent = side * rng.uniform(*_SIDE[size])
                # Aim at a random position's region so every position word is common.
                margin = extent / 2 / side
                (ax, bx), (ay, by) = _REGIONS[POSITIONS[rng.integers(len(POSITIONS))]]
                cx = rng.uniform(max(ax, margin), min(bx, 1 - margin)) * side
                cy = rng.uniform(max(ay, margin), min(by, 1 - margin)) * side
                # The square of side `extent` holds the object however it ends up rotated.
                bound = [cx - extent / 2, cy - extent / 2, cx + extent / 2, cy + extent / 2]
                if all(_overlap(bound, o["box"]) <= _MAX_OVERLAP for o, _ in placed):
                    placed.append(_make(rng, shape, color, size, extent, cx, cy, (side, side)))
                    break
            else:
                break
        else:
            return placed


def _background(rng: np.random.Generator, colors: list[str], width: int, height: int) -> Image.Image:
    """A solid, gradient or lightly noisy background that contrasts with every colour in `colors`.

    It is made at output size and enlarged without smoothing, so its noise stays per-pixel
    after the final downsampling.
    """
    style = rng.integers(3)
    shift = rng.uniform(-GRADIENT, GRADIENT) if style == 1 else 0.0
    # Both ends of a gradient must contrast with every object colour.
    ends = np.clip(BACKGROUNDS[:, None, :] + [[0.0], [shift]], 0, 255)  # (background, end, rgb)
    objects = np.array([RGB[c] for c in colors], dtype=float)
    distance = np.linalg.norm(ends[:, :, None, :] - objects[None, None], axis=-1)
    usable = np.flatnonzero((distance >= MIN_CONTRAST).all(axis=(1, 2)))
    pixels = np.broadcast_to(BACKGROUNDS[rng.choice(usable)], (height, width, 3)).copy()
    if style == 1:
        a = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:height, 0:width]
        ramp = xx * np.cos(a) + yy * np.sin(a)
        ramp = (ramp - ramp.min()) / (np.ptp(ramp) or 1.0)
        pixels += shift * ramp[..., None]
    elif style == 2:
        pixels += rng.normal(0, _NOISE, pixels.shape)
    small = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return small.resize((width * _SUPERSAMPLE, height * _SUPERSAMPLE), Image.NEAREST)


def _render(background: Image.Image, items: list[tuple[dict[str, Any], np.ndarray]]) -> Image.Image:
    """Draw at supersampled size, then average each block of pixels: anti-aliased edges.

    Plain block averaging is exact supersampling and, unlike Lanczos, adds no ringing at edges.
    """
    draw = ImageDraw.Draw(background)
    for obj, outline in items:
        draw.polygon((outline * _SUPERSAMPLE).ravel().tolist(), fill=RGB[obj["color"]])
    return background.reduce(_SUPERSAMPLE)


# ---------------------------------------------------------------- captions


def _has_batchim(word: str) -> bool:
    """Whether a Korean word ends in a final consonant, which decides its particles."""
    code = ord(word[-1]) - 0xAC00
    return 0 <= code < 11172 and code % 28 != 0


def _subject(phrase: str) -> str:
    return phrase + ("이" if _has_batchim(phrase) else "가")


def _and(phrase: str) -> str:
    return phrase + ("과" if _has_batchim(phrase) else "와")


def _short_captions(obj: dict[str, Any], objects: list[dict[str, Any]]) -> list[tuple[str, Query]]:
    """Every short caption about `obj`; counts are taken over the whole scene."""
    s, c, z, p = obj["shape"], obj["color"], obj["size"], obj["position"]
    both, shape, color = ObjectSpec(shape=s, color=c), ObjectSpec(shape=s), ObjectSpec(color=c)
    placed = ObjectSpec(shape=s, color=c, position=p)
    sized = ObjectSpec(shape=s, color=c, size=z)
    n_both, n_shape, n_color = (sum(_fits(q, o) for o in objects) for q in (both, shape, color))
    return [
        (f"{p}에 {_subject(f'{c} {s}')} 있다", Query((placed,))),
        (f"{p}에 있는 {c} {s}", Query((placed,))),
        (f"{_subject(f'{z} {c} {s}')} 있다", Query((sized,))),
        (f"{c} {s} {_NUMBERS[n_both - 1]} 개가 있다", Query((both,), n_both)),
        (f"{s} {_NUMBERS[n_shape - 1]} 개", Query((shape,), n_shape)),
        (f"{c} 것 {_NUMBERS[n_color - 1]} 개가 있다", Query((color,), n_color)),
        (f"{c} {s}", Query((both,))),
        (f"{_subject(s)} 있다", Query((shape,))),
        (f"{c} 것이 있다", Query((color,))),
        (f"{c} 것", Query((color,))),
        (f"이것은 {c} {s} 이다.", Query((both,))),
        (f"이것은 {s} 이다.", Query((shape,))),
        (f"이것은 {c} 것 이다.", Query((color,))),
    ]


def _main_caption(objects: list[dict[str, Any]]) -> tuple[str, Query, str]:
    """A sentence about the whole scene, its query, and the same sentence in English."""
    first = objects[0]
    s, c, z, p = first["shape"], first["color"], first["size"], first["position"]
    en = {k: ENGLISH[first[k]] for k in ("shape", "color", "size")}
    if len(objects) == 1:
        return (
            f"{p}에 {_subject(f'{z} {c} {s}')} 있다",
            Query((ObjectSpec(s, c, z, p),)),
            f"a {en['size']} {en['color']} {en['shape']} {_EN_WHERE[p]}",
        )
    # No two objects share colour and shape, so each phrase names exactly one object.
    specs = tuple(ObjectSpec(o["shape"], o["color"], o["size"]) for o in objects)
    ko = [f"{q.size} {q.color} {q.shape}" for q in specs]
    english = [f"a {ENGLISH[q.size]} {ENGLISH[q.color]} {ENGLISH[q.shape]}" for q in specs]
    listed = ", ".join(ko[:-2] + [_and(ko[-2])])
    return (
        f"{listed} {_subject(ko[-1])} 있다",
        Query(specs),
        ", ".join(english[:-1]) + " and " + english[-1],
    )


def _captions(rng: np.random.Generator, objects: list[dict[str, Any]]) -> tuple[list[str], list[Query], str]:
    main, main_query, english = _main_caption(objects)
    chosen = {main: main_query}  # text -> query; a dict keeps order and drops repeats
    options = [_short_captions(obj, objects) for obj in objects]
    wanted = int(rng.integers(4, 7))
    while len(chosen) < wanted:  # one object alone supports 13 distinct captions
        about = options[rng.integers(len(options))]
        text, query = about[rng.integers(len(about))]
        chosen.setdefault(text, query)
    return list(chosen), list(chosen.values()), english


# ---------------------------------------------------------------- public generators


def _check(name: str, value: int, low: int, high: int | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"at least {low}" if high is None else f"between {low} and {high}"
        raise ValueError(f"{name} must be {bound}, got {value}")


def _finish(
    rng: np.random.Generator,
    items: list[tuple[dict[str, Any], np.ndarray]],
    width: int,
    height: int,
) -> Scene:
    colors = [obj["color"] for obj, _ in items]
    image = _render(_background(rng, colors, width, height), items)
    objects = [obj for obj, _ in items]
    captions, queries, english = _captions(rng, objects)
    return Scene(image, objects, captions, queries, english)


def _random_pairs(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """`n` distinct (shape, colour) pairs: a caption that names a pair then names one object."""
    pairs: list[tuple[str, str]] = []
    while len(pairs) < n:  # a pair already drawn is drawn again
        pair = (SHAPES[rng.integers(len(SHAPES))], COLORS[rng.integers(len(COLORS))])
        if pair not in pairs:
            pairs.append(pair)
    return pairs


# Each generator draws from its own random streams, so one never changes another's output.
_SCENE, _COMPOSITE, _SINGLE, _SWAPPED = range(4)


def _stream(kind: int, seed: int, index: int) -> np.random.Generator:
    _check("seed", seed, 0)
    _check("index", index, 0)
    return np.random.default_rng([kind, seed, index])


def scene(seed: int, index: int, size: int = 64, max_objects: int = 3) -> Scene:
    """Scene `index` of the stream `seed`: 1 to `max_objects` shapes on a size x size image,
    no two of them alike in both colour and shape."""
    _check("size", size, MIN_SIZE)
    _check("max_objects", max_objects, 1, MAX_OBJECTS)
    rng = _stream(_SCENE, seed, index)
    # A good share of single objects: they are the clearest pairing of words and pixels.
    single = max_objects == 1 or rng.random() < _SINGLE_SHARE
    n = 1 if single else int(rng.integers(2, max_objects + 1))
    return _finish(rng, _scatter(rng, _random_pairs(rng, n), size), size, size)


def swapped_pair(seed: int, index: int, size: int = 64, max_objects: int = 3) -> tuple[Scene, Scene]:
    """Two scenes with one layout, the same shapes and the same colours, bound differently.

    The second scene hands each object's colour to the next object: a red circle beside a blue
    square becomes a blue circle beside a red square. Only binding colour to shape tells the
    two apart, so such pairs are the hardest negatives for a caption like "빨간 원".
    """
    _check("size", size, MIN_SIZE)
    _check("max_objects", max_objects, 2, MAX_OBJECTS)
    rng = _stream(_SWAPPED, seed, index)
    n = int(rng.integers(2, max_objects + 1))
    shapes = rng.choice(len(SHAPES), n, replace=False).tolist()
    colors = rng.choice(len(COLORS), n, replace=False).tolist()
    items = _scatter(rng, [(SHAPES[s], COLORS[c]) for s, c in zip(shapes, colors)], size)
    handed_on = [({**obj, "color": items[i - 1][0]["color"]}, outline) for i, (obj, outline) in enumerate(items)]
    return _finish(rng, items, size, size), _finish(rng, handed_on, size, size)


def generate(n: int, seed: int = 0, size: int = 64, max_objects: int = 3) -> list[Scene]:
    """Scenes 0..n-1 of the stream `seed`; a prefix of a longer run with the same seed."""
    return [scene(seed, i, size, max_objects) for i in range(n)]


def single_object(shape: str, color: str, size_px: int = 64, seed: int = 0, big: bool = True) -> Image.Image:
    """An image of one given object (e.g. a blue triangle) placed at random by `seed`."""
    if shape not in SHAPES or color not in COLORS:
        raise ValueError(f"unknown shape or colour: {shape!r}, {color!r}")
    _check("size_px", size_px, MIN_SIZE)
    rng = np.random.default_rng([_SINGLE, seed])
    size = "큰" if big else "작은"
    extent = size_px * rng.uniform(*_SIDE[size])
    cx, cy = rng.uniform(extent / 2, size_px - extent / 2, 2)
    item = _make(rng, shape, color, size, extent, cx, cy, (size_px, size_px))
    return _render(_background(rng, [color], size_px, size_px), [item])


def composite(seed: int, grid: int = 3, cell: int = 64, index: int = 0) -> Scene:
    """A grid x grid canvas of cell-sized cells, each holding one object or nothing.

    Every object lies wholly inside its cell and carries `cell`: (row, col); no two objects
    share both colour and shape, so a caption like "파란 별" points at one cell.
    """
    _check("grid", grid, 1, MAX_GRID)
    _check("cell", cell, MIN_SIZE)
    rng = _stream(_COMPOSITE, seed, index)
    cells = grid * grid
    k = int(rng.integers((cells + 1) // 2, cells + 1))
    filled = sorted(rng.choice(cells, size=k, replace=False).tolist())
    pairs = rng.choice(len(SHAPES) * len(COLORS), size=k, replace=False).tolist()
    side = grid * cell
    items = []
    for where, pair in zip(filled, pairs):
        row, col = divmod(where, grid)
        shape, color = SHAPES[pair // len(COLORS)], COLORS[pair % len(COLORS)]
        size = SIZES[rng.integers(len(SIZES))]
        extent = cell * rng.uniform(*_SIDE[size])
        cx, cy = np.array([col, row]) * cell + rng.uniform(extent / 2, cell - extent / 2, 2)
        obj, outline = _make(rng, shape, color, size, extent, cx, cy, (side, side))
        obj["cell"] = (row, col)
        items.append((obj, outline))
    return _finish(rng, items, side, side)


# ---------------------------------------------------------------- export

_OBJECT_KEYS = ("shape", "color", "size", "position", "box")


def _record(s: Scene) -> dict[str, Any]:
    return {
        "caption_ko": s.captions_ko[0],
        "captions_ko": s.captions_ko,
        "caption_en": s.caption_en,
        "objects": [{k: o[k] for k in _OBJECT_KEYS} for o in s.objects],
    }


def to_dataset(scenes: Iterable[Scene]) -> datasets.Dataset:
    """An in-memory Hugging Face dataset, one row per scene."""
    import datasets  # imported here: slow to load, and only the exports need it

    chosen = list(scenes)
    text = datasets.Value("string")
    box = datasets.List(datasets.Value("int32"))
    features = datasets.Features(
        {
            "image": datasets.Image(),
            "caption_ko": text,
            "captions_ko": datasets.List(text),
            "caption_en": text,
            "objects": datasets.List({k: box if k == "box" else text for k in _OBJECT_KEYS}),
        }
    )
    records = [_record(s) for s in chosen]
    columns = {key: [r[key] for r in records] for key in features if key != "image"}
    return datasets.Dataset.from_dict({"image": [s.image for s in chosen], **columns}, features)


def write_imagefolder(scenes: Iterable[Scene], out_dir: str | os.PathLike[str]) -> Path:
    """Write PNGs and metadata.jsonl in the layout `load_dataset("imagefolder")` reads.

    Scenes are consumed one at a time, so a generator keeps memory flat. The metadata file
    appears only once complete: a reader never sees metadata for missing images.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, s in enumerate(scenes):
        name = f"{i:06d}.png"
        s.image.save(out / name)
        lines.append(json.dumps({"file_name": name, **_record(s)}, ensure_ascii=False))
    fd, tmp = tempfile.mkstemp(dir=out, prefix=".metadata.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
        os.replace(tmp, out / "metadata.jsonl")
    except BaseException:
        os.unlink(tmp)
        raise
    return out
