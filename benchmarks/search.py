"""Search speed and recall on random unit vectors: exact search against the approximate index.

Random vectors have no clusters, the hardest case for approximate search. The queries are fresh
random vectors, so every neighbour is found by its score alone. The approximate index is timed
scanning its codes on one thread and in the slices a gallery uses (one per core for large
galleries), so the speed-up is a ratio from one run. Prints a markdown table.

    python benchmarks/search.py --sizes 10000,100000,1000000
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from koclip import gallery


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 1 << 16):
        part = rng.standard_normal((min(1 << 16, n - start), dim), dtype=np.float32)
        out[start : start + len(part)] = part / np.linalg.norm(part, axis=1, keepdims=True)
    return out


def latencies(search, queries: np.ndarray) -> tuple[list, np.ndarray]:
    """Each query searched on its own: (hits per query, seconds per query)."""
    search(queries[:1])  # first call: page in the vectors
    hits, seconds = [], []
    for query in queries:
        start = time.perf_counter()
        hits.append(search(query[None])[0])
        seconds.append(time.perf_counter() - start)
    return hits, np.array(seconds)


def row(size: int, method: str, build_s: float | None, memory: int, seconds: np.ndarray, recall: float | None) -> str:
    build = "–" if build_s is None else f"{build_s:.1f}"
    recall_text = "1 (by definition)" if recall is None else f"{recall:.3f}"
    p50, p99 = np.percentile(seconds, [50, 99]) * 1e3
    return f"| {size:,} | {method} | {build} | {memory / 2**20:,.0f} | {p50:.2f} | {p99:.2f} | {recall_text} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated gallery sizes")
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    queries = unit_vectors(rng, args.queries, args.dim)
    print(f"dim {args.dim}, {args.queries} single queries, k={args.k}, {gallery.cores()} cores; approximate "
          f"index: {gallery.ann_kind(args.dim)} fast scan + exact rescoring of {gallery.RERANK} candidates\n")
    print("| vectors | method | build s | memory MiB | p50 ms | p99 ms | recall@10 |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in (int(s) for s in args.sizes.split(",")):
            # Stored and memory-mapped as a gallery's vectors.npy is.
            path = Path(tmp) / f"{size}.npy"
            np.save(path, unit_vectors(rng, size, args.dim))
            vectors = np.load(path, mmap_mode="r")
            exact, seconds = latencies(lambda q: gallery.exact_search(vectors, q, args.k), queries)
            print(row(size, "exact", None, path.stat().st_size, seconds, None), flush=True)

            start = time.perf_counter()
            codes = gallery.build_ann(vectors)
            build_s = time.perf_counter() - start
            memory = gallery.import_faiss().serialize_index(codes).nbytes
            for slices in dict.fromkeys([1, gallery.scan_slices(size)]):
                index = gallery.CodeScan(codes, slices)
                found, seconds = latencies(lambda q: gallery.ann_search(index, vectors, q, args.k), queries)
                recall = np.mean([len({h.index for h in a} & {h.index for h in e}) / args.k for a, e in zip(found, exact)])
                method = f"{gallery.ann_kind(args.dim)}, {slices} slice{'s' if slices > 1 else ''}"
                print(row(size, method, build_s, memory, seconds, recall), flush=True)
            del vectors, index, codes
            path.unlink()


if __name__ == "__main__":
    main()
