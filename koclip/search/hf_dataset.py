"""A gallery as a Hugging Face dataset, and a gallery built back from one without encoding anything.

`export` writes the Hub's own folder layout, which `huggingface-cli upload` publishes as it is and
`datasets.load_dataset(OUT, split="train")` reads:
  data/train-00000-of-0000N.parquet  one row per gallery row: image (the thumbnail, a datasets Image),
                                     caption, source, width, height (of the original image), and
                                     embeddings (float32, the gallery's vector); shards of at most
                                     datasets' MAX_SHARD_SIZE, row groups of ROW_GROUP rows
  README.md                          the dataset card: a YAML header holding `configs` (the split's
                                     files) and a `koclip:` block (model, model_revision, dim, count,
                                     dtype), then how to load and search it
The vectors are unit length, so `add_faiss_index("embeddings", metric_type=faiss.METRIC_INNER_PRODUCT)`
searches them by cosine similarity, as a gallery does.

`import_dataset` reads such a dataset (a folder, or a Hub id through the datasets cache) back into a
gallery: vectors from `embeddings`, checked (width, finite, unit length) before any image is decoded;
thumbnails made anew from `image`; the model from the card's `koclip:` block, which `--model` must
agree with. Embeddings of another model cannot be searched with this one: `python -m koclip index
SRC --dataset` encodes the images instead.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from koclip.errors import GalleryError, KoCLIPError
from koclip.search import gallery, portable, tuning

SPLIT = "train"
DATA = "data"
CARD = "README.md"
EMBEDDINGS = "embeddings"
IMAGE = "image"
ROW_GROUP = 100  # rows per parquet row group: a dataset viewer or a streaming reader reads one group at a time
READ_ROWS = 256  # rows read at a time when importing


def features(dim: int, int_sources: bool):
    """The datasets Features of an export with `dim`-wide vectors; sources are row numbers when `int_sources`."""
    import datasets

    return datasets.Features(
        {
            IMAGE: datasets.Image(),
            "caption": datasets.Value("string"),
            "source": datasets.Value("int64" if int_sources else "string"),
            "width": datasets.Value("int32"),
            "height": datasets.Value("int32"),
            EMBEDDINGS: datasets.List(datasets.Value("float32"), length=dim),
        }
    )


def _is_export(folder: Path) -> bool:
    """Whether `folder` holds an export of this module's (a card with a koclip block, and data/)."""
    from koclip.data.datasets import dataset_card

    try:
        return isinstance(dataset_card(str(folder)).get("koclip"), dict) and (folder / DATA).is_dir()
    except KoCLIPError:  # an unreadable card is not one of ours
        return False


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse an export target that is a file or a gallery, or holds files other than an earlier export (those
    only with `overwrite`)."""
    portable.check_target(out, overwrite, "a Hugging Face dataset", _is_export)


def _card(manifest: dict[str, Any], name: str, shards: int) -> str:
    """The dataset card: its YAML header (configs, tags, the koclip block) and how to load and search it."""
    import yaml

    recorded = portable.made_with(manifest)
    header = {
        "configs": [{"config_name": "default", "data_files": [{"split": SPLIT, "path": f"{DATA}/{SPLIT}-*"}]}],
        "tags": ["koclip", "image-retrieval", "embeddings"],
        "size_categories": [_size_category(manifest["count"])],
        "koclip": {"format_version": gallery.FORMAT_VERSION, **recorded},
    }
    model, revision = manifest["model"], manifest.get("model_revision")
    return f"""---
{yaml.safe_dump(header, allow_unicode=True, sort_keys=False)}---

# {name}

