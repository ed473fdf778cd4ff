"""`choose`: the index kind and its parameters for a gallery, picked by measurement on its own vectors,
as autofaiss does for clip-retrieval. Held-out rows of the gallery are the queries, their true ten
nearest rows (the row itself left out) come from exact search, each kind whose memory fits the
budget is built and its parameters swept, and the configuration with the lowest median latency whose
recall@10 reaches the target wins (of configurations about as fast, the one with the most recall).
The target is held against recall's lower bound (two standard errors under the held-out mean), so
that it holds for queries to come, not only for the held-out rows. Recall counts a returned row as
found when its score reaches the tenth true score less 0.001, as ann-benchmarks counts it, so that
rows tied with a true neighbour are not counted as misses.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from koclip.errors import GalleryError
from koclip.search.exact import Hit, exact_search, rescore
from koclip.search.indexes import (
    EXACT,
    HNSW,
    HNSW_NEIGHBOURS,
    IVF_PQ,
    IVFPQ,
    LOADERS,
    PQ_SCAN,
    HNSWGraph,
    Index,
    K,
    PQScan,
    subquantizers,
)
from koclip.units import size_text

TARGET_RECALL = 0.95
HELD_OUT = 500  # rows used as queries while tuning
TIMED = 200  # of them, how many are timed one by one
CONFIDENCE = 2.0  # standard errors: recall must reach the target at its lower bound (about 97.5%)
MIN_ROWS = 1_000  # below this, exact search is already fast: an index would gain nothing
TIE = 1e-3  # a returned row this close under the k-th true score counts as found
DEFAULT_BUDGET = 2 << 30  # bytes: beside a full-size model, well within a 16 GB machine
SAME_SPEED = 1.25  # median latencies within this factor (plus 20 µs) count as equal when choosing
# What each approximate kind is built with; of its other parameters, SETTINGS are how widely it searches, and the
# rest (a graph's entry point and top level) follow from the build.
BUILT_WITH = {PQ_SCAN: ("m",), IVF_PQ: ("m", "nlist"), HNSW: ("neighbours",)}
SETTINGS = ("nprobe", "ef_search")
# A grown gallery's index is retuned once the gallery has more than this many times the rows its tuning was
# measured at; until then the parameters measured then are rebuilt on every row, without measuring. They were
# chosen for fewer rows (the inverted lists grow longer, a graph larger), so recall and speed drift as the gallery
# grows: past a quarter more rows, they are measured again.
RETUNE_GROWTH = 1.25
# What jobs.search_index did to a gallery's index.
EXACT_SEARCH, TUNED, RETUNED, REBUILT = "exact", "tuned", "retuned", "rebuilt"


@dataclasses.dataclass
class Trial:
    """One configuration, measured on the held-out rows."""

    kind: str
    params: dict[str, int]
    rerank: int
    recall: float  # the lowest of the query sets' recall@10
    floor: float  # the lowest of their recall_floor: what the target is held against
    p50_ms: float
    memory: int

    def summary(self) -> dict[str, Any]:
        """The trial as the manifest records it: kind, params, rerank, recall@10 and its floor, p50_ms and
        memory_bytes."""
        return {
            "kind": self.kind,
            "params": self.params,
            "rerank": self.rerank,
            "recall@10": round(self.recall, 4),
            "recall@10_floor": round(self.floor, 4),
            "p50_ms": round(self.p50_ms, 3),
            "memory_bytes": self.memory,
        }


def shares(found: list[list[Hit]], truth: list[list[Hit]], k: int = K) -> np.ndarray:
    """Per query, the share of the k returned rows whose score reaches the k-th true score, less
    TIE (ann-benchmarks' epsilon, on cosine distance)."""
    out = []
    for hits, true in zip(found, truth):
        threshold = true[min(k, len(true)) - 1].score - TIE
        out.append(sum(hit.score >= threshold for hit in hits[:k]) / min(k, len(true)))
    return np.asarray(out, np.float64)


def recall(found: list[list[Hit]], truth: list[list[Hit]], k: int = K) -> float:
    """Recall@k as ann-benchmarks counts it: the mean of `shares`."""
    return float(shares(found, truth, k).mean())


def recall_floor(found: list[list[Hit]], truth: list[list[Hit]], k: int = K) -> float:
    """Recall@k less CONFIDENCE standard errors: what queries to come reach with ~97.5% confidence.
    Without it the cheapest configuration just over the target on held-out rows (the one always
    chosen) falls under it on new queries more often than not."""
    values = shares(found, truth, k)
    spread = values.std(ddof=1) / np.sqrt(len(values)) if len(values) > 1 else 0.0
    return float(values.mean() - CONFIDENCE * spread)


def held_out(count: int, queries: int = HELD_OUT, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(the held-out rows, the others), both sorted: the held-out rows are the tuning queries, and
    are left out of the indexes tried, as queries to come will be."""
    rows = np.sort(np.random.default_rng(seed).choice(count, min(queries, count // 10), replace=False))
    rest = np.ones(count, bool)
    rest[rows] = False
    return rows, np.flatnonzero(rest)


def _p50_ms(search: Callable[[np.ndarray], Any], queries: np.ndarray) -> float:
    search(queries[:1])
    times = []
    for query in queries:
        start = time.perf_counter()
        search(query[None])
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def _sweep(index, vectors, rest, sets, target, log) -> list[Trial]:
    """For each setting, the smallest rerank with which every query set (queries, their true hits)
    reaches the target, and the next larger one, each timed on all the queries. `index` holds the
    `rest` rows, numbered in their order."""

    def candidates(q: np.ndarray, n: int, setting: dict[str, int]) -> np.ndarray:
        found = index.candidates(q, n, setting)
        return np.where(found >= 0, rest[np.maximum(found, 0)], -1)

    def measure(pools: list[np.ndarray], rerank: int) -> tuple[float, float]:
        found = [(rescore(vectors, q, pool[:, :rerank], K), truth) for (q, truth), pool in zip(sets, pools)]
        return min(recall(*pair) for pair in found), min(recall_floor(*pair) for pair in found)

    queries = np.concatenate([q[:TIMED] for q, _ in sets])
    trials = []
    for setting in index.settings():
        pools = [candidates(q, max(index.reranks), setting) for q, _ in sets]
        first = next((i for i, r in enumerate(index.reranks) if measure(pools, r)[1] >= target), len(index.reranks) - 1)
        # The smallest rerank that reaches the target, and the next: rescoring more may cost little.
        for rerank in index.reranks[first : first + 2]:
            measured, floor = measure(pools, rerank)
            p50 = _p50_ms(lambda q: rescore(vectors, q, candidates(q, rerank, setting), K), queries)
            params = {**index.params(), **setting}
            trials.append(Trial(index.kind, params, rerank, measured, floor, p50, index.memory()))
            log(
                f"  {index.kind} {params} rerank {rerank}: recall@10 {measured:.3f} (at least {floor:.3f}), "
                f"p50 {p50:.2f} ms"
            )
        if floor >= target and index.kind == HNSW:
            break  # a wider search is only slower
    return trials


@dataclasses.dataclass
class Choice(Trial):
    """The configuration chosen, with what it was chosen under and from, and the index built."""

    budget: int
    target: float
    held_out: int
    captions: int  # of the held-out rows, embedded as text queries
    trials: list[Trial]
    index: Index | None = None

    def manifest(self) -> dict[str, Any]:
        """The choice as the manifest's index_tuning records it: the winning trial's summary, the target, the memory
        budget, how many held-out rows and captions were queried, and every trial measured."""
        return {
            **self.summary(),
            "target_recall": self.target,
            "memory_budget": self.budget,
            "held_out": self.held_out,
            "caption_queries": self.captions,
            "measured": [trial.summary() for trial in self.trials],
        }

    def describe(self) -> str:
        """One line for the log: the kind and its settings, recall@10 and its floor, the held-out rows, the median
        latency and the memory held."""
        settings = ", ".join(f"{k} {v}" for k, v in self.params.items())
        rerank = f", {self.rerank} rescored" if self.kind != EXACT else ""
        how = f" ({settings}{rerank})" if settings or rerank else ""
        captions = f" and {self.captions} of their captions" if self.captions else ""
        return (
            f"{self.kind}{how}: recall@10 {self.recall:.3f} (at least {self.floor:.3f} for new queries, with "
            f"97.5% confidence) on {self.held_out} held-out rows{captions}, "
            f"p50 {self.p50_ms:.2f} ms, {size_text(self.memory)} in memory"
        )


def nlist_for(count: int) -> int:
    """Inverted lists for `count` rows: a power of two near √count, with at least 39 rows each."""
    wanted = 2 ** round(math.log2(max(math.sqrt(count), 1)))
    return int(max(1, min(wanted, count // 39, 65_536)))


def _builders(count: int, dim: int, budget: int) -> dict[str, tuple[int, Callable[..., Any]]]:
    """Each approximate kind: (its estimated memory for `count` rows, a function building it)."""
    m = subquantizers(dim, dim // 2)
    nlist = nlist_for(count)
    while m > 1 and IVFPQ.estimate(count, dim, m, nlist) > budget:
        m = subquantizers(dim, m // 2)
    return {
        IVF_PQ: (IVFPQ.estimate(count, dim, m, nlist), functools.partial(IVFPQ.train, m=m, nlist=nlist)),
        PQ_SCAN: (PQScan.estimate(count, dim, m), functools.partial(PQScan.train, m=m)),
        HNSW: (HNSWGraph.estimate(count, dim), functools.partial(HNSWGraph.train, neighbours=HNSW_NEIGHBOURS)),
    }


def choose(
    vectors: np.ndarray,
    budget: int = DEFAULT_BUDGET,
    target: float = TARGET_RECALL,
    log: Callable[[str], None] = lambda message: None,
    texts_of: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Choice:
    """The fastest index for `vectors` whose recall@10 reaches `target` and whose memory fits `budget`.

    Each kind is tried on every row but the held-out ones, which are the queries; the winner is then
    built on every row. `texts_of(rows)`, when given, embeds the held-out rows' captions: a second
    query set, which must reach the target too. Text queries lie apart from the images they match
    (CLIP's modality gap), and a graph tuned on image queries alone can miss their neighbours.
    """
    count, dim = vectors.shape
    rows, rest = held_out(count)
    queries = np.ascontiguousarray(vectors[rows], dtype=np.float32)
    timed = queries[: 20 if count > 100_000 else TIMED]  # exact search of a large gallery is slow
    trials = [Trial(EXACT, {}, 0, 1.0, 1.0, _p50_ms(lambda q: exact_search(vectors, q, K), timed), 0)]
    log(f"  exact: p50 {trials[0].p50_ms:.2f} ms")
    builders = _builders(count, dim, budget) if count >= MIN_ROWS else {}
    sets = []
    if builders:
        texts = texts_of(rows) if texts_of is not None else np.zeros((0, dim), np.float32)
        sets = [(q, exact_search(vectors, q, K, leave_out=rows)) for q in (queries, texts) if len(q)]
        log(
            f"  tuning queries: {len(queries)} held-out rows"
            + (f" and {len(texts)} of their captions" if len(texts) else "")
        )
    for kind, (memory, build) in builders.items():
        if memory > budget:
            log(f"  {kind}: skipped, needs about {size_text(memory)}, over the {size_text(budget)} budget")
            continue
        start = time.perf_counter()
        index = build(vectors, rest)
        log(f"  {kind}: built in {time.perf_counter() - start:.1f} s")
        trials += _sweep(index, vectors, rest, sets, target, log)
        del index
    passing = [trial for trial in trials if trial.floor >= target and trial.memory <= budget]
    fastest = min(trial.p50_ms for trial in passing)
    # Timings this close are the same to a visitor: take the one with the most recall to spare, as the
    # held-out rows only estimate recall on queries to come.
    best = max(
        (trial for trial in passing if trial.p50_ms <= SAME_SPEED * fastest + 0.02),
        key=lambda trial: (trial.recall, -trial.p50_ms),
    )
    index = None
    if best.kind != EXACT:
        log(f"  {best.kind}: building on all {count:,} rows")
        index = builders[best.kind][1](vectors)
        index.candidates(queries[:1], 1, {k: v for k, v in best.params.items() if k in SETTINGS})
        best = dataclasses.replace(best, params={**best.params, **index.params()}, memory=index.memory())

    def merit(trial: Trial) -> tuple:  # the fastest passing configuration, else the best recall
        return (trial.floor >= target, -trial.p50_ms if trial.floor >= target else trial.floor)

    per_kind = {trial.kind: max((t for t in trials if t.kind == trial.kind), key=merit) for trial in trials}
    per_kind[best.kind] = best
    return Choice(
        **vars(best),
        budget=budget,
        target=target,
        held_out=len(rows),
        captions=len(sets[1][0]) if len(sets) > 1 else 0,
        trials=list(per_kind.values()),
        index=index,
    )


def estimate(kind: str, count: int, dim: int, params: dict[str, int]) -> int:
    """The bytes an index of the approximate `kind` built with `params` (as the manifest records them) holds on
    `count` rows of `dim` floats, known before it is built."""
    return LOADERS[kind].estimate(count, dim, **{name: params[name] for name in BUILT_WITH[kind]})


def rebuild(vectors: np.ndarray, kind: str, params: dict[str, int]) -> Index:
    """An index of the approximate `kind` on every row of `vectors`, built with the parameters an earlier `choose`
    picked (`params`, as the manifest records them) and set to search as widely as it chose: nothing is measured."""
    index = LOADERS[kind].train(vectors, **{name: params[name] for name in BUILT_WITH[kind]})
    setting = {name: value for name, value in params.items() if name in SETTINGS}
    index.candidates(np.ascontiguousarray(vectors[:1], np.float32), 1, setting)
    return index


def tuned_count(manifest: dict[str, Any]) -> int | None:
    """How many rows the gallery had when its index was tuned: its index_tuning's tuned_count, or its count in a
    gallery indexed before tuned_count was recorded; None for a gallery never tuned. GalleryError for a
    tuned_count that is not a whole number from 1 to the gallery's count."""
    recorded = manifest.get("index_tuning")
    if recorded is None:
        return None
    value = recorded.get("tuned_count", manifest["count"]) if isinstance(recorded, dict) else None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= manifest["count"]:
        raise GalleryError(
            f"the manifest's index_tuning gives tuned_count {value!r}, not a whole number from 1 to the gallery's "
            f"{manifest['count']} rows; re-index this gallery"
        )
    return value
