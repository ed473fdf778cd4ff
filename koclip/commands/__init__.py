"""One module per `python -m koclip` command: `add_arguments(parser)` and `main(args) -> int`."""

from __future__ import annotations

import argparse
from typing import Callable


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
