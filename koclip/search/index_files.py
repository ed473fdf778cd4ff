"""How a gallery's approximate index is stored: plain .npy arrays in its `index/` folder, never pickles
or faiss's own format. Each is memory-mapped (so a header cannot claim more than the file holds) and
checked against the manifest before faiss sees it."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from koclip.atomic import open_regular, write_atomic
from koclip.errors import GalleryError
from koclip.search.indexes import LOADERS, Index

INDEX_DIR = "index"  # the gallery's folder of index arrays
MAX_RERANK = 100_000  # what a manifest may ask for


def _check(arrays: dict[str, np.ndarray], expected: dict[str, tuple[tuple[int, ...] | None, str]], where: str) -> None:
    """Each array present with its shape (None: any one-dimensional length) and dtype."""
    for name, (shape, dtype) in expected.items():
        array = arrays.get(name)
        fits = (
            array is not None
            and array.dtype == np.dtype(dtype)
            and (array.ndim == 1 if shape is None else array.shape == shape)
        )
        if not fits:
            found = "missing" if array is None else f"{array.shape} {array.dtype}"
            raise GalleryError(f"{where}/{name}.npy is {found}, not {shape or '(any,)'} {dtype}; re-index this gallery")
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise GalleryError(f"{where}/{name}.npy holds values that are not numbers; re-index this gallery")


def _check_params(params: Any, names: tuple[str, ...], where: str, low: int = 0, high: int = 1 << 24) -> None:
    for name in names:
        value = params.get(name) if isinstance(params, dict) else None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise GalleryError(f"{where} gives the index's {name} as {value!r}; re-index this gallery")


def save(index: Index, folder: Path) -> None:
    """The index's arrays as index/<name>.npy in the gallery `folder`, each written atomically."""
    target = folder / INDEX_DIR
    target.mkdir(parents=True, exist_ok=True)
    for name, array in index.arrays.items():
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
        write_atomic(target / f"{name}.npy", buffer.getvalue())


def load_array(path: Path) -> np.ndarray:
    """A .npy file memory-mapped read-only, so that its header cannot claim more than the file holds.

    OSError unless it is a regular file (see atomic.open_regular); ValueError unless its header is
    one np.save writes, for an array of plain numbers.
    """
    with open_regular(path) as f:
        version = np.lib.format.read_magic(f)
        if version not in ((1, 0), (2, 0)):
            raise ValueError(f"it is in .npy format {version[0]}.{version[1]}, not one np.save writes for numbers")
        read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran_order, dtype = read_header(f)
        if dtype.hasobject:
            raise ValueError("it holds Python objects")
        return np.memmap(f, dtype, "r", f.tell(), shape, "F" if fortran_order else "C")


def load(folder: Path, kind: str, tuning: Any, count: int, dim: int, vectors: np.ndarray):
    """The gallery's approximate index of `kind` (read_manifest has checked it is one of KINDS), rebuilt
    from its arrays once the manifest's `tuning` (Choice.manifest) and every array are checked."""
    where, manifest = folder / INDEX_DIR, str(folder / "manifest.json")
    if not isinstance(tuning, dict):
        raise GalleryError(f"{manifest} lacks the index's tuning; re-index this gallery")
    _check_params(tuning, ("rerank",), manifest, 1, MAX_RERANK)
    cls, params = LOADERS[kind], tuning.get("params")
    _check_params(params, cls.PARAMS, manifest)
    try:
        expected = cls.expected(count, dim, params)
    except (KeyError, TypeError, ZeroDivisionError, ValueError) as exc:
        raise GalleryError(
            f"{manifest} gives the index parameters that do not fit ({exc}); re-index this gallery"
        ) from None
    arrays = {}
    for name in expected:
        path = where / f"{name}.npy"
        try:
            arrays[name] = load_array(path)
        except FileNotFoundError:
            continue  # _check names what is missing
        except (OSError, ValueError, EOFError) as exc:
            raise GalleryError(f"{path} is damaged ({exc}); re-index this gallery") from None
    _check(arrays, expected, str(where))
    return cls.load(arrays, count, dim, params, vectors)