A [KoCLIP](https://github.com/jaketae/koclip) image gallery: {manifest["count"]:,} images, each with its
embedding by the KoCLIP model **{model}** (revision `{revision}`), {manifest["dim"]} float32 numbers of
length 1, so that inner products are cosine similarities. Text embedded by the same model (the same
revision) finds them; another model's embeddings do not match these.

| column | what it holds |
|---|---|
| `image` | a thumbnail of the image (JPEG, at most 256 pixels a side) |
| `caption` | its caption, where it has one |
| `source` | the file name or row number it was indexed from |
| `width`, `height` | the size of the original image |
| `embeddings` | the image's embedding |

The data is in `{DATA}/` ({shards} parquet file{"s" if shards > 1 else ""}).

## Load and search it

```python
import datasets, faiss, koclip

ds = datasets.load_dataset("OWNER/NAME", split="train")  # or the folder holding this card
ds.add_faiss_index("{EMBEDDINGS}", metric_type=faiss.METRIC_INNER_PRODUCT)
model = koclip.load("{model}")
scores, found = ds.get_nearest_examples("{EMBEDDINGS}", model.encode_text(["빨간 원"])[0], k=5)
print(list(zip(scores, found["caption"])))
```

## As a KoCLIP gallery

```bash
python -m koclip gallery import OWNER/NAME embeddings/{name}     # no images are encoded again
python -m koclip search "빨간 원" --gallery embeddings/{name}
```
"""


def _size_category(count: int) -> str:
    """The Hub's size_categories tag for `count` rows."""
    for bound, tag in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")):
        if count < bound:
            return tag
    return "n>1M"


def export(source: str | os.PathLike, out: str | os.PathLike, overwrite: bool = False, progress: bool = True) -> Path:
    """Write the gallery at `source` as a Hugging Face dataset folder at `out` (see the module's docstring), built
    beside it and put in place whole; returns `out`."""
    import datasets
    import pyarrow.parquet as pq

    out = Path(out)
    check_target(out, overwrite)
    photos = gallery.Gallery.open(source)
    count, dim = photos.vectors.shape
    int_sources = all(isinstance(row["source"], int) for row in photos.metadata)
    schema = features(dim, int_sources).arrow_schema
    shard_bytes = datasets.utils.py_utils.convert_file_size_to_int(datasets.config.MAX_SHARD_SIZE)
    with portable.building(out) as stage:
        (stage / DATA).mkdir()
        shards: list[Path] = []
        writer, written = None, 0
        for start in tqdm(range(0, count, ROW_GROUP), desc="exporting", unit="group", disable=not progress):
            stop = min(start + ROW_GROUP, count)
            table = _rows(photos, start, stop, schema, int_sources)
            if writer is None or written + table.nbytes > shard_bytes:
                if writer is not None:
                    writer.close()
                shards.append(stage / DATA / f"part-{len(shards)}.parquet")
                writer, written = pq.ParquetWriter(shards[-1], schema), 0
            writer.write_table(table, row_group_size=ROW_GROUP)
            written += table.nbytes
        writer.close()
        for number, shard in enumerate(shards):
            shard.rename(stage / DATA / f"{SPLIT}-{number:05d}-of-{len(shards):05d}.parquet")
        (stage / CARD).write_text(_card(photos.manifest, out.name, len(shards)), encoding="utf-8")
    return out


def _rows(photos: gallery.Gallery, start: int, stop: int, schema, int_sources: bool):
    """Rows start to stop of the gallery as an Arrow table of `schema`."""
    import pyarrow as pa

    rows = photos.metadata[start:stop]
    thumbs = [photos.thumbnail(i) for i in range(start, stop)]
    vectors = np.ascontiguousarray(photos.vectors[start:stop], np.float32)
    columns = {
        IMAGE: [None if t is None else {"bytes": t, "path": None} for t in thumbs],
        "caption": [row.get("caption") for row in rows],
        "source": [row["source"] if int_sources else str(row["source"]) for row in rows],
        "width": [row.get("width") for row in rows],
        "height": [row.get("height") for row in rows],
    }
    arrays = [pa.array(columns[name], type=schema.field(name).type) for name in columns]
    arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1]))
    return pa.Table.from_arrays(arrays, schema=schema)


