"""The server's galleries, shared by every session: those on disk, opened once per version of their
files, and the builds that make new ones."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from koclip import builds, gallery, settings


@st.cache_resource(show_spinner=False)
def server_builds() -> builds.Builds:
    """The gallery builds of this server, shared by every session."""
    return builds.Builds()


@st.cache_resource(show_spinner="Opening the gallery…", max_entries=16)
def _open_gallery(path: str, signature) -> gallery.Gallery:
    return gallery.Gallery.open(path)


def open_gallery(path: str) -> gallery.Gallery:
    """The gallery at `path`, opened once per version of its files: a re-indexed gallery is reopened."""
    return _open_gallery(path, gallery.signature(Path(path)))


def samples_folder(model_name: str) -> Path:
    """Where the app writes `model_name`'s gallery of the sample photos."""
    return settings.embeddings_dir() / f"{model_name}-samples"


def disk_galleries(model_name: str) -> dict[str, str]:
    """Finished galleries of `model_name`, path → label, the default first.

    The default is fixed, whatever was built last: the gallery the app ships for the model, else its
    sample photos; the others follow by name. Only the shipped gallery and the folder the app writes
    to (settings.embeddings_dir) are read.
    """
    shipped = settings.shipped_gallery(model_name)
    paths = [shipped] if shipped is not None and shipped in gallery.list_galleries(shipped.parent, model_name) else []
    paths += gallery.list_galleries(settings.embeddings_dir(), model_name)
    samples = samples_folder(model_name)
    paths = sorted(dict.fromkeys(paths), key=lambda path: (path != shipped, path != samples, path.name))
    return {str(path): f"{path.name} ({gallery.read_manifest(path)['count']:,} images)" for path in paths}
