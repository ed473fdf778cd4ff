"""One module per `python -m koclip` command: `add_arguments(parser)` and `main(args) -> int`."""

from __future__ import annotations

import argparse
import unicodedata
from typing import Callable


def terminal_safe(text: str) -> str:
    """`text` with control and format characters escaped, so a file name or caption cannot move
    the cursor, recolour or clear the terminal (ANSI escapes) or reorder what is shown."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in ("Cc", "Cf") else ch
        for ch in str(text)
    )


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer within bounds, with a plain message when it is not."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"at least {low}" if high is None else f"between {low} and {high}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse
