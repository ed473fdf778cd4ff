"""The server's galleries, shared by every session: those on disk, opened once per version of their
files, and the builds that make new ones."""

from __future__ import annotations

import io
from pathlib import Path

import streamlit as st
from PIL import Image

from demo import builds, inputs, settings
from koclip import domain, images
from koclip.errors import GalleryError, KoCLIPError
from koclip.search import gallery, jobs

MAX_UPLOADS = 24  # photos one visitor may search
MAX_UPLOAD_MEGAPIXELS = 100  # decoded, over all of one visitor's photos
KEPT_SIDE = 1024  # an uploaded photo is kept at most this large: the model reads 224 pixels


@st.cache_resource(show_spinner=False)
def server_builds() -> builds.Builds:
    """The gallery builds of this server, shared by every session."""
    return builds.Builds()


@st.cache_resource(show_spinner="Opening the gallery…", max_entries=32)
def _open_gallery(path: str, signature) -> gallery.Gallery | str:
    try:
        opened = gallery.Gallery.open(path)
    except KoCLIPError as exc:  # kept too, so a damaged gallery is read once, not on every run
        return str(exc)
    if opened.index is not None:  # faiss reads it: searched first in a child, where a crash harms no one
        return gallery.probe(path) or opened
    return opened


def open_gallery(path: str) -> gallery.Gallery:
    """The gallery at `path`, opened once per version of its files: a re-indexed gallery is reopened.
    A damaged one raises its GalleryError, once per version too."""
    opened = _open_gallery(path, gallery.signature(Path(path)))
    if isinstance(opened, str):
        raise GalleryError(opened)
    return opened


def samples_folder(model_name: str) -> Path:
    """Where the app writes `model_name`'s gallery of the sample photos."""
    return settings.embeddings_dir() / f"{model_name}-samples"


def disk_galleries(model_name: str) -> tuple[dict[str, str], dict[str, str]]:
    """The galleries of `model_name` a visitor can search, path → label, the default first; and the
    damaged ones, folder name → what is wrong, left out of the picker.

    The default is fixed, whatever was built last: the gallery the app ships for the model, else its
    sample photos; the others follow by name. Only the shipped gallery and the folder the app writes
    to (settings.embeddings_dir) are read. Each is checked whole once per version of its files.
    """
    root, shipped = settings.embeddings_dir(), settings.shipped_gallery(model_name)
    paths = [shipped] if shipped is not None and shipped in gallery.list_galleries(shipped.parent, model_name) else []
    finished = gallery.list_galleries(root)
    paths += [path for path in finished if gallery.read_manifest(path)["model"] == model_name]
    samples = samples_folder(model_name)
    usable, damaged = {}, {}
    for path in sorted(dict.fromkeys(paths), key=lambda path: (path != shipped, path != samples, path.name)):
        try:
            usable[str(path)] = f"{path.name} ({len(open_gallery(str(path))):,} images)"
        except GalleryError as exc:
            damaged[path.name] = str(exc)
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        if (path / gallery.MANIFEST).is_file() and path not in finished and not path.name.startswith("."):
            try:
                gallery.read_manifest(path)
            except GalleryError as exc:  # its manifest is unreadable: no telling whose it is
                damaged[path.name] = str(exc)
    return usable, damaged


def _header_pixels(file) -> int:
    """The pixels an upload's header announces, read without decoding; 0 when it is no image."""
    try:
        with Image.open(io.BytesIO(file.getvalue()), formats=images.FORMATS) as image:
            return image.width * image.height
    except Exception:  # noqa: BLE001 - whatever Pillow raises, open_upload reports it properly
        return 0


def encode_uploads(model, files) -> tuple[gallery.Gallery | None, list[str]]:
    """A visitor's uploaded photos as an in-memory gallery, and what to tell them about it.

    Bounded: at most MAX_UPLOADS photos and MAX_UPLOAD_MEGAPIXELS decoded pixels in all, and each
    photo kept only at KEPT_SIDE, not as uploaded."""
    rows, images, notes, pixels = [], [], [], 0
    for file in files[:MAX_UPLOADS]:
        pixels += _header_pixels(file)
        if pixels > MAX_UPLOAD_MEGAPIXELS * 1e6:
            notes.append(
                f"Only the first {len(images)} photos were used: with the next they would hold over "
                f"{MAX_UPLOAD_MEGAPIXELS} megapixels, the most one visitor's photos may."
            )
            break
        image = inputs.open_upload(file)
        if image is not None:
            image.thumbnail((KEPT_SIDE, KEPT_SIDE), Image.Resampling.BICUBIC)
            rows.append({"source": file.name, "caption": file.name, "thumbnail": jobs.thumbnail_jpeg(image)})
            images.append(image)
    if len(files) > MAX_UPLOADS:
        notes.append(f"Only the first {MAX_UPLOADS} of your {len(files)} photos were used.")
    if not images:
        return None, notes
    unfamiliar = sum(not domain.knows_images_like(model, image) for image in images)
    if unfamiliar:
        notes.append(domain.warning(model, f"{unfamiliar} of your {len(images)} photos do"))
    with st.spinner(f"Encoding {len(images)} photos with {model.name}…"):
        return gallery.Gallery.in_memory(model, model.encode_image(images), rows), notes
