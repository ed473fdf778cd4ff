"""Galleries: a folder of image embeddings with their metadata and thumbnails, and search over it.

A gallery directory holds:
  vectors.npy     (count, dim) float32 or float16, L2-normalised rows, memory-mapped when opened
  metadata.jsonl  one JSON object per row: source, width, height, caption (if any), thumbnail
  thumbs/         small JPEGs, so results can be shown without the original images
  index.faiss     (large galleries only) 4-bit product-quantisation codes of every row
  manifest.json   model, dim, dtype, count, source, skipped inputs; written last, so a folder
                  without it is an unfinished gallery and is refused

Exact search scores every row. Approximate search scans the codes of every row with faiss's
SIMD fast-scan kernels and scores its best few hundred candidates exactly against `vectors.npy`.
Inverted lists and graphs must visit most of a collection to find the true neighbours of
embeddings without cluster structure; a scan of compact codes (128 bytes for 512 dimensions)
keeps them among its first few hundred candidates. A single query's scan runs on one core, so
large galleries are cut into slices, one per core, scanned side by side.
"""

from __future__ import annotations

import json
import math
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from koclip.errors import GalleryError, InvalidInputError, KoCLIPError

if TYPE_CHECKING:
    import faiss

    from koclip.api import KoCLIP

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
METADATA = "metadata.jsonl"
THUMBS = "thumbs"
ANN_FILE = "index.faiss"
EXACT = "exact"
DTYPES = ("float32", "float16")
ANN_THRESHOLD = 50_000  # galleries at least this large get an approximate index
ANN_MIN_ROWS = 16  # each 4-bit code has 16 centroids to learn: fewer rows cannot train it
RERANK = 400  # approximate candidates rescored exactly; enough for recall@10 of about 0.99
ROWS_PER_SLICE = 250_000  # smaller slices cost more in thread hand-offs than they save in scanning
_TRAIN_SAMPLE = 65_536  # rows the quantiser learns from; more adds build time, not recall
_ROWS_PER_STEP = 1 << 18  # float16 rows converted at a time, bounding the float32 copy
_SCORES_PER_STEP = 1 << 24  # rows x queries scored at once, bounding the score matrix
_REQUIRED = ("format_version", "model", "dim", "dtype", "count", "index")


class Hit(NamedTuple):
    index: int
    score: float


def import_faiss():
    try:
        import faiss
    except ImportError:
        raise KoCLIPError("approximate search needs faiss: pip install faiss-cpu") from None
    return faiss


def _subquantizers(dim: int) -> int:
    # Two dimensions per 4-bit code: with four, recall@10 on unstructured vectors falls below 0.95.
    return dim // 2 if dim % 2 == 0 else dim


def ann_kind(dim: int) -> str:
    """The manifest's name for the approximate index of `dim`-dimensional vectors."""
    return f"pq{_subquantizers(dim)}x4"


def build_ann(vectors: np.ndarray) -> faiss.IndexPQ:
    """4-bit product-quantisation codes of every row, stored plainly so they can be sliced at load."""
    faiss = import_faiss()
    dim = vectors.shape[1]
    index = faiss.IndexPQ(dim, _subquantizers(dim), 4, faiss.METRIC_INNER_PRODUCT)
    rows = np.random.default_rng(0).choice(len(vectors), min(len(vectors), _TRAIN_SAMPLE), replace=False)
    # One thread: training is many small k-means, and OpenMP threads that wait for each other
    # between them are far slower than one thread whenever another process holds the cores.
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.train(np.ascontiguousarray(vectors[np.sort(rows)], dtype=np.float32))
    finally:
        faiss.omp_set_num_threads(threads)
    for start in range(0, len(vectors), _ROWS_PER_STEP):
        index.add(np.ascontiguousarray(vectors[start : start + _ROWS_PER_STEP], dtype=np.float32))
    return index


