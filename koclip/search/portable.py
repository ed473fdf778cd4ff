"""What moving a gallery out to another format and back in shares, whatever the format
(koclip.search.hf_dataset, koclip.search.clip_retrieval):

- `check_target` and `building`: the folder written is built hidden beside its place (`.OUT.new`) and
  put in place whole (atomic.replace_folder), so a failed or interrupted run never leaves half an OUT;
  an existing OUT is replaced only with --overwrite, and only when it is what would be written.
- `made_with` and `import_model`: the model that made a gallery's vectors, as an export records it
  (name, revision, width, count, dtype), and the check that an import is searched with that model.
- `GalleryWriter`: a gallery assembled from vectors that are already embeddings (checked before any
  image is decoded), rows of metadata and images to thumbnail, with its search index chosen as
  indexing chooses it (jobs.search_index) and manifest.json written last.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from koclip import domain
from koclip.atomic import replace_folder, staged, write_atomic
from koclip.errors import GalleryError, InvalidImageError, InvalidInputError, ModelUnavailableError, UnknownModelError
from koclip.search import gallery, tuning
from koclip.search.jobs import PARTIAL, caption_vectors, remove, search_index, thumbnail_jpeg, thumbnail_name

if TYPE_CHECKING:
    from koclip.api import KoCLIP

MADE_WITH = ("model", "model_revision", "dim", "count", "dtype")  # what an export records of its gallery


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def check_target(out: Path, overwrite: bool, what: str, recognised: Callable[[Path], bool]) -> None:
    """Refuse to write `what` (e.g. "a Hugging Face dataset") at `out` when it is a file, is a gallery (an export
    never replaces one), or holds files, unless `overwrite` and it already is such a `what` (`recognised`)."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"OUT {out} is a file; give a folder to write {what} into")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if (out / gallery.MANIFEST).is_file():
        raise InvalidInputError(f"OUT {out} is a gallery; writing {what} there would destroy it: choose another OUT")
    if not overwrite:
        raise InvalidInputError(f"OUT {out} already holds files; pass --overwrite to replace it, or choose another OUT")
    if not recognised(out):
        raise InvalidInputError(
            f"OUT {out} holds files that are not {what}; --overwrite replaces only {what}: choose another OUT"
        )


def check_gallery_target(out: Path, overwrite: bool) -> None:
    """Refuse to import a gallery into `out` when it is a file, holds a gallery (unless `overwrite`), or holds
    other files (never replaced)."""
    gallery.recover(out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"OUT {out} is a file; give a folder for the gallery")
    if (out / gallery.MANIFEST).is_file():
        if not overwrite:
            raise gallery.occupied(f"OUT {out}")
    elif out.is_dir() and any(out.iterdir()):
        raise InvalidInputError(f"OUT {out} is not empty and is not a gallery; choose another OUT")


@contextlib.contextmanager
def building(out: Path) -> Iterator[Path]:
    """A new empty hidden folder beside `out` to write into; when the block ends without an error it takes the
    place of `out` in one step (atomic.replace_folder), and on an error it is deleted."""
    stage = staged(out)
    if (stage / PARTIAL).is_dir():
        raise GalleryError(
            f"{stage} holds an unfinished `python -m koclip index --overwrite` of {out}: run that command again to "
            f"finish it, or delete {stage}"
        )
    remove(stage)
    stage.mkdir(parents=True)
    try:
        yield stage
    except BaseException:
        remove(stage)
        raise
    replace_folder(stage, out)


def made_with(manifest: dict[str, Any]) -> dict[str, Any]:
    """What an export records of the gallery with `manifest`: its model, the model's revision, the vectors' width,
    count and dtype, and (for a model trained on generated scenes) how many images are unlike them."""
    fields = {key: manifest.get(key) for key in MADE_WITH}
    if "unlike_training" in manifest:
        fields["unlike_training"] = manifest["unlike_training"]
    return fields


