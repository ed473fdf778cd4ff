"""The bad-input corpus (tests/data/bad_inputs.json): its cases, with images and texts made real."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

import hostile_images

CORPUS = json.loads((Path(__file__).parent / "data" / "bad_inputs.json").read_text(encoding="utf-8"))


def image_bytes(recipe: list) -> bytes:
    kind, *args = recipe
    if kind == "png":
        return hostile_images.png(*args)
    if kind == "worst":
        return hostile_images.worst_under_the_limits()
    if kind == "truncated":
        out = io.BytesIO()
        Image.new("RGB", (256, 256), (10, 200, 30)).save(out, "PNG")
        return out.getvalue()[:200]
    if kind == "bytes":
        return args[0].encode()
    raise ValueError(f"unknown image recipe {recipe!r}")


def text(spec) -> str:
    if isinstance(spec, str):
        return spec
    if "labels" in spec:
        return ", ".join(f"라벨{i}" for i in range(spec["labels"]))
    return (spec["repeat"] * (spec["length"] // len(spec["repeat"]) + 1))[: spec["length"]]


def cases(section: str) -> list[dict]:
    return CORPUS[section]


def ids(section: str) -> list[str]:
    return [case["name"] for case in CORPUS[section]]
