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


def disk_galleries(model_name: str) -> dict[str, str]:
    """Finished galleries of `model_name`: path → label."""
    found = {}
    for root in settings.gallery_roots():
        for path in gallery.list_galleries(root, model_name):
            count = gallery.read_manifest(path)["count"]
            found[str(path)] = f"{path.name} ({count:,} images)"
    return found
