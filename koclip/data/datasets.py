"""Opening a Hugging Face dataset by Hub name, by a folder `save_to_disk` wrote, by a folder in the Hub's own
layout (parquet files, and a README.md whose header names them), or by an image folder, with one set of rules
and errors for training, evaluation, indexing and gallery imports; and reading a dataset's card."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from koclip.atomic import open_regular, read_bounded
from koclip.errors import KoCLIPError

CARD = "README.md"
MAX_CARD_BYTES = 1 << 20  # a dataset card is a few KB of YAML and text
HUB_TIMEOUT = 5.0  # seconds the Hub has to answer before a card is looked for in the cache only


def open_dataset(
    name: str,
    split: str,
    columns: Sequence[str | None] = (),
    instead: str = "name a dataset folder on this machine instead",
):
    """The `split` of dataset `name`, checked to hold `columns` (None entries are skipped).

    `name` is a folder written by `save_to_disk`, a folder of parquet files (the Hub's layout), an
    image folder (Hugging Face's imagefolder layout), or a Hub dataset, read from the datasets cache
    or downloaded. Offline and not cached, the error names the cache and what to do: run where the
    Hub answers, or `instead`. A column of images stored as {bytes, path} records (as some Hub sets
    hold them) is read as images."""
    import datasets

    path = Path(name)
    try:
        if (path / "state.json").is_file() or (path / "dataset_dict.json").is_file():
            data = datasets.load_from_disk(str(path))
            data = data[split] if isinstance(data, datasets.DatasetDict) else data
        elif path.is_dir() and _holds_parquet(path):  # the Hub's own layout, as `push_to_hub` writes it
            # Through the parquet builder, whose cache is keyed by the files: load_dataset(folder) keys a folder
            # whose card declares `configs` by the folder's name alone (datasets 5.0.1), and so would give another
            # folder of that name's cached rows. The splits follow the files' names (data/train-*.parquet).
            data = datasets.load_dataset("parquet", data_dir=str(path), split=split)
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


def _holds_parquet(path: Path) -> bool:
    """Whether the folder `path` keeps its data as parquet files (at its top or in data/), as the Hub does."""
    return any(path.glob("*.parquet")) or any(path.glob("data/**/*.parquet"))


def dataset_card(name: str) -> dict:
    """The YAML header of dataset `name`'s card (README.md) as a dict, empty when it has no card or no header.

    `name` is a folder or a Hub dataset, whose card is read from the Hugging Face cache or downloaded. Only
    YAML is parsed (yaml.safe_load), from a card of at most MAX_CARD_BYTES; an unreadable card is a KoCLIPError.
    """
    import yaml

    path = Path(name)
    if path.is_dir():
        card = path / CARD
        if not card.exists():
            return {}
    else:
        import huggingface_hub
        from huggingface_hub.utils import EntryNotFoundError, LocalEntryNotFoundError

        from koclip import hub

        # From the cache alone when the Hub does not answer at once, rather than after huggingface_hub's retries.
        cached_only = hub.offline() or not hub.reachable(HUB_TIMEOUT)
        try:
            card = Path(huggingface_hub.hf_hub_download(name, CARD, repo_type="dataset", local_files_only=cached_only))
        except LocalEntryNotFoundError:  # offline or unreachable, and not cached
            raise KoCLIPError(
                f"the card of dataset {name!r} is not in the Hugging Face cache ({hub.cache_dir()}), and the Hub "
                f"{'is switched off (HF_HUB_OFFLINE)' if hub.offline() else 'did not answer'}; run this where the "
                "Hugging Face Hub can be reached, or name a dataset folder on this machine"
            ) from None
        except EntryNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # no such dataset, or the Hub refused
            raise KoCLIPError(
                f"the card of dataset {name!r} is not in the Hugging Face cache and could not be downloaded ({exc}); "
                "run this where the Hugging Face Hub can be reached, or name a dataset folder on this machine"
            ) from None
    try:
        text = read_bounded(open_regular(card), MAX_CARD_BYTES).decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise KoCLIPError(f"{card} cannot be read as a dataset card ({exc})") from None
    if not text.startswith("---"):
        return {}
    header = text[3:].split("\n---", 1)
    if len(header) < 2:
        return {}
    try:
        fields = yaml.safe_load(header[0])
    except (yaml.YAMLError, RecursionError) as exc:
        raise KoCLIPError(f"the YAML header of {card} is not valid YAML ({' '.join(str(exc).split())[:120]})") from None
    return fields if isinstance(fields, dict) else {}