def _scores(vectors: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """(rows, queries) inner products, float32."""
    if vectors.dtype == np.float32:
        return vectors @ queries.T
    # NumPy has no BLAS kernel for float16: convert a slice at a time.
    out = np.empty((len(vectors), len(queries)), np.float32)
    for start in range(0, len(vectors), _ROWS_PER_STEP):
        part = vectors[start : start + _ROWS_PER_STEP]
        out[start : start + len(part)] = part.astype(np.float32) @ queries.T
    return out


def _top(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores, best first; ties go to the lower position."""
    if k < len(scores):
        part = np.argpartition(-scores, k - 1)[:k]
    else:
        part = np.arange(len(scores))
    return part[np.lexsort((part, -scores[part]))]


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> list[list[Hit]]:
    """The k best rows for each query, by inner product over every row."""
    step = max(1, _SCORES_PER_STEP // max(len(vectors), 1))
    hits = []
    for start in range(0, len(queries), step):
        scores = _scores(vectors, queries[start : start + step])
        for column in scores.T:
            hits.append([Hit(int(i), float(column[i])) for i in _top(column, k)])
    return hits


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def scan_slices(count: int) -> int:
    """How many slices a gallery of `count` rows scans in parallel: one per core, if big enough."""
    return min(cores(), max(1, count // ROWS_PER_SLICE))


class CodeScan:
    """Fast-scan search over product-quantisation codes, in slices scanned on parallel threads.

    faiss releases the GIL while it scans, so Python threads give real parallelism.
    """

    def __init__(self, codes: faiss.IndexPQ, slices: int | None = None):
        faiss = import_faiss()
        count = codes.ntotal
        if slices is None:
            slices = scan_slices(count)
        packed = faiss.vector_to_array(codes.codes).reshape(count, codes.code_size)
        edges = np.linspace(0, count, slices + 1).astype(int).tolist()
        self.starts, self.parts = edges[:-1], []
        for start, stop in zip(edges[:-1], edges[1:]):
            part = faiss.IndexPQ(codes.d, codes.pq.M, codes.pq.nbits, codes.metric_type)
            part.pq = codes.pq  # the trained quantiser, copied
            part.is_trained = True
            part.add_sa_codes(packed[start:stop])
            self.parts.append(faiss.IndexPQFastScan(part))
        self._pool = ThreadPoolExecutor(len(self.parts)) if len(self.parts) > 1 else None

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """(queries, k) candidate rows, best first by approximate score; -1 pads short results."""
        if self._pool is None:
            return self.parts[0].search(queries, k)[1]
        found = list(self._pool.map(lambda part: part.search(queries, k), self.parts))
        scores = np.concatenate([d for d, _ in found], axis=1)
        rows = np.concatenate([np.where(i >= 0, i + start, -1) for start, (_, i) in zip(self.starts, found)], axis=1)
        best = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(rows, best, axis=1)


def ann_search(index: CodeScan, vectors: np.ndarray, queries: np.ndarray, k: int) -> list[list[Hit]]:
    """Candidates from the code scan, rescored exactly: scores are true inner products."""
    candidates = index.search(queries, max(RERANK, k))
    hits = []
    for query, rows in zip(queries, candidates):
        rows = np.sort(rows[rows >= 0])  # sorted: fewer page faults on a memory-mapped file
        scores = vectors[rows].astype(np.float32) @ query
        hits.append([Hit(int(rows[i]), float(scores[i])) for i in _top(scores, k)])
    return hits


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    directory = Path(path)
    file = directory / MANIFEST
    if not directory.is_dir():
        raise GalleryError(f"{directory} is not a gallery: no such directory")
    if not file.is_file():
        raise GalleryError(
            f"{directory} has no {MANIFEST}: it is not a gallery, or its indexing has not finished. "
            "Run `python -m koclip index` again with the same --out to finish it."
        )
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise GalleryError(f"{file} is unreadable ({exc}); re-index this gallery") from None
    missing = [key for key in _REQUIRED if not isinstance(manifest, dict) or key not in manifest]
    if missing:
        raise GalleryError(f"{file} lacks {', '.join(missing)}; re-index this gallery")
    for key, low in (("count", 0), ("dim", 1)):
        value = manifest[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise GalleryError(f"{file} has {key} {value!r}, not a whole number of at least {low}; re-index this gallery")
    if not isinstance(manifest["model"], str) or not isinstance(manifest["index"], str):
        raise GalleryError(f"{file} names its model or index with something other than text; re-index this gallery")
    if manifest["dtype"] not in DTYPES:
        raise GalleryError(f"{file} has unknown dtype {manifest['dtype']!r}; re-index this gallery")
    if manifest["format_version"] != FORMAT_VERSION:
        raise GalleryError(
            f"{directory} has gallery format {manifest['format_version']}; this koclip reads format "
            f"{FORMAT_VERSION}. Re-index it with this version."
        )
    return manifest


_PQ_MAGIC = b"IxPq"
_PQ_HEADER = struct.Struct("<4siqqqBi")  # fourcc, d, ntotal, two unused, is_trained, metric
_PQ_SIZES = struct.Struct("<QQQ")  # the quantiser's d, M, nbits
_PQ_TRAILER = 9  # search type, sign encoding and polysemous threshold after the codes


def check_index_file(path: Path, count: int, dim: int) -> None:
    """Check index.faiss against the gallery before faiss reads it: faiss allocates whatever a
    header claims, so a small file claiming gigabytes of codes would cost that much memory."""
    damaged = f"{path} does not match the gallery ({count} rows of {dim}); re-index this gallery"
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(_PQ_HEADER.size + _PQ_SIZES.size + 8)
            magic, d, ntotal, _, _, _, _ = _PQ_HEADER.unpack_from(head)
            if magic != _PQ_MAGIC:
                raise GalleryError(
                    f"{path} holds another kind of faiss index ({magic!r}), not the product-quantisation codes "
                    "this koclip searches; re-index this gallery"
                )
            pq_d, m, nbits = _PQ_SIZES.unpack_from(head, _PQ_HEADER.size)
            (centroids,) = struct.unpack_from("<Q", head, _PQ_HEADER.size + _PQ_SIZES.size)
            expected_centroids = pq_d * 2**nbits if nbits <= 16 else -1
            f.seek(_PQ_HEADER.size + _PQ_SIZES.size + 8 + 4 * centroids)
            (codes,) = struct.unpack("<Q", f.read(8))
    except FileNotFoundError:
        raise GalleryError(f"{path} is missing; re-index this gallery") from None
    except (OSError, struct.error, OverflowError, ValueError):
        raise GalleryError(damaged) from None
    code_size = math.ceil(m * nbits / 8) if m and nbits else 0
    total = _PQ_HEADER.size + _PQ_SIZES.size + 8 + 4 * centroids + 8 + codes + _PQ_TRAILER
    if (d, ntotal, pq_d, centroids, codes, total) != (dim, count, dim, expected_centroids, count * code_size, size):
        raise GalleryError(damaged)


def model_reference(manifest: dict[str, Any]) -> str:
    """What to load for a gallery's model: the folder it was read from if that still exists, else its name."""
    folder = manifest.get("model_path")
    return folder if folder and Path(folder).is_dir() else manifest["model"]


def signature(path: Path | None) -> tuple[int, int, int] | None:
    """What changes when a gallery is rewritten: its manifest's inode, size and modification time."""
    if path is None:
        return None
    try:
        stat = (path / MANIFEST).stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _inside(thumbnail) -> bool:
    """Whether a metadata `thumbnail` names a file within the gallery folder (not /etc/passwd, not ../x)."""
    if not isinstance(thumbnail, str) or not thumbnail:
        return False
    parts = Path(thumbnail).parts
    return not Path(thumbnail).is_absolute() and ".." not in parts and "\\" not in thumbnail


class Gallery:
    def __init__(self, path: Path | None, manifest: dict[str, Any], vectors: np.ndarray, ann: CodeScan | None):
        self.path = path  # None for a gallery held in memory only
        self.manifest = manifest
        self.vectors = vectors
        self.ann = ann
        self._metadata: list[dict[str, Any]] | None = None
        self._signature = signature(path)

    @classmethod
    def in_memory(cls, model: KoCLIP, vectors: np.ndarray, rows: list[dict[str, Any]]) -> Gallery:
        """A small gallery searched exactly and kept in memory, such as a visitor's own uploads.

        Each row's `thumbnail` is the image itself (JPEG bytes), not a file name.
        """
        if len(vectors) != len(rows):
            raise GalleryError(f"{len(vectors)} vectors for {len(rows)} metadata rows")
        manifest = {"format_version": FORMAT_VERSION, "model": model.name, "model_revision": model.revision,
                    "dim": model.dim, "dtype": "float32", "count": len(rows), "index": EXACT}
        gallery = cls(None, manifest, np.asarray(vectors, np.float32).reshape(len(rows), model.dim), None)
        gallery._metadata = list(rows)
        return gallery

    @classmethod
    def open(cls, path: str | os.PathLike) -> Gallery:
        directory = Path(path)
        manifest = read_manifest(directory)
        count, dim = manifest["count"], manifest["dim"]
        try:
            vectors = np.load(directory / VECTORS, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise GalleryError(f"{directory / VECTORS} is missing or damaged ({exc}); re-index this gallery") from None
        if vectors.shape != (count, dim) or vectors.dtype != np.dtype(manifest["dtype"]):
            raise GalleryError(
                f"{directory / VECTORS} holds {vectors.shape} {vectors.dtype.str} but the manifest says "
                f"({count}, {dim}) {np.dtype(manifest['dtype']).str}; the gallery is damaged, re-index it"
            )
        ann = None
        if manifest["index"] != EXACT:
            faiss = import_faiss()
            check_index_file(directory / ANN_FILE, count, dim)
            try:
                codes = faiss.read_index(str(directory / ANN_FILE))
            except RuntimeError as exc:
                raise GalleryError(f"{directory / ANN_FILE} is missing or damaged ({exc}); re-index this gallery") from None
            ann = CodeScan(codes)
        return cls(directory, manifest, vectors, ann)

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def model(self) -> str:
        return self.manifest["model"]

    def search_vectors(self, queries: np.ndarray, k: int = 10) -> list[Hit] | list[list[Hit]]:
        """The k most similar rows to a (dim,) query, or one list per row of a (Q, dim) batch."""
        batch = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        if batch.ndim != 2 or batch.shape[1] != self.vectors.shape[1]:
            raise InvalidInputError(f"queries must have {self.vectors.shape[1]} columns, got shape {np.shape(queries)}")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise InvalidInputError(f"k must be a whole number of at least 1, got {k!r}")
        if not np.isfinite(batch).all():
            raise InvalidInputError("the query vector holds values that are not numbers")
        self.check_unchanged()
        if len(self) == 0:
            hits: list[list[Hit]] = [[] for _ in batch]
        elif self.ann is not None:
            hits = ann_search(self.ann, self.vectors, batch, k)
        else:
            hits = exact_search(self.vectors, batch, k)
        bad = [hit.index for row in hits for hit in row if not math.isfinite(hit.score)]
        if bad:
            raise GalleryError(f"row {bad[0]} of {self.path or 'the gallery'} is not a valid vector; re-index this gallery")
        return hits[0] if np.ndim(queries) == 1 else hits

    def check_unchanged(self) -> None:
        """Refuse to go on when the gallery's files were replaced (re-indexed) since it was opened:
        its vectors, captions and thumbnails would no longer belong together."""
        if self.path is not None and signature(self.path) != self._signature:
            raise GalleryError(f"{self.path} was re-indexed since it was opened; open it again")

    @property
    def metadata(self) -> list[dict[str, Any]]:
        if self._metadata is None:  # only galleries on disk start without it
            try:
                with (self.path / METADATA).open(encoding="utf-8") as f:
                    rows = [json.loads(line) for line in f if line.strip()]
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise GalleryError(f"{self.path / METADATA} is missing or damaged ({exc}); re-index this gallery") from None
            if len(rows) != len(self):
                raise GalleryError(f"{self.path / METADATA} has {len(rows)} rows for {len(self)} vectors; re-index this gallery")
            for number, row in enumerate(rows):
                if not isinstance(row, dict) or not _inside(row.get("thumbnail")):
                    raise GalleryError(
                        f"{self.path / METADATA} row {number} is not an object with a thumbnail inside the gallery; "
                        "re-index this gallery"
                    )
            self._metadata = rows
        return self._metadata

    def item(self, index: int) -> dict[str, Any]:
        """Row `index`'s metadata, with `thumbnail` as a full path (or as bytes, in memory)."""
        self.check_unchanged()
        row = dict(self.metadata[index])
        if self.path is not None:
            row["thumbnail"] = self.path / row["thumbnail"]
        return row

    def similar(self, index: int, k: int = 10) -> list[Hit]:
        """The k rows most like row `index` by image-image similarity, the row itself left out."""
        if not 0 <= index < len(self):
            raise InvalidInputError(f"row {index} is not in this gallery of {len(self)} images")
        hits = self.search_vectors(np.asarray(self.vectors[index], np.float32), k + 1)
        return [hit for hit in hits if hit.index != index][:k]

    def __repr__(self) -> str:
        return f"Gallery({str(self.path)!r}, model={self.model!r}, count={len(self)}, index={self.manifest['index']!r})"


def check_model(model: KoCLIP, gallery: Gallery) -> None:
    """Refuse a model other than the gallery's: another name, or the same name with other weights."""
    reindex = f"re-index it with `python -m koclip index ... --model {model.name} --out {gallery.path} --overwrite`"
    if gallery.model != model.name:
        raise GalleryError(
            f"gallery {gallery.path} was made with model {gallery.model}, not {model.name}; "
            f"search it with --model {gallery.model}, or {reindex}"
        )
    made_with = gallery.manifest.get("model_revision")
    if made_with is not None and made_with != model.revision:
        raise GalleryError(
            f"gallery {gallery.path} was made with {model.name} revision {made_with}, but the loaded {model.name} "
            f"is revision {model.revision}: other weights give other embeddings. Load that revision, or {reindex}"
        )


def search(model: KoCLIP, gallery: Gallery, query: str, k: int = 10) -> list[Hit]:
    """The k gallery images that best match a text query."""
    if not isinstance(query, str):
        raise InvalidInputError(f"the query must be text, not {type(query).__name__}")
    if not query.strip():
        raise InvalidInputError("empty query: enter some text to search for")
    check_model(model, gallery)
    return gallery.search_vectors(model.encode_text([query])[0], k)


def search_image(model: KoCLIP, gallery: Gallery, image, k: int = 10) -> list[Hit]:
    """The k gallery images most like `image` (anything `koclip.open_image` takes)."""
    check_model(model, gallery)
    return gallery.search_vectors(model.encode_image([image])[0], k)


def list_galleries(root: str | os.PathLike, model_name: str | None = None) -> list[Path]:
    """Finished galleries directly inside `root`, by name; only those of `model_name` when given."""
    root = Path(root)
    found = []
    for directory in sorted(root.iterdir()) if root.is_dir() else []:
        try:
            manifest = read_manifest(directory)
        except GalleryError:
            continue
        if model_name is None or manifest["model"] == model_name:
            found.append(directory)
    return found
