"""Writing files and folders so that a crash leaves either the old data or the new, never half."""

from __future__ import annotations

import os
import shutil
from pathlib import Path


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a sibling temporary file, then rename it over `path`."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def replace_folder(new: Path, target: Path) -> None:
    """Put the complete folder `new` in the place of `target`, which may exist.

    The old folder is moved aside first and deleted only once `new` is in place, so a crash in
    between leaves a whole folder at `target` or beside it, never a mix.
    """
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    shutil.rmtree(old, ignore_errors=True)
