"""Sizes in bytes, as people write and read them."""

from __future__ import annotations

import math

from koclip.errors import KoCLIPError


def size_text(count: int) -> str:
    """Bytes for a reader: 512 B, 300.0 KiB, 74.5 MiB, 2.0 GiB."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:,.1f} {unit}"
    return f"{count} B"


def parse_size(text: str) -> int:
    """Bytes from '512M', '2G', '1.5GiB' or a plain number of bytes."""
    units = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    cleaned = text.strip().upper().removesuffix("B").removesuffix("I")
    unit = cleaned[-1:] if cleaned[-1:] in units else ""
    try:
        value = float(cleaned[: len(cleaned) - len(unit)])
    except ValueError:
        raise KoCLIPError(f"{text!r} is not a size such as 512M or 2G") from None
    if not math.isfinite(value) or int(value * units[unit]) < 1:
        raise KoCLIPError(f"{text!r} is not a positive size")
    return int(value * units[unit])