def check_made_with(fields: Any, where: str) -> dict[str, Any]:
    """`fields` (as an export records them, read back from `where`) checked: a model name, a width of at least 1,
    and when given a count, a dtype and a revision of the right kinds; GalleryError otherwise."""
    if not isinstance(fields, dict) or not isinstance(fields.get("model"), str) or not fields["model"]:
        raise GalleryError(f"{where} does not name the model that made its embeddings (a `model` text)")
    for key in ("dim", "count", "unlike_training"):
        value = fields.get(key)
        if (key == "dim" or value is not None) and (
            not isinstance(value, int) or isinstance(value, bool) or value < (key == "dim")
        ):
            raise GalleryError(f"{where} has {key} {value!r}, not a whole number")
    if fields.get("dtype") is not None and fields["dtype"] not in gallery.DTYPES:
        raise GalleryError(f"{where} has dtype {fields['dtype']!r}; koclip stores {' or '.join(gallery.DTYPES)}")
    if fields.get("model_revision") is not None and not isinstance(fields["model_revision"], str):
        raise GalleryError(f"{where} has a model_revision that is not text")
    return fields


def import_model(recorded: dict[str, Any] | None, model: str | None, src: str, reencode: str) -> KoCLIP:
    """The model to search an imported gallery with, loaded: `model` when given, else the one `recorded` names (see
    `made_with`). GalleryError when neither is known, or when `model` is not the recorded one (another name, or
    other weights under the same name): vectors are searchable only with the model that made them, and `reencode`
    (a command) says how to make new ones."""
    from koclip.api import load

    if recorded is None and model is None:
        raise GalleryError(
            f"{src} does not say which model made its embeddings; pass --model NAME naming that model, or encode the "
            f"images anew: {reencode}"
        )
    try:
        loaded = load(model if model is not None else recorded["model"])
    except (UnknownModelError, ModelUnavailableError) as exc:
        if model is not None:
            raise
        raise GalleryError(
            f"{src}'s embeddings were made with {recorded['model']}, which cannot be loaded here ({exc}); pass "
            "--model with that model's folder or Hub id"
        ) from None
    if recorded is not None:
        revision = recorded.get("model_revision")
        if loaded.name != recorded["model"] or (revision is not None and revision != loaded.revision):
            theirs = recorded["model"] + (f" revision {revision}" if revision else "")
            keep = (
                f"leave out --model to search it with {recorded['model']}"
                if model is not None and loaded.name != recorded["model"]
                else f"make that revision of {recorded['model']} loadable here (its Hub cache or folder, as --model)"
            )
            raise GalleryError(
                f"{src}'s embeddings were made with {theirs}, not {loaded.name} revision {loaded.revision}: other "
                f"weights give other embeddings. To import them, {keep}; or encode the images anew: {reencode}"
            )
        if recorded["dim"] != loaded.dim:
            raise GalleryError(
                f"{src} says its vectors have {recorded['dim']} numbers, but {loaded.name} makes {loaded.dim}; "
                "the export is damaged"
            )
    return loaded


