"""Opening a Hugging Face dataset by Hub name, by a folder `save_to_disk` wrote, or by an image folder,
with one set of rules and errors for training, evaluation and indexing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from koclip.errors import KoCLIPError


def open_dataset(
    name: str,
    split: str,
    columns: Sequence[str | None] = (),
    instead: str = "name a dataset folder on this machine instead",
):
    """The `split` of dataset `name`, checked to hold `columns` (None entries are skipped).

    `name` is a folder written by `save_to_disk`, an image folder (Hugging Face's imagefolder layout),
    or a Hub dataset, read from the datasets cache or downloaded. Offline and not cached, the error
    names the cache and what to do: run where the Hub answers, or `instead`. A column of images stored
    as {bytes, path} records (as some Hub sets hold them) is read as images."""
    import datasets

    path = Path(name)
    try:
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            data = datasets.load_from_disk(str(path))
            data = data[split] if isinstance(data, datasets.DatasetDict) else data
        elif path.is_dir():
            data = datasets.load_dataset("imagefolder", data_dir=str(path), split=split)
        else:
            data = datasets.load_dataset(name, split=split)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise KoCLIPError(f"cannot load dataset {name!r} split {split!r}: {exc}") from None
    except OSError as exc:  # ConnectionError among them: offline, or the Hub did not answer
        raise KoCLIPError(
            f"dataset {name!r} is not in the datasets cache ({datasets.config.HF_DATASETS_CACHE}) and "
            f"could not be downloaded ({exc}). Run this where the Hugging Face Hub can be reached, "
            f"or {instead}."
        ) from None
    for column in columns:
        if column is not None and column not in data.column_names:
            raise KoCLIPError(f"dataset {name!r} has no column {column!r}; it has {', '.join(data.column_names)}")
    return data


def image_column(data, name: str, column: str):
    """`data` with `column` decoded as images; a clear error when it holds something else."""
    import datasets

    feature = data.features[column]
    if isinstance(feature, datasets.Image):
        return data
    if isinstance(feature, dict) and "bytes" in feature:
        return data.cast_column(column, datasets.Image())
    raise KoCLIPError(
        f"column {column!r} of dataset {name!r} holds {feature!r}, not images; its columns are "
        + ", ".join(f"{c} ({type(f).__name__})" for c, f in data.features.items())
    )
