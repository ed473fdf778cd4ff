"""Exact search: every row of a gallery scored with one matrix product, a slice at a time. Small
galleries use it alone; the approximate indexes (indexes.py) only propose candidates, which `rescore`
scores exactly, so every score a search returns is a true inner product."""

from __future__ import annotations

import os
from typing import NamedTuple

import numpy as np

ADD_ROWS = 1 << 16  # rows converted to float32 at a time, bounding the copy of a float16 or mapped file
_SCORES_PER_STEP = 1 << 24  # rows x queries scored at once by exact search, bounding the score matrix


class Hit(NamedTuple):
    """One search result: the row's number in the gallery and its inner product with the query."""

    index: int
    score: float


def cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def scores(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(rows, queries) inner products, float32, a slice of rows at a time (NumPy has no float16 BLAS)."""
    if vectors.dtype == np.float32:
        return vectors @ queries.T
    out = np.empty((len(vectors), len(queries)), np.float32)
    for start in range(0, len(vectors), ADD_ROWS):
        part = vectors[start : start + ADD_ROWS]
        out[start : start + len(part)] = part.astype(np.float32) @ queries.T
    return out


def top(values: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest values, best first; ties go to the lower position."""
    part = np.argpartition(-values, k - 1)[:k] if k < len(values) else np.arange(len(values))
    return part[np.lexsort((part, -values[part]))]


def exact_search(
    vectors: np.ndarray, queries: np.ndarray, k: int, leave_out: np.ndarray | None = None
) -> list[list[Hit]]:
    """The k best rows for each query, by inner product over every row (but the rows in `leave_out`)."""
    step = max(1, _SCORES_PER_STEP // max(len(vectors), 1))
    hits = []
    for start in range(0, len(queries), step):
        block = scores(vectors, queries[start : start + step])
        if leave_out is not None:
            block[leave_out] = -np.inf
        for column in block.T:
            hits.append([Hit(int(i), float(column[i])) for i in top(column, k)])
    return hits


def rescore(vectors: np.ndarray, queries: np.ndarray, candidates: np.ndarray, k: int) -> list[list[Hit]]:
    """Each query's candidate rows (-1 for none) scored exactly; the k best, best first."""
    hits = []
    for query, rows in zip(queries, candidates):
        rows = np.unique(rows[rows >= 0])  # sorted: fewer page faults on a memory-mapped file
        values = vectors[rows].astype(np.float32) @ query
        hits.append([Hit(int(rows[i]), float(values[i])) for i in top(values, k)])
    return hits
