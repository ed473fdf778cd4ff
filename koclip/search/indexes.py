"""The approximate index kinds of a gallery, behind one interface (`Index`).

The kinds:
  exact    every row scored with one matrix product; small galleries, and always the fallback
  pq-scan  4-bit product-quantisation codes of every row, scanned with faiss's SIMD fast-scan
           kernels in slices (one per core). Best on vectors without cluster structure.
  ivf-pq   inverted lists: rows are grouped into `nlist` k-means cells, and a query scans the
           4-bit codes of its `nprobe` nearest cells only. Best on clustered vectors, which real
           image embeddings are.
  hnsw     a navigable small-world graph over a float32 copy of the vectors. Fast on clustered
           galleries of moderate size, and the hungriest for memory.

Each proposes candidates, which the gallery rescores exactly (exact.rescore). A graph's stored arrays
are checked against every invariant faiss's search assumes of them (`graph_problem`): faiss checks
none of it, and reads out of bounds on a crafted graph. How an index is stored is index_files.py;
how a kind and its parameters are chosen is tuning.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar, Protocol

import numpy as np

from koclip.errors import GalleryError, KoCLIPError
from koclip.search.exact import ADD_ROWS, cores

EXACT, PQ_SCAN, IVF_PQ, HNSW = "exact", "pq-scan", "ivf-pq", "hnsw"
KINDS = (EXACT, PQ_SCAN, IVF_PQ, HNSW)
K = 10  # results a search returns by default (the demo's and the CLI's), and recall's k in tuning
RERANKS = (10, 20, 50, 100, 200, 400, 1000)
NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)
EF_SEARCHES = (16, 32, 64, 128, 256, 512, 1024)
HNSW_NEIGHBOURS = 32
ROWS_PER_SLICE = 250_000  # smaller slices cost more in thread hand-offs than they save in scanning
TRAIN_ROWS_PER_CELL = 64  # k-means rows per inverted list; more adds build time, not recall
TRAIN_ROWS = 65_536  # at most this many rows train a quantiser
KMEANS_ITERATIONS = 10


def import_faiss():
    """The faiss module; KoCLIPError saying how to install faiss-cpu when it is missing."""
    try:
        import faiss
    except ImportError:
        raise KoCLIPError("approximate search needs faiss: pip install faiss-cpu") from None
    return faiss


def subquantizers(dim: int, wanted: int) -> int:
    """The number of 4-bit subquantizers nearest below `wanted` that divides dim: two dimensions per
    code (wanted = dim / 2) keeps recall@10 above 0.95 after rescoring even on unclustered vectors."""
    wanted = max(1, min(wanted, dim))
    return max(m for m in range(1, wanted + 1) if dim % m == 0)


def training_sample(vectors: np.ndarray, count: int, rows: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """`count` of the `rows` (default: all) at random, in order, as float32."""
    rows = np.arange(len(vectors)) if rows is None else rows
    picked = np.random.default_rng(seed).choice(rows, min(len(rows), count), replace=False)
    return np.ascontiguousarray(vectors[np.sort(picked)], dtype=np.float32)


def steps(vectors: np.ndarray, rows: np.ndarray | None = None):
    """The `rows` (default: all) ADD_ROWS at a time, as float32: a bounded copy of a memory-mapped file."""
    total = len(vectors) if rows is None else len(rows)
    for start in range(0, total, ADD_ROWS):
        part = vectors[start : start + ADD_ROWS] if rows is None else vectors[rows[start : start + ADD_ROWS]]
        yield np.ascontiguousarray(part, dtype=np.float32)


def add_in_steps(index, vectors: np.ndarray, rows: np.ndarray | None = None) -> None:
    """Add the `rows` of `vectors` (default: all) to the faiss `index`, ADD_ROWS at a time as float32 (see `steps`)."""
    for part in steps(vectors, rows):
        index.add(part)


def _one_thread(faiss, work: Callable[[], Any]) -> Any:
    # k-means runs many short steps; OpenMP threads that wait for each other between them are far
    # slower than one thread whenever another process holds the cores.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        return work()
    finally:
        faiss.omp_set_num_threads(threads)


def codebooks(dim: int, m: int) -> tuple[int, int, int]:
    """The shape of the m 4-bit codebooks of product quantisation over dim dimensions; ValueError for
    an m that does not divide dim, which faiss would refuse with an error of its own."""
    if not 1 <= m <= dim or dim % m:
        raise ValueError(f"m {m} does not divide the dimension {dim}")
    return m, 16, dim // m


class Index(Protocol):
    """An approximate index of a gallery's vectors: PQScan, IVFPQ and HNSWGraph are the kinds. It only
    proposes candidates; the gallery scores them exactly against its vectors (`rescore`)."""

    kind: ClassVar[str]  # its name in the manifest
    PARAMS: ClassVar[tuple[str, ...]]  # the manifest's parameters of the kind, checked before loading
    reranks: ClassVar[tuple[int, ...]]  # how many candidates tuning may ask it for
    arrays: dict[str, np.ndarray]  # what index_files stores, one .npy file each

    @classmethod
    def train(cls, vectors: np.ndarray, rows: np.ndarray | None = None, **params: int) -> Index:
        """Built on the `rows` of `vectors` (default: all), numbered in their order."""
        ...

    @classmethod
    def expected(cls, count: int, dim: int, params: dict[str, int]) -> dict[str, tuple[tuple[int, ...], str]]:
        """The shape and dtype of each stored array, for checking a stored index before it is read."""
        ...

    @classmethod
    def load(
        cls, arrays: dict[str, np.ndarray], count: int, dim: int, params: dict[str, int], vectors: np.ndarray
    ) -> Index:
        """The index rebuilt from its checked arrays (and the gallery's `vectors`, where it needs them)."""
        ...

    def params(self) -> dict[str, int]:
        """Its parameters, as the manifest records them."""
        ...

    def memory(self) -> int:
        """Bytes it holds in memory."""
        ...

    def settings(self) -> list[dict[str, int]]:
        """The search settings tuning tries (breadth of the search), cheapest first."""
        ...

    def candidates(self, queries: np.ndarray, n: int, setting: dict[str, int] | None = None) -> np.ndarray:
        """(Q, n) row numbers to rescore for each query, -1 where there are fewer."""
        ...


class PQScan:
    """4-bit PQ codes of every row, fast-scanned in slices on parallel threads (faiss releases the GIL)."""

    kind = PQ_SCAN
    PARAMS = ("m",)
    reranks = RERANKS

    def __init__(self, centroids: np.ndarray, codes: np.ndarray, dim: int, slices: int | None = None):
        faiss = import_faiss()
        self.arrays = {"centroids": centroids, "codes": codes}
        m = centroids.shape[0]
        count = len(codes)
        slices = slices or min(cores(), max(1, count // ROWS_PER_SLICE))
        edges = np.linspace(0, count, slices + 1).astype(int).tolist()
        self.starts, self.parts = edges[:-1], []
        for start, stop in zip(edges[:-1], edges[1:]):
            part = faiss.IndexPQ(dim, m, 4, faiss.METRIC_INNER_PRODUCT)
            faiss.copy_array_to_vector(np.ascontiguousarray(centroids, np.float32).ravel(), part.pq.centroids)
            part.is_trained = True
            part.add_sa_codes(np.ascontiguousarray(codes[start:stop]))
            self.parts.append(faiss.IndexPQFastScan(part))
        self._pool = ThreadPoolExecutor(len(self.parts)) if len(self.parts) > 1 else None

    @classmethod
    def train(cls, vectors: np.ndarray, rows: np.ndarray | None = None, *, m: int) -> PQScan:
        """Codes of the `rows` (default: all), numbered in their order."""
        faiss = import_faiss()
        dim = vectors.shape[1]
        index = faiss.IndexPQ(dim, m, 4, faiss.METRIC_INNER_PRODUCT)
        _one_thread(faiss, lambda: index.train(training_sample(vectors, TRAIN_ROWS, rows)))
        codes = np.concatenate([index.sa_encode(part) for part in steps(vectors, rows)])
        centroids = faiss.vector_to_array(index.pq.centroids).reshape(m, 16, dim // m)
        return cls(centroids, codes, dim)

    @classmethod
    def expected(cls, count: int, dim: int, params: dict[str, int]) -> dict[str, tuple[tuple[int, ...], str]]:
        """`Index.expected`: the float32 codebooks, (m, 16, dim / m), and the uint8 codes, two per byte: (count,
        ceil(m / 2))."""
        m = params["m"]
        return {"centroids": (codebooks(dim, m), "float32"), "codes": ((count, math.ceil(m / 2)), "uint8")}

    @classmethod
    def load(
        cls, arrays: dict[str, np.ndarray], count: int, dim: int, params: dict[str, int], vectors: np.ndarray
    ) -> PQScan:
        """`Index.load`: the index from its codebooks and codes (it needs no `vectors`)."""
        return cls(arrays["centroids"], arrays["codes"], dim)

    def params(self) -> dict[str, int]:
        """`Index.params`: {"m": the number of subquantizers}."""
        return {"m": int(self.arrays["centroids"].shape[0])}

    def memory(self) -> int:
        """`Index.memory`: the bytes of its codebooks and codes."""
        return sum(a.nbytes for a in self.arrays.values())

    @staticmethod
    def estimate(count: int, dim: int, m: int) -> int:
        """The bytes a PQScan of `count` rows of `dim` floats with `m` 4-bit subquantizers holds, known before it is
        built."""
        return count * math.ceil(m / 2) + m * 16 * (dim // m) * 4

    def settings(self) -> list[dict[str, int]]:
        """`Index.settings`: one, empty: every row's code is scanned, so there is nothing to tune."""
        return [{}]

    def candidates(self, queries: np.ndarray, n: int, setting: dict[str, int] | None = None) -> np.ndarray:
        """(queries, n) rows, best first by approximate score; -1 pads short results."""
        if self._pool is None:
            return self.parts[0].search(queries, n)[1]
        found = list(self._pool.map(lambda part: part.search(queries, n), self.parts))
        values = np.concatenate([d for d, _ in found], axis=1)
        rows = np.concatenate([np.where(i >= 0, i + start, -1) for start, (_, i) in zip(self.starts, found)], axis=1)
        best = np.argsort(-values, axis=1, kind="stable")[:, :n]
        return np.take_along_axis(rows, best, axis=1)


class IVFPQ:
    """Inverted lists of 4-bit PQ codes (of each row's offset from its cell's centre), fast-scanned."""

    kind = IVF_PQ
    PARAMS = ("m", "nlist", "nprobe")
    reranks = RERANKS

    def __init__(self, coarse: np.ndarray, centroids: np.ndarray, lists: np.ndarray, codes: np.ndarray):
        faiss = import_faiss()
        self.arrays = {"coarse": coarse, "centroids": centroids, "lists": lists, "codes": codes}
        nlist, dim = coarse.shape
        m = centroids.shape[0]
        self._quantizer = faiss.IndexFlatIP(dim)
        self._quantizer.add(np.ascontiguousarray(coarse, np.float32))
        plain = faiss.IndexIVFPQ(self._quantizer, dim, nlist, m, 4, faiss.METRIC_INNER_PRODUCT)
        faiss.copy_array_to_vector(np.ascontiguousarray(centroids, np.float32).ravel(), plain.pq.centroids)
        plain.is_trained = True
        order = np.argsort(lists, kind="stable")
        bounds = np.searchsorted(lists[order], np.arange(nlist + 1))
        for cell in range(nlist):
            ids = order[bounds[cell] : bounds[cell + 1]].astype(np.int64)
            if len(ids):
                cell_codes = np.ascontiguousarray(codes[ids])
                plain.invlists.add_entries(cell, len(ids), faiss.swig_ptr(ids), faiss.swig_ptr(cell_codes))
        plain.ntotal = len(lists)
        self.index = faiss.IndexIVFPQFastScan(plain)
        self.index.nprobe = 1

    @classmethod
    def train(cls, vectors: np.ndarray, rows: np.ndarray | None = None, *, m: int, nlist: int) -> IVFPQ:
        """Lists of the `rows` (default: all), numbered in their order."""
        faiss = import_faiss()
        dim = vectors.shape[1]
        count = len(vectors) if rows is None else len(rows)
        quantizer = faiss.IndexFlatIP(dim)
        plain = faiss.IndexIVFPQ(quantizer, dim, nlist, m, 4, faiss.METRIC_INNER_PRODUCT)
        plain.cp.max_points_per_centroid = TRAIN_ROWS_PER_CELL
        plain.cp.niter = KMEANS_ITERATIONS
        sample = training_sample(vectors, min(TRAIN_ROWS, TRAIN_ROWS_PER_CELL * nlist), rows)
        _one_thread(faiss, lambda: plain.train(sample))
        add_in_steps(plain, vectors, rows)
        lists = np.empty(count, np.int32)
        codes = np.empty((count, plain.code_size), np.uint8)
        invlists = plain.invlists
        for cell in range(nlist):
            size = invlists.list_size(cell)
            if size:
                ids = faiss.rev_swig_ptr(invlists.get_ids(cell), size).copy()
                lists[ids] = cell
                codes[ids] = faiss.rev_swig_ptr(invlists.get_codes(cell), size * plain.code_size).reshape(size, -1)
        coarse = faiss.vector_to_array(faiss.downcast_index(plain.quantizer).codes).view(np.float32).reshape(nlist, dim)
        centroids = faiss.vector_to_array(plain.pq.centroids).reshape(m, 16, dim // m)
        return cls(coarse.copy(), centroids, lists, codes)

    @classmethod
    def expected(cls, count: int, dim: int, params: dict[str, int]) -> dict[str, tuple[tuple[int, ...], str]]:
        """`Index.expected`: the coarse centroids, (nlist, dim) float32; the PQ codebooks, (m, 16, dim / m) float32;
        each row's list, (count,) int32; and the rows' codes, (count, ceil(m / 2)) uint8."""
        m, nlist = params["m"], params["nlist"]
        return {
            "coarse": ((nlist, dim), "float32"),
            "centroids": (codebooks(dim, m), "float32"),
            "lists": ((count,), "int32"),
            "codes": ((count, math.ceil(m / 2)), "uint8"),
        }

    @classmethod
    def load(
        cls, arrays: dict[str, np.ndarray], count: int, dim: int, params: dict[str, int], vectors: np.ndarray
    ) -> IVFPQ:
        """`Index.load`: the index from its arrays, set to search params["nprobe"] lists; GalleryError when a row's
        list or nprobe falls outside 0 to nlist."""
        lists = np.asarray(arrays["lists"])
        if (
            len(lists)
            and (lists.min() < 0 or lists.max() >= params["nlist"])
            or not 1 <= params["nprobe"] <= params["nlist"]
        ):
            raise GalleryError("the index's lists do not fit its parameters; re-index this gallery")
        index = cls(arrays["coarse"], arrays["centroids"], lists, arrays["codes"])
        index.index.nprobe = params["nprobe"]
        return index

    def params(self) -> dict[str, int]:
        """`Index.params`: m, nlist and the nprobe it searches with."""
        return {
            "m": int(self.arrays["centroids"].shape[0]),
            "nlist": int(self.arrays["coarse"].shape[0]),
            "nprobe": int(self.index.nprobe),
        }

    def memory(self) -> int:
        """`Index.memory`: the bytes of its arrays, plus the 8-byte id faiss keeps per row."""
        return sum(a.nbytes for a in self.arrays.values()) + 8 * len(self.arrays["lists"])  # faiss keeps ids

    @staticmethod
    def estimate(count: int, dim: int, m: int, nlist: int) -> int:
        """The bytes an IVFPQ of `count` rows of `dim` floats with `m` subquantizers and `nlist` lists holds, known
        before it is built."""
        return count * (math.ceil(m / 2) + 4 + 8) + nlist * dim * 4 + m * 16 * (dim // m) * 4

    def settings(self) -> list[dict[str, int]]:
        """`Index.settings`: one nprobe of NPROBES per setting, up to nlist, fewest lists first."""
        return [{"nprobe": n} for n in NPROBES if n <= self.arrays["coarse"].shape[0]]

    def candidates(self, queries: np.ndarray, n: int, setting: dict[str, int] | None = None) -> np.ndarray:
        """`Index.candidates`: (Q, n) int64 row numbers for (Q, dim) float32 queries, -1 where there are fewer; a
        `setting` first sets nprobe."""
        if setting:
            self.index.nprobe = setting["nprobe"]
        return self.index.search(queries, n)[1]


class HNSWGraph:
    """faiss's HNSW graph over a float32 copy of the vectors; the graph's arrays are what is stored."""

    kind = HNSW
    PARAMS = ("neighbours", "entry_point", "max_level", "ef_search")
    reranks = (K,)  # the graph scores exactly already; its breadth is ef_search
    _GRAPH = ("neighbors", "offsets", "levels", "assign_probas", "cum_nneighbor_per_level")

    def __init__(self, index):
        faiss = import_faiss()
        self.index = index
        self.arrays = {name: faiss.vector_to_array(getattr(index.hnsw, name)) for name in self._GRAPH}

    @classmethod
    def train(
        cls, vectors: np.ndarray, rows: np.ndarray | None = None, *, neighbours: int = HNSW_NEIGHBOURS
    ) -> HNSWGraph:
        """The graph of the `rows` (default: all), numbered in their order."""
        faiss = import_faiss()
        index = faiss.IndexHNSWFlat(vectors.shape[1], neighbours, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        add_in_steps(index, vectors, rows)
        return cls(index)

    @classmethod
    def expected(cls, count: int, dim: int, params: dict[str, int]) -> dict[str, tuple[tuple[int, ...], str]]:
        """`Index.expected`: the graph's links and level tables (their lengths follow the graph, so only their dtypes
        are given), the (count + 1,) uint64 offsets and the (count,) int32 levels."""
        return {
            "neighbors": (None, "int32"),
            "offsets": ((count + 1,), "uint64"),
            "levels": ((count,), "int32"),
            "assign_probas": (None, "float64"),
            "cum_nneighbor_per_level": (None, "int32"),
        }

    @classmethod
    def load(
        cls, arrays: dict[str, np.ndarray], count: int, dim: int, params: dict[str, int], vectors: np.ndarray
    ) -> HNSWGraph:
        """`Index.load`: the graph rebuilt from its checked arrays over a float32 copy of the gallery's `vectors`;
        GalleryError when the arrays do not make a graph of `count` rows."""
        faiss = import_faiss()
        problem = graph_problem(arrays, count, params)
        if problem:
            raise GalleryError(f"the index's graph does not fit the gallery: {problem}; re-index this gallery")
        index = faiss.IndexHNSWFlat(dim, params["neighbours"], faiss.METRIC_INNER_PRODUCT)
        graph = index.hnsw
        for name in cls._GRAPH:
            faiss.copy_array_to_vector(np.ascontiguousarray(arrays[name]), getattr(graph, name))
        graph.entry_point, graph.max_level = params["entry_point"], params["max_level"]
        storage = faiss.downcast_index(index.storage)
        add_in_steps(storage, vectors)
        index.ntotal = count
        loaded = cls(index)
        index.hnsw.efSearch = params["ef_search"]
        return loaded

    def params(self) -> dict[str, int]:
        """`Index.params`: neighbours per node, the entry point, the top level and ef_search."""
        graph = self.index.hnsw
        return {
            "neighbours": int(graph.nb_neighbors(1)),
            "entry_point": int(graph.entry_point),
            "max_level": int(graph.max_level),
            "ef_search": int(graph.efSearch),
        }

    def memory(self) -> int:
        """`Index.memory`: the bytes of its graph arrays and of its float32 copy of the vectors."""
        return sum(a.nbytes for a in self.arrays.values()) + self.index.ntotal * self.index.d * 4

    @staticmethod
    def estimate(count: int, dim: int, neighbours: int = HNSW_NEIGHBOURS) -> int:
        """The bytes an HNSW graph of `count` rows of `dim` floats with `neighbours` links per node holds, known
        before it is built."""
        # The vectors' copy, level 0's 2M links and, on average, about one more row's worth above it.
        return count * (dim * 4 + 4 * 3 * neighbours + 16)

    def settings(self) -> list[dict[str, int]]:
        """`Index.settings`: one ef_search of EF_SEARCHES per setting, narrowest first."""
        return [{"ef_search": ef} for ef in EF_SEARCHES]

    def candidates(self, queries: np.ndarray, n: int, setting: dict[str, int] | None = None) -> np.ndarray:
        """`Index.candidates`: (Q, n) int64 row numbers for (Q, dim) float32 queries, -1 where there are fewer; a
        `setting` first sets ef_search (to n at least)."""
        if setting:
            self.index.hnsw.efSearch = max(setting["ef_search"], n)
        return self.index.search(queries, n)[1]


def graph_problem(arrays: dict[str, np.ndarray], count: int, params: dict[str, int]) -> str | None:
    """What in a stored graph breaks an invariant that faiss's search relies on without checking it,
    or None when nothing does.

    faiss starts at the entry point on level max_level and walks down level by level; it reads the
    links of row u at level l from neighbors[offsets[u] + cum[l] : offsets[u] + cum[l + 1]] (cum:
    cum_nneighbor_per_level), stops at the first -1, and follows every other link to its row. So each
    row's links must sit where its level says (levels[u] is the number of levels row u is on), the
    entry point must be on max_level, and a link at level l must lead to a row on level l: a row
    with fewer levels has no links there, and faiss would read another row's, or past the array.
    """
    neighbors, offsets = np.asarray(arrays["neighbors"]), np.asarray(arrays["offsets"]).astype(np.int64)
    levels, cumulative = np.asarray(arrays["levels"]), np.asarray(arrays["cum_nneighbor_per_level"]).astype(np.int64)
    m, top, entry = params["neighbours"], params["max_level"], params["entry_point"]
    steps = np.full(max(len(cumulative) - 1, 0), m, np.int64)
    steps[:1] = 2 * m
    if (
        m < 1
        or params["ef_search"] < 1
        or len(cumulative) < top + 2
        or cumulative[0] != 0
        or not np.array_equal(np.diff(cumulative), steps)
    ):
        return f"its levels do not hold {2 * m} links on level 0 and {m} on each level above"
    if count == 0:
        return "the gallery has no rows"
    if levels.min() < 1 or levels.max() > top + 1:
        return f"a row is on no level, or above max_level {top}"
    if offsets[0] != 0 or offsets[-1] != len(neighbors) or not np.array_equal(np.diff(offsets), cumulative[levels]):
        return "a row's links are not where its level puts them"
    if len(neighbors) and (neighbors.min() < -1 or neighbors.max() >= count):
        return "a link leads to a row that is not there"
    if not 0 <= entry < count or levels[entry] != top + 1:
        return f"its entry point {entry} is not a row on max_level {top}"
    bad = _link_above_its_row(neighbors, offsets, levels, m)
    if bad is not None:
        return f"a link of row {bad} leads to a row that is not on the link's level"
    return None


def _link_above_its_row(neighbors: np.ndarray, offsets: np.ndarray, levels: np.ndarray, m: int) -> int | None:
    """The first row with a link above level 0 to a row not on that level, or None. Level 0 needs no
    check: every row is on it. The rows above it are few (1 in m), and are checked ADD_ROWS at a time."""
    upper = np.flatnonzero(levels > 1)
    for start in range(0, len(upper), ADD_ROWS):
        rows = upper[start : start + ADD_ROWS]
        width = (levels[rows].astype(np.int64) - 1) * m  # each row's links above level 0
        within = np.arange(width.sum()) - np.repeat(np.cumsum(width) - width, width)
        targets = neighbors[np.repeat(offsets[rows] + 2 * m, width) + within]
        wrong = (targets >= 0) & (levels[np.maximum(targets, 0)] <= 1 + within // m)
        if wrong.any():
            return int(np.repeat(rows, width)[np.argmax(wrong)])
    return None


LOADERS: dict[str, type[Index]] = {PQ_SCAN: PQScan, IVF_PQ: IVFPQ, HNSW: HNSWGraph}