class GalleryWriter:
    """A gallery written into the empty folder `folder` from `count` vectors of `model` that are embeddings already:
    `put` the vectors, `check` them, then `add` the metadata rows with their images, in row order, and `finish`.

    The vectors go straight into a memory-mapped vectors.npy of `dtype`, so memory stays bounded whatever the
    count. `reencode` is the command that makes new embeddings, for the error on vectors that are not."""

    def __init__(self, folder: Path, model: KoCLIP, count: int, dtype: str, reencode: str):
        if count < 1:
            raise GalleryError("there are no rows to import; no gallery was written")
        self.folder = folder
        self.model = model
        self.count = count
        self.dtype = dtype
        self.reencode = reencode
        (folder / gallery.THUMBS).mkdir(parents=True)
        self.vectors = np.lib.format.open_memmap(folder / gallery.VECTORS, "w+", dtype, (count, model.dim))
        self.rows: list[dict[str, Any]] = []
        self.without_thumbnail = 0
        self.unlike = 0
        self.check_domain = not domain.trained_on_photos(model)

    def put(self, start: int, vectors: np.ndarray) -> None:
        """Rows start, start + 1, … of vectors.npy: `vectors`, (n, dim)."""
        self.vectors[start : start + len(vectors)] = vectors

    def check(self, where: str) -> None:
        """Refuse vectors that are not embeddings (finite, of length 1); `where` names what held them."""
        self.vectors.flush()
        gallery.check_vectors(
            self.vectors, where, f"they are not embeddings koclip can search; encode the images anew: {self.reencode}"
        )

    def add(self, record: dict[str, Any], image: Any) -> None:
        """The next row: `record` holds its source and, when known, caption, width and height; `image` (anything
        `open_image` takes, or None) becomes its thumbnail. A row whose image cannot be read is kept, without a
        thumbnail: its vector is what search uses."""
        from koclip.images import open_image

        row = {"source": record["source"]}
        size = record.get("width"), record.get("height")
        name = thumbnail_name(len(self.rows))
        picture = None
        if image is not None:
            try:
                picture = open_image(image)
            except InvalidImageError:
                picture = None
        if picture is None:
            self.without_thumbnail += 1
        else:
            (self.folder / name).write_bytes(thumbnail_jpeg(picture))
            self.unlike += self.check_domain and domain.scene_likeness(picture) < domain.THRESHOLD
        if not all(isinstance(side, int) and not isinstance(side, bool) and side > 0 for side in size):
            size = (picture.width, picture.height) if picture is not None else (None, None)
        if size[0] is not None:
            row["width"], row["height"] = size
        if isinstance(record.get("caption"), str) and record["caption"].strip():
            row["caption"] = record["caption"]
        row["thumbnail"] = name
        self.rows.append(row)

    def finish(
        self,
        source: dict[str, Any],
        recorded: dict[str, Any] | None,
        ann_threshold: int = gallery.ANN_THRESHOLD,
        memory_budget: int = tuning.DEFAULT_BUDGET,
        target_recall: float = tuning.TARGET_RECALL,
        model_path: str | None = None,
        progress: bool = True,
    ) -> dict[str, Any]:
        """Write metadata.jsonl, the search index (for ann_threshold rows or more, chosen by measurement as indexing
        chooses it) and manifest.json, which records `source` and, from `recorded`, the images unlike a model's
        training (else counted here); then open the result as `Gallery.open` will. Returns the manifest."""
        if len(self.rows) != self.count:
            raise GalleryError(f"{len(self.rows)} metadata rows for {self.count} vectors; no gallery was written")
        self.vectors.flush()
        del self.vectors
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in self.rows)
        write_atomic(self.folder / gallery.METADATA, lines.encode())
        log = _log if progress else (lambda message: None)
        vectors = np.load(self.folder / gallery.VECTORS, mmap_mode="r", allow_pickle=False)
        texts_of = lambda held: caption_vectors(self.model, [self.rows[i] for i in held])  # noqa: E731
        chosen, _ = search_index(self.folder, vectors, texts_of, ann_threshold, memory_budget, target_recall, log)
        del vectors
        manifest = gallery.new_manifest(
            self.model,
            self.count,
            self.dtype,
            chosen["kind"] if chosen else gallery.EXACT,
            model_path=model_path,
            index_tuning=chosen,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            source=source,
            skipped=[],
            skipped_count=0,
            without_thumbnail=self.without_thumbnail,
        )
        if self.check_domain:
            unlike = (recorded or {}).get("unlike_training")
            manifest["unlike_training"] = unlike if unlike is not None else int(self.unlike)
        write_atomic(self.folder / gallery.MANIFEST, json.dumps(manifest, ensure_ascii=False, indent=2).encode())
        gallery.Gallery.open(self.folder)  # what a search will check, checked before the gallery is put in place
        return manifest


def model_path(model: str | None) -> str | None:
    """The manifest's model_path: the absolute folder when `model` names a folder (as indexing records it)."""
    return str(Path(model).resolve()) if model is not None and Path(model).is_dir() else None


def absolute(name: str) -> str:
    """A dataset or folder argument as a manifest records it: folders by absolute path, Hub ids as given."""
    return str(Path(name).resolve()) if os.path.isdir(name) else name
