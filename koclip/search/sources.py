"""What a gallery is built from: an image folder (with its captions, if it has them), a Hugging Face
dataset, or generated scenes. Each source lists its inputs in a fixed order and reads one at a time."""

from __future__ import annotations

import functools
import hashlib
import json
import posixpath
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from koclip.data.datasets import open_dataset
from koclip.errors import InvalidImageError, KoCLIPError
from koclip.images import ImageInput

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")

Key = str | int  # a path relative to the folder, or a row / scene number

# A folder's captions, in Hugging Face imagefolder's layout: metadata.jsonl at its top, one JSON
# object per line, with the image's path (relative to the folder) in `file_name`; its caption is
# the first of CAPTION_COLUMNS the object has.
FOLDER_METADATA = "metadata.jsonl"
CAPTION_COLUMNS = ("caption_ko", "text", "caption")
MAX_METADATA_BYTES = 256 << 20  # a larger file is not read: the folder is indexed without captions
MAX_METADATA_LINE = 1 << 20


class Source(Protocol):
    """What a gallery is indexed from: FolderSource, DatasetSource, SceneSource and koclip.data.samples.SampleSource.
    `koclip.search.indexing.build` reads each input through it."""

    def describe(self) -> dict[str, Any]:
        """Must return a JSON-able description of the inputs, which the gallery records; an interrupted run resumes
        only if it is unchanged."""
        ...

    def keys(self) -> list[Key]:
        """Must return every input's key (a relative path, or a row or scene number) in a fixed order: the gallery's
        rows follow it."""
        ...

    def read(self, key: Key) -> tuple[ImageInput, dict[str, Any]]:
        """The image (anything `open_image` takes) and extra metadata for it, such as a caption."""
        ...


def _damaged(path: Path, line: int, reason: str) -> KoCLIPError:
    return KoCLIPError(
        f"{path} line {line} {reason}; correct it, or move the file away to index the images without captions"
    )


def read_captions(path: Path) -> dict[str, str]:
    """Captions by image path ('/'-separated, relative to the folder) from an imagefolder metadata.jsonl.

    Only JSON is parsed. A file over MAX_METADATA_BYTES is not read (a warning says so); a line
    that is not a JSON object with a text `file_name` and a text (or null) caption is refused.
    """
    try:
        size = path.stat().st_size
        if size > MAX_METADATA_BYTES:
            print(
                f"warning: {path} is {size / 2**20:.0f} MiB, more than the {MAX_METADATA_BYTES >> 20} MiB read "
                "for captions; indexing without captions",
                file=sys.stderr,
            )
            return {}
        with path.open("rb") as f:
            return _parse_captions(path, iter(lambda: f.readline(MAX_METADATA_LINE + 1), b""))
    except OSError as exc:
        raise KoCLIPError(
            f"{path} could not be read ({exc}); move it away to index the images without captions"
        ) from None


def _parse_captions(path: Path, lines: Iterable[bytes]) -> dict[str, str]:
    captions: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if len(line) > MAX_METADATA_LINE:
            raise _damaged(path, number, f"is longer than {MAX_METADATA_LINE >> 20} MiB")
        if not line.strip():
            continue
        try:
            row = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise _damaged(path, number, f"is not JSON ({type(exc).__name__}: {str(exc)[:80]})") from None
        if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
            raise _damaged(path, number, "is not a JSON object with a file_name")
        column = next((c for c in CAPTION_COLUMNS if row.get(c) is not None), None)
        if column is None:
            continue
        if not isinstance(row[column], str):
            raise _damaged(path, number, f"has a {column} that is not text")
        captions[posixpath.normpath(row["file_name"])] = row[column]
    return captions


