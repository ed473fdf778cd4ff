"""Search speed, recall and memory on each kind of embedding set, every method side by side in one run.

Methods, each timed on single queries (the demo's and the CLI's case) on every core of this machine:
  exact                 NumPy: every row scored, the recall reference
  koclip (chosen)       the index `python -m koclip index` builds: kind and parameters chosen by
                        `koclip.search.tuning.choose` on the gallery's own held-out rows (and, for the real
                        set, their captions, as the index command does), then rescoring
  koclip before         the previous design, kept for comparison: a 4-bit PQ fast scan of every row
                        (2 dimensions per code) in per-core slices, 400 candidates rescored
  faiss HNSWFlat        peer: M=32; efSearch the smallest of 16…8192 that reaches recall 0.95 here
  faiss IVFFlat         peer: √n lists; nprobe the smallest power of two that reaches recall 0.95 here

Recall@10 is measured on the data set's own queries, which no method saw while building: fresh
points of the same distribution (clustered, uniform) or text embeddings of captions (real). A
returned row counts when its score reaches the tenth true score (ann-benchmarks' definition).
Memory is what each index holds beyond the memory-mapped vectors.npy (the HNSW and IVF peers
hold their own float32 copy). Data sets: see benchmarks/vectors.py.

    python benchmarks/search.py                                  # clustered 1M, real 100k, uniform 1M
    python benchmarks/search.py --sets clustered:200000,uniform:100000 --dim 512
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import vectors as datasets

from koclip import units
from koclip.search import exact, indexes, tuning

PEER_TARGET = 0.95
K = indexes.K


def latencies(search, queries: np.ndarray) -> tuple[list, np.ndarray]:
    """Each query searched on its own: (hits per query, seconds per query)."""
    search(queries[:1])  # first call: page in what the method reads
    hits, seconds = [], []
    for query in queries:
        start = time.perf_counter()
        hits.append(search(query[None])[0])
        seconds.append(time.perf_counter() - start)
    return hits, np.array(seconds)


class Table:
    def __init__(self):
        print("| vectors | method | build s | memory MiB | p50 ms | p99 ms | recall@10 |")
        print("|---|---|---|---|---|---|---|", flush=True)

    def row(self, label: str, method: str, build_s: float | None, memory: int, seconds: np.ndarray, recall: float):
        build = "–" if build_s is None else f"{build_s:.1f}"
        p50, p99 = np.percentile(seconds, [50, 99]) * 1e3
        print(
            f"| {label} | {method} | {build} | {memory / 2**20:,.1f} | {p50:.2f} | {p99:.2f} | {recall:.3f} |",
            flush=True,
        )


def faiss_peer(make, vectors: np.ndarray, queries: np.ndarray, truth, settings, apply):
    """(build seconds, memory, the first setting reaching PEER_TARGET (else the last), its hits and times)."""
    faiss = indexes.import_faiss()
    start = time.perf_counter()
    index = make(faiss, vectors.shape[1])
    if not index.is_trained:
        index.train(indexes.training_sample(vectors, indexes.TRAIN_ROWS))
    indexes.add_in_steps(index, vectors)
    build_s = time.perf_counter() - start
    memory = faiss.serialize_index(index).nbytes

    def search(q):
        _, rows = index.search(q, K)
        return [
            [exact.Hit(int(r), float(vectors[r] @ query)) for r in found if r >= 0] for query, found in zip(q, rows)
        ]

    for setting in settings:
        apply(index, setting)
        found, seconds = latencies(search, queries)
        measured = tuning.recall(found, truth)
        if measured >= PEER_TARGET:
            break
    return build_s, memory, setting, seconds, measured


def short_of(measured: float) -> str:
    return "" if measured >= PEER_TARGET else f" (the widest tried; never reached {PEER_TARGET})"


def run(
    table: Table,
    label: str,
    vectors: np.ndarray,
    queries: np.ndarray,
    peers: bool,
    hnsw_max: int,
    budget: int,
    texts_of=None,
) -> None:
    count, dim = vectors.shape
    _, seconds = latencies(lambda q: exact.exact_search(vectors, q, K), queries[: 50 if count > 200_000 else None])
    truth = exact.exact_search(vectors, queries, K)
    table.row(label, "exact (NumPy)", None, 0, seconds, 1.0)

    start = time.perf_counter()
    choice = tuning.choose(vectors, budget, texts_of=texts_of)
    build_s = time.perf_counter() - start
    index = choice.index
    if index is None:
        found, seconds = latencies(lambda q: exact.exact_search(vectors, q, K), queries)
    else:
        found, seconds = latencies(
            lambda q: exact.rescore(vectors, q, index.candidates(q, max(choice.rerank, K)), K), queries
        )
    settings = ", ".join(f"{k} {v}" for k, v in choice.params.items() if k not in ("entry_point", "max_level"))
    how = f"{settings}; {choice.rerank} rescored; " if choice.index is not None else ""
    method = f"**koclip: {choice.kind}** ({how}held-out recall {choice.recall:.3f})"
    table.row(label, method, build_s, choice.memory, seconds, tuning.recall(found, truth))

    start = time.perf_counter()
    before = indexes.PQScan.train(vectors, m=indexes.subquantizers(dim, dim // 2))
    build_s = time.perf_counter() - start
    found, seconds = latencies(lambda q: exact.rescore(vectors, q, before.candidates(q, 400), K), queries)
    table.row(
        label,
        f"koclip before: pq{before.params()['m']}x4 scan, {len(before.parts)} slice(s), 400 rescored",
        build_s,
        before.memory(),
        seconds,
        tuning.recall(found, truth),
    )
    if not peers:
        return
    if count <= hnsw_max:
        build_s, memory, ef, seconds, measured = faiss_peer(
            lambda faiss, d: faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT),
            vectors,
            queries,
            truth,
            [16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192],
            lambda index, ef: setattr(index.hnsw, "efSearch", ef),
        )
        table.row(label, f"faiss HNSWFlat M=32, efSearch {ef}{short_of(measured)}", build_s, memory, seconds, measured)
    nlist = max(1, int(np.sqrt(count)))
    build_s, memory, nprobe, seconds, measured = faiss_peer(
        lambda faiss, d: faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT),
        vectors,
        queries,
        truth,
        [2**i for i in range(int(np.log2(nlist)) + 1)],
        lambda index, n: setattr(index, "nprobe", n),
    )
    table.row(
        label, f"faiss IVFFlat {nlist} lists, nprobe {nprobe}{short_of(measured)}", build_s, memory, seconds, measured
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--sets",
        default="clustered:1000000,real:100000,uniform:1000000",
        help="comma-separated NAME:COUNT, NAME one of clustered, real, uniform",
    )
    parser.add_argument("--dim", type=int, default=512, help="dimensions of the synthetic sets (real: the model's)")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument(
        "--memory-budget",
        type=units.parse_size,
        default=tuning.DEFAULT_BUDGET,
        metavar="SIZE",
        help="koclip's index memory budget, as for `index --memory-budget` (default: 2G); a tenth "
        "of a 10M-row budget on 1M rows simulates that gallery's index",
    )
    parser.add_argument("--no-peers", action="store_true", help="leave out the faiss HNSW and IVF peers")
    parser.add_argument(
        "--hnsw-max",
        type=int,
        default=200_000,
        help="largest set the HNSW peer is built for (default: %(default)s; 1M takes many minutes and over 2 GiB)",
    )
    args = parser.parse_args()
    print(f"{exact.cores()} cores, {args.queries} single queries per method, k={K}\n")
    table = Table()
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.sets.split(","):
            name, count = spec.split(":")
            vectors, queries = datasets.dataset(name, int(count), args.dim, args.queries)
            # Stored and memory-mapped, as a gallery's vectors.npy is.
            path = Path(tmp) / f"{name}-{count}.npy"
            np.save(path, vectors)
            del vectors
            mapped = np.load(path, mmap_mode="r")
            label = f"{int(count):,} {name} ({mapped.shape[1]}-d)"
            run(
                table,
                label,
                mapped,
                np.ascontiguousarray(queries, np.float32),
                not args.no_peers,
                args.hnsw_max,
                args.memory_budget,
                datasets.real_captions if name == "real" else None,
            )
            path.unlink()


if __name__ == "__main__":
    main()
