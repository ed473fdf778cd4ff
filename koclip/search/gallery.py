"""Galleries: a folder of image embeddings with their metadata and thumbnails, and search over it.

A gallery directory holds:
  vectors.npy     (count, dim) float32 or float16, L2-normalised rows, memory-mapped when opened
  metadata.jsonl  one JSON object per row: source, width, height, caption (if any), thumbnail
  thumbs/         small JPEGs, so results can be shown without the original images
  index/          (large galleries only) the arrays of an approximate index (koclip.search.indexes)
  manifest.json   model, dim, dtype, count, source, skipped inputs, and the index: its kind,
                  parameters and measured recall; for a model trained on generated scenes, how
                  many images are unlike them (unlike_training, koclip.domain); written last, so
                  a folder without it is an unfinished gallery and is refused

A gallery may come from anywhere, so opening one checks all of it before it is used: only regular
files are read, each within a size bound; the manifest, every metadata row and every vector (finite,
of unit length) are checked, and every array of an approximate index against what faiss relies on
(koclip.search.indexes). A gallery that fails is refused with a GalleryError saying what is wrong. Thumbnails
are read through `Gallery.thumbnail`, which never follows a symbolic link out of the gallery.

Small galleries are searched exactly. A large one gets the approximate index that `tuning.choose`
found fastest on its own vectors at the recall it was asked for; the candidates it proposes are
scored exactly against vectors.npy, so scores are always true inner products.
"""

from __future__ import annotations

import io
import json
import math
import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from koclip.atomic import open_inside, open_regular, read_bounded, recover_folder, recover_folders
from koclip.errors import GalleryError, InvalidInputError
from koclip.search import exact, index_files, indexes
from koclip.search.exact import Hit, exact_search

if TYPE_CHECKING:
    from koclip.api import KoCLIP


FORMAT_VERSION = 1
MANIFEST = "manifest.json"
VECTORS = "vectors.npy"
METADATA = "metadata.jsonl"
THUMBS = "thumbs"
INDEX_DIR = index_files.INDEX_DIR
EXACT = indexes.EXACT
DTYPES = ("float32", "float16")
ANN_THRESHOLD = 50_000  # galleries at least this large get an approximate index, chosen by measurement
_REQUIRED = ("format_version", "model", "dim", "dtype", "count", "index")
_OPTIONAL_COUNTS = ("skipped_count", "unlike_training")  # written by newer indexing; whole numbers when there
MAX_MANIFEST_BYTES = 16 << 20  # a manifest of indexing's is a few KB, and lists at most 1,000 skipped inputs
METADATA_BYTES_PER_ROW = 4 << 10  # a row's source, size and caption take about 200 bytes
METADATA_SLACK = 16 << 20  # over that: room for some long captions in a small gallery
NORM_TOLERANCE = 1e-2  # how far a stored vector's length may be from 1 (float16 rounding is ~1e-3)
ROWS_NAMED = 5  # bad rows an error names
MAX_THUMBNAIL_BYTES = 1 << 20  # indexing writes thumbnails of at most 256 pixels a side, some 10-100 KB
MAX_THUMBNAIL_SIDE = 1024
THUMBNAILS_KEPT = 1024  # checked thumbnails a gallery keeps in memory: the rows results show most


def _finished(folder: Path) -> bool:
    return (folder / MANIFEST).is_file()


