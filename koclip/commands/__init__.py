"""One module per `python -m koclip` command: `add_arguments(parser)` and `main(args) -> int`.

A command checks its arguments with the helpers here before it imports anything heavy (JAX, Flax,
transformers, PyTorch, datasets, `koclip.api`), so a wrong argument is reported at once rather
than after seconds of imports. A failed check raises a `KoCLIPError`, which `koclip.cli` prints
as `error: ...` with exit status 2.
"""

from __future__ import annotations

import argparse
import math
import unicodedata
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from koclip.errors import InvalidInputError, ModelUnavailableError


def terminal_safe(text: str) -> str:
    """`text` with control and format characters escaped, so a file name or caption cannot move
    the cursor, recolour or clear the terminal (ANSI escapes) or reorder what is shown."""
    return "".join(
        ch.encode("unicode_escape").decode("ascii") if unicodedata.category(ch) in ("Cc", "Cf") else ch
        for ch in str(text)
    )


def _bounded(convert: Callable[[str], Any], kind: str, low, high, above: bool) -> Callable[[str], Any]:
    def parse(text: str):
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {kind}: {text!r}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
        if (value <= low if above else value < low) or (high is not None and value > high):
            if high is not None:
                bound = f"more than {low} and at most {high}" if above else f"between {low} and {high}"
            else:
                bound = f"more than {low}" if above else f"at least {low}"
            raise argparse.ArgumentTypeError(f"must be {bound}, got {value}")
        return value

    return parse


def int_at_least(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: an integer within bounds, with a plain message when it is not."""
    return _bounded(int, "an integer", low, high, above=False)


def float_above(low: float, high: float | None = None) -> Callable[[str], float]:
    """An argparse type: a finite number greater than `low` (and at most `high`)."""
    return _bounded(float, "a number", low, high, above=True)


def float_at_least(low: float) -> Callable[[str], float]:
    """An argparse type: a finite number of at least `low`."""
    return _bounded(float, "a number", low, None, above=False)


def check_query(query: str) -> None:
    """InvalidInputError unless `query` holds some text other than spaces."""
    if not query.strip():
        raise InvalidInputError('empty query: give some text to search for, for example "빨간 원"')


def check_file(path: Path, option: str) -> None:
    """InvalidInputError, naming the `option` given, unless `path` is an existing file."""
    if not path.is_file():
        state = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise InvalidInputError(f"{option} {path}: {state}; give the path of an existing file")


def check_folder(path: Path, what: str) -> None:
    """InvalidInputError, naming `what` was given, unless `path` is an existing folder."""
    if not path.is_dir():
        state = "is a file, not a folder" if path.exists() else "does not exist"
        raise InvalidInputError(f"{what} {path}: {state}; give the path of an existing folder")


def check_dataset(name: str, option: str) -> None:
    """A dataset argument is a folder or a Hub name (`name` or `owner/name`); refuse a path to nothing."""
    path = Path(name).expanduser()
    looks_like_path = name.startswith((".", "/", "~")) or name.count("/") > 1
    if looks_like_path and not path.exists():
        raise InvalidInputError(
            f"{option} {name}: no such folder, and not a Hugging Face Hub dataset name (name or owner/name)"
        )
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"{option} {name} is a file; give a dataset folder or a Hub dataset name")


def refuse_unused(args: argparse.Namespace, defaults: Mapping[str, Any], needs: str) -> None:
    """Refuse options set away from their `defaults` when they only take effect with `needs`."""
    given = ["--" + name.replace("_", "-") for name, default in defaults.items() if getattr(args, name) != default]
    if given:
        one = len(given) == 1
        raise InvalidInputError(
            f"{', '.join(given)} only {'applies' if one else 'apply'} with {needs}: "
            f"leave {'it' if one else 'them'} out, or use {needs}"
        )


def check_model_argument(name: str) -> None:
    """Refuse a model argument that could not load: neither a registered name, a Hub id (owner/name)
    nor a folder; a folder without config.json; a Hub model missing from the cache that cannot be
    downloaded. A Hub model missing from the cache is downloaded here, as loading it would be."""
    from koclip import hub

    resolved = hub.resolve(name)
    if not (resolved.directory / "config.json").is_file():
        raise ModelUnavailableError(
            f"{resolved.directory} has no config.json, so it is not a model folder; give a folder written by "
            "`python -m koclip train`, a model name or a Hub id (owner/name)"
        )
    hub.tokenizer_dir(resolved)