@dataclass(frozen=True)
class FolderSource:
    """The images under the folder `root`, at any depth (IMAGE_SUFFIXES), with the captions of its metadata.jsonl
    when it has one."""

    root: Path

    @functools.cached_property
    def captions(self) -> dict[str, str]:
        """Each image's caption, by its path relative to the folder, from metadata.jsonl; empty when the folder has
        none."""
        metadata = self.root / FOLDER_METADATA
        return read_captions(metadata) if metadata.is_file() else {}

    def describe(self) -> dict[str, Any]:
        """`Source.describe`: the folder's absolute path, and a digest of its captions when it has some."""
        description = {"kind": "folder", "path": str(self.root.resolve())}
        if self.captions:  # their digest: a resumed run whose captions changed starts over
            text = json.dumps(sorted(self.captions.items()), ensure_ascii=False)
            description["captions"] = f"{FOLDER_METADATA} sha256:{hashlib.sha256(text.encode()).hexdigest()[:16]}"
        return description

    def keys(self) -> list[Key]:
        """`Source.keys`: the images' '/'-separated paths relative to the folder, sorted; KoCLIPError when the folder
        is gone."""
        if not self.root.is_dir():
            raise KoCLIPError(f"{self.root} is not a folder")
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        )

    def read(self, key: Key) -> tuple[ImageInput, dict[str, Any]]:
        """`Source.read`: the image's path, and its caption when metadata.jsonl gives one."""
        caption = self.captions.get(str(key))
        return self.root / str(key), {} if caption is None else {"caption": caption}


@dataclass(frozen=True)
class DatasetSource:
    """The images, and the captions of `caption_column` if given, of one split of a Hugging Face dataset, a dataset
    folder or a folder written by `save_to_disk`."""

    name: str  # a Hub dataset, a folder for `load_dataset`, or one written by `save_to_disk`
    split: str = "train"
    image_column: str = "image"
    caption_column: str | None = None

    def describe(self) -> dict[str, Any]:
        """`Source.describe`: the dataset, its split and its columns."""
        return {
            "kind": "dataset",
            "name": self.name,
            "split": self.split,
            "image_column": self.image_column,
            "caption_column": self.caption_column,
        }

    @functools.cached_property
    def dataset(self):
        """The split, opened by `open_dataset` (which refuses a missing dataset or column), its images left undecoded
        so that a broken one is skipped rather than failing inside datasets."""
        import datasets

        data = open_dataset(self.name, self.split, (self.image_column, self.caption_column))
        if isinstance(data.features[self.image_column], datasets.Image):
            # Undecoded, so that a broken image is skipped here instead of failing inside datasets.
            data = data.cast_column(self.image_column, datasets.Image(decode=False))
        return data

    def keys(self) -> list[Key]:
        """`Source.keys`: the row numbers, 0 to len - 1."""
        return list(range(len(self.dataset)))

    def read(self, key: Key) -> tuple[ImageInput, dict[str, Any]]:
        """`Source.read`: row `key`'s image (its encoded bytes or its path) and caption; InvalidImageError when the
        row has no image."""
        row = self.dataset[int(key)]
        value = row[self.image_column]
        if isinstance(value, dict):
            value = value.get("bytes") or value.get("path")
        if value is None:
            raise InvalidImageError(f"row {key} has no image")
        caption = row[self.caption_column] if self.caption_column else None
        return value, {} if caption is None else {"caption": str(caption)}


@dataclass(frozen=True)
class SceneSource:
    """`n` generated scenes of stream `seed`, `size` pixels a side."""

    n: int
    seed: int = 0
    size: int = 64

    def describe(self) -> dict[str, Any]:
        """`Source.describe`: the number of scenes, their seed and size."""
        return {"kind": "scenes", "n": self.n, "seed": self.seed, "size": self.size}

    def keys(self) -> list[Key]:
        """`Source.keys`: the scene numbers, 0 to n - 1."""
        return list(range(self.n))

    def read(self, key: Key) -> tuple[ImageInput, dict[str, Any]]:
        """`Source.read`: scene `key`'s image, with its first caption and its objects as metadata."""
        from koclip.data import scenes

        scene = scenes.scene(self.seed, int(key), size=self.size)
        return scene.image, {"caption": scene.captions_ko[0], "objects": scene.objects}