def recover(directory: Path) -> None:
    """Put back the gallery at `directory` if a crash in the middle of its overwrite left it beside
    its place (see atomic.replace_folder)."""
    recover_folder(directory, _finished)


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The checked manifest of the gallery folder `path`, after putting back a gallery an interrupted overwrite left
    beside its place. GalleryError, saying how to fix it, when the folder or its manifest is missing, unreadable or
    incomplete, or has another format version or an index kind koclip no longer reads."""
    directory = Path(path)
    recover(directory)
    file = directory / MANIFEST
    if not directory.is_dir():
        raise GalleryError(f"{directory} is not a gallery: no such directory")
    if not file.exists():
        raise GalleryError(
            f"{directory} has no {MANIFEST}: it is not a gallery, or its indexing has not finished. "
            "Run `python -m koclip index` again with the same --out to finish it."
        )
    try:
        manifest = json.loads(read_bounded(open_regular(file), MAX_MANIFEST_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GalleryError(f"{file} is unreadable ({exc}); re-index this gallery") from None
    missing = [key for key in _REQUIRED if not isinstance(manifest, dict) or key not in manifest]
    if missing:
        raise GalleryError(f"{file} lacks {', '.join(missing)}; re-index this gallery")
    counts = [("count", 0), ("dim", 1)] + [(key, 0) for key in _OPTIONAL_COUNTS if key in manifest]
    for key, low in counts:
        value = manifest[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise GalleryError(
                f"{file} has {key} {value!r}, not a whole number of at least {low}; re-index this gallery"
            )
    if not isinstance(manifest["model"], str) or not isinstance(manifest["index"], str):
        raise GalleryError(f"{file} names its model or index with something other than text; re-index this gallery")
    if manifest["dtype"] not in DTYPES:
        raise GalleryError(f"{file} has unknown dtype {manifest['dtype']!r}; re-index this gallery")
    if manifest["index"] not in indexes.KINDS:
        raise GalleryError(
            f"{directory} has an approximate index of a kind this koclip no longer reads ({manifest['index']}); "
            f"re-index it with `python -m koclip index ... --out {directory} --overwrite`"
        )
    if manifest["format_version"] != FORMAT_VERSION:
        raise GalleryError(
            f"{directory} has gallery format {manifest['format_version']}; this koclip reads format "
            f"{FORMAT_VERSION}. Re-index it with this version."
        )
    return manifest


def new_manifest(model: KoCLIP, count: int, dtype: str, index: str = EXACT, **fields: Any) -> dict[str, Any]:
    """A gallery's manifest: what read_manifest requires (format, model, dim, dtype, count, index),
    the model's revision, then `fields` (indexing's source, skipped inputs, index tuning, …)."""
    return {
        "format_version": FORMAT_VERSION,
        "model": model.name,
        "model_revision": model.revision,
        "dim": model.dim,
        "dtype": dtype,
        "count": count,
        "index": index,
        **fields,
    }


def occupied(path: str | os.PathLike) -> GalleryError:
    """The error for building a gallery where one already is."""
    return GalleryError(f"{path} already holds a gallery; pass --overwrite to replace it, or choose another --out")


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


def _row_problem(row: Any) -> str | None:
    """What makes a metadata row unusable, or None."""
    if not isinstance(row, dict) or not _inside(row.get("thumbnail")):
        return "is not an object with a thumbnail inside the gallery"
    source = row.get("source")
    if not isinstance(source, (str, int)) or isinstance(source, bool):
        return "has a source that is neither a file name nor a row number"
    if not isinstance(row.get("caption", ""), str):
        return "has a caption that is not text"
    return None


def read_metadata(file: Path, count: int) -> list[dict[str, Any]]:
    """The `count` rows of a gallery's metadata.jsonl, each checked: an object with a thumbnail
    inside the gallery, a source that is a file name or a row number, and a caption, if any, of text.

    The file may hold METADATA_BYTES_PER_ROW a row and METADATA_SLACK more: a larger one could only
    cost memory, and is refused once that much is read.
    """
    try:
        text = read_bounded(open_regular(file), count * METADATA_BYTES_PER_ROW + METADATA_SLACK).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise GalleryError(f"{file} is missing or damaged ({exc}); re-index this gallery") from None
    rows = []
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines: captions may hold U+2028
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except (ValueError, RecursionError) as exc:
            raise GalleryError(
                f"{file} line {number} is not JSON ({type(exc).__name__}: {str(exc)[:80]}); "
                "the gallery is damaged, re-index it"
            ) from None
    if len(rows) != count:
        raise GalleryError(f"{file} has {len(rows)} rows for {count} vectors; re-index this gallery")
    for number, row in enumerate(rows):
        problem = _row_problem(row)
        if problem:
            raise GalleryError(f"{file} row {number} {problem}; re-index this gallery")
    return rows


def _bad_rows(vectors: np.ndarray) -> np.ndarray:
    """The rows that are not vectors of finite numbers of length 1 (to NORM_TOLERANCE), read a slice
    at a time so that a memory-mapped file is never copied whole."""
    bad = [np.zeros(0, np.int64)]
    for start, part in zip(range(0, len(vectors), exact.ADD_ROWS), indexes.steps(vectors)):
        lengths = np.sqrt(np.einsum("ij,ij->i", part, part))
        bad.append(start + np.flatnonzero(~(np.abs(lengths - 1) <= NORM_TOLERANCE)))  # NaN is bad too
    return np.concatenate(bad)


def check_vectors(vectors: np.ndarray, file: Path | str, advice: str = "the gallery is damaged, re-index it") -> None:
    """Refuse vectors that would give false scores: huge, zero, scaled, not numbers. The GalleryError names the bad
    rows of `file` (what holds the vectors) and ends with `advice`."""
    bad = _bad_rows(vectors)
    if len(bad):
        named = ", ".join(str(row) for row in bad[:ROWS_NAMED])
        named += f" and {len(bad) - ROWS_NAMED:,} more" if len(bad) > ROWS_NAMED else ""
        which = f"row {bad[0]} of {file} is" if len(bad) == 1 else f"{len(bad):,} rows of {file} ({named}) are"
        raise GalleryError(f"{which} not a valid vector (finite numbers, of length 1 ± {NORM_TOLERANCE}); {advice}")


def _small_jpeg(data: bytes) -> bool:
    """Whether `data` is a JPEG of at most MAX_THUMBNAIL_SIDE pixels a side, by its header alone."""
    try:
        with Image.open(io.BytesIO(data), formats=("JPEG",)) as image:
            return max(image.size) <= MAX_THUMBNAIL_SIDE
    except (OSError, Image.DecompressionBombError):
        return False


class Gallery:
    """A gallery opened for search: its manifest, its (count, dim) vectors, one metadata row per vector, and an
    approximate index or None for exact search. `Gallery.open` reads one from a folder; `Gallery.in_memory` makes one
    from vectors at hand."""

    def __init__(
        self,
        path: Path | None,
        manifest: dict[str, Any],
        vectors: np.ndarray,
        metadata: list[dict[str, Any]],
        index: indexes.Index | None = None,
    ):
        self.path = path  # None for a gallery held in memory only
        self.manifest = manifest
        self.vectors = vectors
        self.metadata = metadata  # one row per vector
        self.index = index  # an approximate index (koclip.search.indexes), or None for exact search
        self.rerank = manifest["index_tuning"]["rerank"] if index is not None else 0  # checked by index_files.load
        self._signature = signature(path)
        self._thumbnails: OrderedDict[int, bytes | None] = OrderedDict()  # the last THUMBNAILS_KEPT read
        self._thumbnails_lock = threading.Lock()

    @classmethod
    def in_memory(cls, model: KoCLIP, vectors: np.ndarray, rows: list[dict[str, Any]]) -> Gallery:
        """A small gallery searched exactly and kept in memory, such as a visitor's own uploads.

        Each row's `thumbnail` is the image itself (JPEG bytes), not a file name.
        """
        if len(vectors) != len(rows):
            raise GalleryError(f"{len(vectors)} vectors for {len(rows)} metadata rows")
        manifest = new_manifest(model, len(rows), "float32")
        return cls(None, manifest, np.asarray(vectors, np.float32).reshape(len(rows), model.dim), list(rows))

    @classmethod
    def open(cls, path: str | os.PathLike) -> Gallery:
        """The gallery in the folder `path`, once every part of it is checked (see the module's docstring)."""
        directory = Path(path)
        manifest = read_manifest(directory)
        count, dim = manifest["count"], manifest["dim"]
        file = directory / VECTORS
        try:
            vectors = index_files.load_array(file)
        except (OSError, ValueError, EOFError) as exc:
            raise GalleryError(f"{file} is missing or damaged ({exc}); re-index this gallery") from None
        if vectors.shape != (count, dim) or vectors.dtype != np.dtype(manifest["dtype"]):
            raise GalleryError(
                f"{file} holds {vectors.shape} {vectors.dtype.str} but the manifest says "
                f"({count}, {dim}) {np.dtype(manifest['dtype']).str}; the gallery is damaged, re-index it"
            )
        check_vectors(vectors, file)
        metadata = read_metadata(directory / METADATA, count)
        index = None
        if manifest["index"] != EXACT:
            index = index_files.load(directory, manifest["index"], manifest.get("index_tuning"), count, dim, vectors)
        return cls(directory, manifest, vectors, metadata, index)

    def __len__(self) -> int:
        return len(self.vectors)

    @property
    def model(self) -> str:
        """The model the gallery was indexed with, as its manifest names it."""
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
        k = min(int(k), len(self))
        if len(self) == 0:
            hits: list[list[Hit]] = [[] for _ in batch]
        elif self.index is not None and k <= self.rerank:
            # More rows than the index was tuned to rescore would come back incomplete: exact search.
            candidates = self.index.candidates(batch, self.rerank)
            hits = exact.rescore(self.vectors, batch, candidates, k)
        else:
            hits = exact_search(self.vectors, batch, k)
        bad = [hit.index for row in hits for hit in row if not math.isfinite(hit.score)]
        if bad:
            raise GalleryError(
                f"row {bad[0]} of {self.path or 'the gallery'} is not a valid vector; re-index this gallery"
            )
        return hits[0] if np.ndim(queries) == 1 else hits

    def check_unchanged(self) -> None:
        """Refuse to go on when the gallery's files were replaced (re-indexed) since it was opened:
        its vectors, captions and thumbnails would no longer belong together."""
        if self.path is not None and signature(self.path) != self._signature:
            raise GalleryError(f"{self.path} was re-indexed since it was opened; open it again")

    def item(self, index: int) -> dict[str, Any]:
        """Row `index`'s metadata, with `thumbnail` as a full path (or as bytes, in memory). To show
        the thumbnail, read it with `thumbnail`."""
        self.check_unchanged()
        row = dict(self.metadata[index])
        if self.path is not None:
            row["thumbnail"] = self.path / row["thumbnail"]
        return row

    def thumbnail(self, index: int) -> bytes | None:
        """Row `index`'s thumbnail, JPEG bytes, or None when there is none fit to show: its file is
        missing, is not a regular file, is reached through a symbolic link (which could lead out of
        the gallery), holds more than MAX_THUMBNAIL_BYTES, or is not a JPEG of at most
        MAX_THUMBNAIL_SIDE pixels a side. The last THUMBNAILS_KEPT answers are kept: a gallery whose files
        change is reopened (check_unchanged), never read again in place."""
        self.check_unchanged()
        with self._thumbnails_lock:
            if index in self._thumbnails:
                self._thumbnails.move_to_end(index)
                return self._thumbnails[index]
        thumbnail = self.metadata[index]["thumbnail"]
        if self.path is not None:
            try:
                thumbnail = read_bounded(open_inside(self.path, thumbnail), MAX_THUMBNAIL_BYTES)
            except OSError:
                thumbnail = None
        checked = thumbnail if thumbnail is not None and _small_jpeg(thumbnail) else None
        with self._thumbnails_lock:
            self._thumbnails[index] = checked
            while len(self._thumbnails) > THUMBNAILS_KEPT:
                self._thumbnails.popitem(last=False)
        return checked

    def similar(self, index: int, k: int = 10) -> list[Hit]:
        """The k rows most like row `index` by image-image similarity, the row itself left out."""
        if not 0 <= index < len(self):
            raise InvalidInputError(f"row {index} is not in this gallery of {len(self)} images")
        hits = self.search_vectors(np.asarray(self.vectors[index], np.float32), k + 1)
        return [hit for hit in hits if hit.index != index][:k]

    def __repr__(self) -> str:
        return f"Gallery({str(self.path)!r}, model={self.model!r}, count={len(self)}, index={self.manifest['index']!r})"


def check_made_with(model: KoCLIP, gallery: Gallery) -> None:
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
    check_made_with(model, gallery)
    return gallery.search_vectors(model.encode_text([query])[0], k)


def search_image(model: KoCLIP, gallery: Gallery, image, k: int = 10) -> list[Hit]:
    """The k gallery images most like `image` (anything `koclip.open_image` takes)."""
    check_made_with(model, gallery)
    return gallery.search_vectors(model.encode_image([image])[0], k)


def list_galleries(root: str | os.PathLike, model_name: str | None = None) -> list[Path]:
    """Finished galleries directly inside `root`, by name; only those of `model_name` when given.

    Hidden folders are never listed: they hold galleries being built or replaced. A gallery that a
    crash in the middle of its overwrite left aside is put back first (see `recover`).
    """
    root = Path(root)
    if not root.is_dir():
        return []
    recover_folders(root, _finished)
    found = []
    for directory in sorted(path for path in root.iterdir() if not path.name.startswith(".")):
        try:
            manifest = read_manifest(directory)
        except GalleryError:
            continue
        if model_name is None or manifest["model"] == model_name:
            found.append(directory)
    return found


PROBE_QUERIES = 64
PROBE_SECONDS = 120.0


def probe(path: str | os.PathLike, timeout: float = PROBE_SECONDS) -> str | None:
    """Open the gallery at `path` and search its index in a child process: None when that works, else
    what went wrong. The index is checked on open against every invariant faiss relies on; this is
    the second line, for a server that must not go down with one crafted gallery: a crash or a hang
    ends the child, not the caller. The queries are random directions and rows of the gallery."""
    import subprocess
    import sys

    script = (
        "import sys, numpy as np\n"
        "from koclip.search.gallery import Gallery, PROBE_QUERIES\n"
        "g = Gallery.open(sys.argv[1])\n"
        "rng = np.random.default_rng(0)\n"
        "q = rng.standard_normal((PROBE_QUERIES, g.vectors.shape[1])).astype(np.float32)\n"
        "q = np.concatenate([q / np.linalg.norm(q, axis=1, keepdims=True),\n"
        "                    np.asarray(g.vectors[rng.integers(0, len(g), PROBE_QUERIES)], np.float32)])\n"
        "g.search_vectors(q, 10)\n"
    )
    try:
        done = subprocess.run(
            [sys.executable, "-c", script, str(path)], capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return f"searching {path} did not finish within {timeout:.0f} s; re-index this gallery"
    if done.returncode == 0:
        return None
    if done.returncode < 0:
        return f"searching {path} crashed a process (signal {-done.returncode}); re-index this gallery"
    last = (done.stderr.strip().splitlines() or ["no message"])[-1]
    return last.split(": ", 1)[-1] if last.startswith("koclip.errors.") else f"searching {path} failed: {last}"
