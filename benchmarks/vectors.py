"""Embedding sets the search benchmark runs on, shaped like the real thing and like the worst case.

  clustered  unit vectors around 1,000 Gaussian centres, with a shared offset, as CLIP embeddings
             are: points of one centre agree at about 0.55, unrelated points at about 0.1
  real       koclip-mini's image embeddings of generated scenes, and its text embeddings of other
             scenes' captions as queries; built once (a few minutes) and cached outside git in
             ~/.cache/koclip/benchmarks (KOCLIP_BENCHMARK_CACHE)
  uniform    unit vectors with no structure at all: the worst case for every approximate index

Every set comes with held-out queries of its own kind: points drawn like the gallery's (clustered,
uniform) or text embeddings (real).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

CACHE = Path(os.environ.get("KOCLIP_BENCHMARK_CACHE", Path.home() / ".cache" / "koclip" / "benchmarks"))
CLUSTERS = 1_000
STEP = 1 << 16


def _normalised(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def uniform(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, STEP):
        out[start : start + STEP] = _normalised(rng.standard_normal((min(STEP, n - start), dim), dtype=np.float32))
    return out


def clustered(n: int, dim: int, seed: int = 0, clusters: int = CLUSTERS) -> np.ndarray:
    """n unit vectors: a shared offset plus one of `clusters` centres plus a point's own noise."""
    rng = np.random.default_rng(1000)  # galleries and their queries share the offset and the centres
    offset = _normalised(rng.standard_normal((1, dim), dtype=np.float32)) * 0.5
    centres = _normalised(rng.standard_normal((clusters, dim), dtype=np.float32))
    rng = np.random.default_rng(seed)
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, STEP):
        count = min(STEP, n - start)
        noise = rng.standard_normal((count, dim), dtype=np.float32) / np.sqrt(dim)
        out[start : start + count] = _normalised(offset + centres[rng.integers(clusters, size=count)] + noise)
    return out


def real(n: int, queries: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(n image embeddings, text embeddings of `queries` other scenes' captions), from koclip-mini."""
    CACHE.mkdir(parents=True, exist_ok=True)
    images, texts = CACHE / f"koclip-mini-scenes-{n}.npy", CACHE / f"koclip-mini-captions-{queries}.npy"
    if not images.is_file():
        _encode_scenes(n, images)
    if not texts.is_file():
        _encode_captions(queries, texts)
    return np.load(images, mmap_mode="r"), np.load(texts)


def _encode_scenes(n: int, path: Path, batch: int = 256) -> None:
    import koclip
    from koclip.data import scenes

    model = koclip.load("koclip-mini")
    out = np.lib.format.open_memmap(path.with_suffix(".tmp.npy"), mode="w+", dtype=np.float32, shape=(n, model.dim))
    for start in tqdm(range(0, n, batch), desc=f"encoding {n:,} scenes with koclip-mini (once)", unit="batch"):
        images = [scenes.scene(0, i).image for i in range(start, min(n, start + batch))]
        out[start : start + len(images)] = model.encode_image(images)
    out.flush()
    del out
    os.replace(path.with_suffix(".tmp.npy"), path)


def real_captions(rows: np.ndarray) -> np.ndarray:
    """Text embeddings of the captions of the real set's scenes `rows` (koclip-mini): tuning queries."""
    import koclip
    from koclip.data import scenes

    return koclip.load("koclip-mini").encode_text([scenes.scene(0, int(i)).captions_ko[0] for i in rows])


def _encode_captions(count: int, path: Path) -> None:
    import koclip
    from koclip.data import scenes

    model = koclip.load("koclip-mini")
    captions = [scenes.scene(1, i).captions_ko[0] for i in range(count)]  # stream 1: not in the gallery
    np.save(path, model.encode_text(captions).astype(np.float32))


def dataset(name: str, n: int, dim: int, queries: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """(gallery vectors, query vectors) of the set `name` (clustered, real or uniform)."""
    if name == "real":
        return real(n, queries)
    make = {"clustered": clustered, "uniform": uniform}[name]
    return make(n, dim, seed=0), make(queries, dim, seed=1)