def _matrix(column, dim: int, first_row: int, where: str) -> np.ndarray:
    """An Arrow column of lists of numbers as an (n, dim) float32 array; GalleryError for a missing vector, a vector
    of another width, or numbers that are not floating point."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if column.null_count:
        row = first_row + int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise GalleryError(f"row {row} of {where} has no embedding; the dataset is damaged")
    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
    wrong = np.flatnonzero(lengths != dim)
    if len(wrong):
        row = first_row + int(wrong[0])
        raise GalleryError(
            f"row {row} of {where} has an embedding of {lengths[wrong[0]]} numbers, not the {dim} its model makes"
        )
    values = column.flatten()
    if not pa.types.is_floating(values.type):
        raise GalleryError(f"{where} holds {values.type} numbers, not floating-point embeddings")
    return values.to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(len(column), dim)


def import_dataset(
    src: str,
    out: str | os.PathLike,
    model: str | None = None,
    *,
    overwrite: bool = False,
    ann_threshold: int = gallery.ANN_THRESHOLD,
    memory_budget: int = tuning.DEFAULT_BUDGET,
    target_recall: float = tuning.TARGET_RECALL,
    progress: bool = True,
) -> dict[str, Any]:
    """Build the gallery `out` from the dataset `src` (a folder, or a Hub id read through the datasets cache) as
    `export` writes it, without encoding anything: see the module's docstring. `model` (a name, Hub id or folder),
    when given, must be the one the card names; a dataset without a koclip card needs it. Returns the manifest."""
    import datasets

    from koclip.data.datasets import dataset_card, image_column, open_dataset

    out = Path(out)
    portable.check_gallery_target(out, overwrite)
    card = dataset_card(src)
    recorded = None
    if "koclip" in card:
        recorded = portable.check_made_with(card["koclip"], f"the koclip block of {src}'s dataset card")
    reencode = f"python -m koclip index {src} --dataset --model NAME --out {out}"
    data = open_dataset(src, SPLIT)
    where = f"column {EMBEDDINGS!r} of dataset {src}"
    if EMBEDDINGS not in data.column_names:
        raise GalleryError(
            f"dataset {src} has no {EMBEDDINGS!r} column (it has {', '.join(data.column_names)}), so it holds no "
            f"embeddings to search; encode its images instead: {reencode}"
        )
    feature = data.features[EMBEDDINGS]
    if not isinstance(feature, (datasets.List, datasets.LargeList)):
        raise GalleryError(f"{where} holds {feature!r}, not lists of numbers; it is not an export of a gallery")
    if recorded is not None and recorded.get("count") is not None and recorded["count"] != len(data):
        raise GalleryError(
            f"dataset {src} has {len(data):,} rows but its card says {recorded['count']:,}: the download is "
            "incomplete or the data was changed without its card"
        )
    loaded = portable.import_model(recorded, model, src, reencode)
    dtype = (recorded or {}).get("dtype") or "float32"
    if IMAGE in data.column_names:
        data = image_column(data, src, IMAGE).cast_column(IMAGE, datasets.Image(decode=False))
    table = data.with_format("arrow")
    with portable.building(out) as stage:
        writer = portable.GalleryWriter(stage, loaded, len(data), dtype, reencode)
        steps = range(0, len(data), READ_ROWS)
        for start in tqdm(steps, desc="checking embeddings", unit="batch", disable=not progress):
            part = table[start : start + READ_ROWS]
            writer.put(start, _matrix(part.column(EMBEDDINGS), loaded.dim, start, where))
        writer.check(where)
        others = [c for c in (IMAGE, "caption", "source", "width", "height") if c in data.column_names]
        bar = tqdm(total=len(data), desc="thumbnails", unit="img", disable=not progress)
        with bar:
            for start in steps:
                part = table[start : start + READ_ROWS].select(others).to_pylist()
                for offset, row in enumerate(part):
                    source = row.get("source")
                    if not isinstance(source, (str, int)) or isinstance(source, bool):
                        source = start + offset
                    image = (row.get(IMAGE) or {}).get("bytes")
                    writer.add({**row, "source": source}, io.BytesIO(image) if image else None)
                bar.update(len(part))
        description = {"kind": "hf-dataset", "name": portable.absolute(src), "split": SPLIT}
        return writer.finish(
            description, recorded, ann_threshold, memory_budget, target_recall, portable.model_path(model), progress
        )
