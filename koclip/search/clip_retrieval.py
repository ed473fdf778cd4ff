"""A gallery in clip-retrieval's index layout, and a gallery built back from one without encoding anything.

`export` writes what `clip-retrieval inference` and `clip-retrieval index` leave behind, which
`clip-retrieval back` serves (given a loader for the model) and embedding-reader reads:
  img_emb/img_emb_0.npy         the vectors, (count, dim), in the gallery's dtype (float16 or float32)
  metadata/metadata_0.parquet   one row per vector: image_path (the absolute path of the row's
                                thumbnail under images/, "" for a row without one), caption, url
                                (only when some source is an http(s) address), source, width, height
  images/                       the thumbnails, JPEG
  image.index                   a faiss index over the vectors, by inner product, on which
                                clip-back's `search_and_reconstruct` works: IndexFlatIP for a gallery
                                searched exactly; for one with an approximate index, an HNSW graph
                                over a float32 copy (the gallery's own, when its index is one; else
                                searching as widely as the graph its tuning measured)
  koclip_gallery.json           the model, its revision, dim, count and dtype
The rows of every file follow the gallery's, so the index's ids are gallery row numbers.

`import_layout` reads that layout back, from this module or from clip-retrieval itself: every
img_emb/*.npy and metadata/*.parquet, paired in sorted order as clip-retrieval pairs them. Vectors are
checked (width, finite, unit length) before any image is read; thumbnails are made from the files
image_path names (relative paths are read from the layout's folder); image.index is never read (a
faiss file is not safe to read from a stranger), the search index is chosen anew as indexing chooses
it. Without koclip_gallery.json, `--model` names the model that made the vectors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from koclip.atomic import open_regular, read_bounded
from koclip.errors import GalleryError, InvalidInputError
from koclip.search import gallery, index_files, indexes, portable, tuning

EMBEDDINGS = "img_emb"
METADATA = "metadata"
IMAGES = "images"
INDEX = "image.index"
IDENTITY = "koclip_gallery.json"
LAYOUT = (EMBEDDINGS, METADATA, INDEX, IDENTITY)  # any of them: SRC is meant to be this layout
EF_SEARCH = 128  # the exported graph's breadth when the gallery's tuning measured no graph that reached its target
READ_ROWS = 1024
MAX_IDENTITY_BYTES = 1 << 16
URL_PREFIXES = ("http://", "https://")


def is_layout(folder: Path) -> bool:
    """Whether `folder` looks like clip-retrieval's layout (holds any of LAYOUT)."""
    return any((folder / name).exists() for name in LAYOUT)


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse an export target that is a file or a gallery, or holds files other than an earlier export (those
    only with `overwrite`)."""
    portable.check_target(out, overwrite, "a clip-retrieval index", lambda folder: (folder / IDENTITY).is_file())


def _faiss_index(photos: gallery.Gallery):
    """The faiss index clip-back searches: exact inner products for an exactly searched gallery, else a graph."""
    faiss = indexes.import_faiss()
    if photos.index is None:
        index = faiss.IndexFlatIP(photos.vectors.shape[1])
        indexes.add_in_steps(index, photos.vectors)
        return index
    if isinstance(photos.index, indexes.HNSWGraph):
        return photos.index.index  # tuned on the gallery's own rows
    graph = indexes.HNSWGraph.train(photos.vectors).index
    graph.hnsw.efSearch = _ef_search(photos.manifest)
    return graph


def _ef_search(manifest: dict[str, Any]) -> int:
    """How widely the exported graph searches: the ef_search of the graph the gallery's tuning measured on its own
    rows (built as the export builds it), when that reached the target recall; else EF_SEARCH."""
    chosen = manifest.get("index_tuning") or {}
    for trial in chosen.get("measured") or []:
        if not isinstance(trial, dict) or trial.get("kind") != indexes.HNSW:
            continue
        value, floor = (trial.get("params") or {}).get("ef_search"), trial.get("recall@10_floor")
        target = chosen.get("target_recall")
        fits = isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= max(indexes.EF_SEARCHES)
        if fits and isinstance(floor, (int, float)) and isinstance(target, (int, float)) and floor >= target:
            return value
    return EF_SEARCH


def export(source: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False, progress: bool = True) -> Path:
    """Write the gallery at `source` in clip-retrieval's layout at `out` (see the module's docstring), built beside
    it and put in place whole; returns `out`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    check_target(out, overwrite)
    photos = gallery.Gallery.open(source)
    count, dim = photos.vectors.shape
    final = out.resolve()
    with portable.building(out) as stage:
        for folder in (EMBEDDINGS, METADATA, IMAGES):
            (stage / folder).mkdir()
        vectors = np.lib.format.open_memmap(
            stage / EMBEDDINGS / "img_emb_0.npy", "w+", photos.vectors.dtype, (count, dim)
        )
        for start in range(0, count, READ_ROWS):
            vectors[start : start + READ_ROWS] = photos.vectors[start : start + READ_ROWS]
        vectors.flush()
        del vectors
        columns: dict[str, list] = {"image_path": [], "caption": [], "source": [], "width": [], "height": []}
        for i in tqdm(range(count), desc="thumbnails", unit="img", disable=not progress):
            row, thumb = photos.metadata[i], photos.thumbnail(i)
            path = ""
            if thumb is not None:
                name = f"{i:07d}.jpg"
                (stage / IMAGES / name).write_bytes(thumb)
                path = str(final / IMAGES / name)
            columns["image_path"].append(path)
            columns["caption"].append(row.get("caption"))
            columns["source"].append(row["source"])
            columns["width"].append(row.get("width"))
            columns["height"].append(row.get("height"))
        urls = [
            source if isinstance(source, str) and source.startswith(URL_PREFIXES) else None
            for source in columns["source"]
        ]
        if any(urls):
            columns["url"] = urls
        int_sources = all(isinstance(source, int) for source in columns["source"])
        if not int_sources:
            columns["source"] = [str(source) for source in columns["source"]]
        types = {"width": pa.int32(), "height": pa.int32(), "source": pa.int64() if int_sources else pa.string()}
        table = pa.table(
            {name: pa.array(values, type=types.get(name, pa.string())) for name, values in columns.items()}
        )
        pq.write_table(table, stage / METADATA / "metadata_0.parquet")
        indexes.import_faiss().write_index(_faiss_index(photos), str(stage / INDEX))
        identity = {"format": "koclip-gallery", "format_version": gallery.FORMAT_VERSION}
        identity |= portable.made_with(photos.manifest)
        (stage / IDENTITY).write_text(json.dumps(identity, ensure_ascii=False, indent=2), encoding="utf-8")
    return out


