"""Embeddings kept on disk per (model, revision, rows), so a second task on the same rows encodes
nothing and an interrupted run resumes at the first batch it had not saved.

Each batch is its own `.npy` file (`START-END.npy`), written atomically as soon as it is encoded;
files are read with `allow_pickle=False` and checked (shape, finite) before use, and a file that fails
the check is encoded again.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from koclip.atomic import write_atomic

CHUNK = re.compile(r"^(\d{9})-(\d{9})\.npy$")


def default_root() -> Path:
    """Where embeddings are kept: $KOCLIP_BENCH_CACHE, else ~/.cache/koclip/bench."""
    return Path(os.environ.get("KOCLIP_BENCH_CACHE", Path.home() / ".cache" / "koclip" / "bench"))


def texts_identity(texts: list[str]) -> str:
    """A name for a list of texts: the digest of its contents, in order."""
    return "texts:" + hashlib.sha256("\x00".join(texts).encode("utf-8", "surrogatepass")).hexdigest()


class EmbeddingCache:
    """Embeddings under `root` (None: kept in memory only, for this run)."""

    def __init__(self, root: Path | None):
        self.root = root

    def folder(self, model: str, revision: str, identity: str) -> Path | None:
        """The cache folder of one (model, revision, data identity), or None when caching is off."""
        if self.root is None:
            return None
        key = hashlib.sha256(f"{model}\x00{revision}\x00{identity}".encode()).hexdigest()[:24]
        folder = self.root / key
        folder.mkdir(parents=True, exist_ok=True)
        about = folder / "about.json"
        if not about.exists():
            record = {"model": model, "revision": revision, "rows": identity}
            write_atomic(about, json.dumps(record, ensure_ascii=False).encode())
        return folder

    def embeddings(
        self,
        encoder,
        identity: str,
        size: int,
        fetch: Callable[[int, int], list],
        encode: Callable[[list], np.ndarray],
        batch_size: int,
        desc: str,
        progress: bool = True,
    ) -> np.ndarray:
        """The `size` rows named `identity`, encoded by `encode(fetch(start, end))` one batch at a
        time where not on disk; each new batch saved as soon as it is made."""
        folder = self.folder(encoder.name, encoder.revision, identity)
        saved = _saved(folder, size) if folder is not None else {}
        parts, start = [], 0
        with tqdm(total=size, desc=desc, unit="row", disable=not progress) as bar:
            while start < size:
                part = _load(folder, start, saved.get(start))
                if part is None:
                    end = min(start + batch_size, size)
                    part = np.asarray(encode(fetch(start, end)), dtype=np.float32)
                    if part.shape[0] != end - start:
                        raise RuntimeError(f"{encoder.name} returned {part.shape[0]} embeddings for {end - start} rows")
                    if folder is not None:
                        buffer = io.BytesIO()
                        np.save(buffer, part, allow_pickle=False)
                        write_atomic(folder / f"{start:09d}-{end:09d}.npy", buffer.getvalue())
                parts.append(part)
                bar.update(min(len(part), size - start))
                start += len(part)
        return np.concatenate(parts)[:size] if parts else np.zeros((0, 0), np.float32)


def _saved(folder: Path, size: int) -> dict[int, int]:
    """The longest saved batch that starts at each row, cut to `size` rows."""
    found: dict[int, int] = {}
    for path in folder.iterdir():
        match = CHUNK.match(path.name)
        if match:
            start, end = int(match[1]), int(match[2])
            if end > start and start < size:
                found[start] = max(found.get(start, 0), end)
    return found


def _load(folder: Path | None, start: int, end: int | None) -> np.ndarray | None:
    if folder is None or end is None:
        return None
    path = folder / f"{start:09d}-{end:09d}.npy"
    try:
        part = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if part.ndim != 2 or part.shape[0] != end - start or part.dtype != np.float32 or not np.isfinite(part).all():
        path.unlink(missing_ok=True)
        return None
    return part
