"""The bad-input corpus (tests/data/bad_inputs.json): its cases, with images and texts made real."""

from __future__ import annotations

import io
import json
from pathlib import Path

import hostile_images
from PIL import Image

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
    if kind == "undecodable":
        return hostile_images.undecodable()[args[0]]
    raise ValueError(f"unknown image recipe {recipe!r}")


def text(spec) -> str:
    if isinstance(spec, str):
        return spec
    if "labels" in spec:
        return ", ".join(f"라벨{i}" for i in range(spec["labels"]))
    return (spec["repeat"] * (spec["length"] // len(spec["repeat"]) + 1))[: spec["length"]]


ENTRY_POINTS = ("library", "cli", "pages")


def cases(section: str, entry_point: str | None = None) -> list[dict]:
    """The section's cases; with `entry_point`, only those that can reach it."""
    return [case for case in CORPUS[section] if entry_point is None or entry_point in case.get("reaches", ENTRY_POINTS)]


def ids(section: str, entry_point: str | None = None) -> list[str]:
    return [case["name"] for case in cases(section, entry_point)]