def _files(src: Path) -> tuple[list[Path], list[Path]]:
    """The layout's embedding and metadata files in the order clip-retrieval pairs them; GalleryError naming what is
    missing."""
    missing = [f"{name}/" for name in (EMBEDDINGS, METADATA) if not (src / name).is_dir()]
    if missing:
        raise GalleryError(
            f"{src} is not a whole clip-retrieval index: it has no {' and no '.join(missing)} (the layout is "
            f"{EMBEDDINGS}/*.npy, {METADATA}/*.parquet and {INDEX}, as `clip-retrieval inference` and `index` write it)"
        )
    npys = sorted((src / EMBEDDINGS).glob("*.npy"))
    parquets = sorted((src / METADATA).glob("*.parquet"))
    for files, folder, kind in ((npys, EMBEDDINGS, ".npy"), (parquets, METADATA, ".parquet")):
        if not files:
            raise GalleryError(f"{src / folder} holds no {kind} files; the clip-retrieval index is incomplete")
    if len(npys) != len(parquets):
        raise GalleryError(
            f"{src} has {len(npys)} embedding files for {len(parquets)} metadata files; clip-retrieval pairs them one "
            "to one, in order"
        )
    return npys, parquets


def _recorded(src: Path) -> dict[str, Any] | None:
    """The checked koclip_gallery.json of the layout, or None when it has none."""
    file = src / IDENTITY
    if not file.exists():
        return None
    try:
        fields = json.loads(read_bounded(open_regular(file), MAX_IDENTITY_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise GalleryError(f"{file} is unreadable ({exc}); delete it and name the model with --model") from None
    return portable.check_made_with(fields, str(file))


def _arrays(npys: list[Path], parquets: list[Path]) -> tuple[list[np.ndarray], int]:
    """Each embedding file memory-mapped, checked to be 2-D float16 or float32 of one width and to have as many
    rows as its metadata file; and that width."""
    import pyarrow.parquet as pq

    arrays = []
    for npy, parquet in zip(npys, parquets):
        try:
            array = index_files.load_array(npy)
        except (OSError, ValueError, EOFError) as exc:
            raise GalleryError(
                f"{npy} is not a readable .npy file ({exc}); the clip-retrieval index is damaged"
            ) from None
        if array.ndim != 2 or array.dtype not in (np.float16, np.float32):
            raise GalleryError(
                f"{npy} holds {array.shape} {array.dtype}, not (rows, dim) float16 or float32 embeddings"
            )
        if arrays and array.shape[1] != arrays[0].shape[1]:
            raise GalleryError(f"{npy} has {array.shape[1]} numbers a row, {npys[0]} {arrays[0].shape[1]}")
        try:
            rows = pq.ParquetFile(open_regular(parquet)).metadata.num_rows
        except (OSError, ValueError) as exc:
            raise GalleryError(
                f"{parquet} is not a readable parquet file ({exc}); the clip-retrieval index is damaged"
            ) from None
        if rows != len(array):
            raise GalleryError(f"{parquet} has {rows:,} rows for the {len(array):,} vectors of {npy}; they must pair")
        arrays.append(array)
    return arrays, arrays[0].shape[1]


def _image(path: Any, src: Path):
    """The image file `path` names (relative to `src` unless absolute), opened only if it is a regular file."""
    if not isinstance(path, str) or not path:
        return None
    file = Path(path) if Path(path).is_absolute() else src / path
    try:
        return open_regular(file)
    except OSError:
        return None


def _source(row: dict[str, Any], number: int) -> str | int:
    """What a gallery row records as its source: the row's own source, else its url, else its image_path (the
    first that is a file name, an address or a row number), else its row number."""
    for key in ("source", "url", "image_path"):
        value = row.get(key)
        if (isinstance(value, str) and value) or (isinstance(value, int) and not isinstance(value, bool)):
            return value
    return number


def import_layout(
    src: str | os.PathLike,
    out: str | os.PathLike,
    model: str | None = None,
    *,
    overwrite: bool = False,
    ann_threshold: int = gallery.ANN_THRESHOLD,
    memory_budget: int = tuning.DEFAULT_BUDGET,
    target_recall: float = tuning.TARGET_RECALL,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the gallery `out` from the clip-retrieval index folder `src`, without encoding anything: see the module's
    docstring. `model` (a name, Hub id or folder) must be the one koclip_gallery.json names; without that file it is
    required. Returns the manifest."""
    import pyarrow.parquet as pq

    src, out = Path(src), Path(out)
    if not src.is_dir():
        raise InvalidInputError(f"SRC {src} is not a folder; give the folder of a clip-retrieval index")
    portable.check_gallery_target(out, overwrite)
    npys, parquets = _files(src)
    recorded = _recorded(src)
    arrays, dim = _arrays(npys, parquets)
    reencode = f"python -m koclip index FOLDER_OF_IMAGES --model NAME --out {out}"
    loaded = portable.import_model(recorded, model, str(src), reencode)
    if dim != loaded.dim:
        raise GalleryError(
            f"{npys[0]} has {dim} numbers a vector, but {loaded.name} makes {loaded.dim}: these are another model's "
            f"embeddings; encode the images anew: {reencode}"
        )
    count = sum(len(array) for array in arrays)
    dtypes = {array.dtype.name for array in arrays}
    dtype = dtypes.pop() if len(dtypes) == 1 else "float32"
    with portable.building(out) as stage:
        writer = portable.GalleryWriter(stage, loaded, count, dtype, reencode)
        start = 0
        for array in arrays:
            for first in range(0, len(array), READ_ROWS):
                writer.put(start + first, array[first : first + READ_ROWS])
            start += len(array)
        writer.check(f"the vectors of {src / EMBEDDINGS}")
        wanted = ("image_path", "caption", "url", "source", "width", "height")
        with tqdm(total=count, desc="thumbnails", unit="img", disable=not progress) as bar:
            row_number = 0
            for parquet in parquets:
                file = pq.ParquetFile(open_regular(parquet))
                columns = [name for name in wanted if name in file.schema_arrow.names]
                for batch in file.iter_batches(batch_size=READ_ROWS, columns=columns):
                    for row in batch.to_pylist():
                        image = _image(row.get("image_path"), src)
                        try:
                            writer.add({**row, "source": _source(row, row_number)}, image)
                        finally:
                            if image is not None:
                                image.close()
                        row_number += 1
                    bar.update(batch.num_rows)
        description = {"kind": "clip-retrieval", "path": str(src.resolve())}
        return writer.finish(
            description, recorded, ann_threshold, memory_budget, target_recall, portable.model_path(model), progress
        )
