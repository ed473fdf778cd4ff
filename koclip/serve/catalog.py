"""The galleries a service searches, by name.

A request names a gallery, never a path: only the folders the operator gave are ever opened. Each is
opened and checked whole once per version of its files (gallery.signature), so a gallery re-indexed
or appended to while the service runs is reopened on the next request that names it, and a damaged
one is refused with its GalleryError. An approximate index is searched once in a child process before
it is used (gallery.probe), so a crafted one cannot take the service down.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from koclip.errors import GalleryError, KoCLIPError
from koclip.search import gallery
from koclip.search.gallery import Gallery

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class UnknownGallery(KoCLIPError):
    """A request named a gallery the service does not have (404)."""


class Catalog(Protocol):
    """Where a service finds its galleries: the names it offers, and the gallery behind a name."""

    def names(self) -> list[str]:
        """The galleries on offer, in a fixed order."""
        ...

    def get(self, name: str) -> Gallery:
        """The opened gallery `name`; UnknownGallery when there is none of that name, GalleryError when it is
        damaged."""
        ...


def unknown(name: object, names: list[str]) -> UnknownGallery:
    """The error for a gallery name the service does not have, listing those it has."""
    offered = ", ".join(names[:20]) or "none"
    return UnknownGallery(f"there is no gallery named {str(name)[:100]!r}; this service has: {offered}")


def gallery_name(text: str) -> tuple[str, Path]:
    """A --gallery argument, `DIR` or `NAME=DIR`, as (name, folder); the name defaults to the folder's."""
    name, _, folder = text.partition("=") if "=" in text else ("", "", text)
    path = Path(folder)
    name = name or path.resolve().name
    if not NAME.fullmatch(name):
        raise GalleryError(
            f"{name!r} cannot name a gallery: use letters, digits, '.', '_' and '-' (up to 100), as in NAME=DIR"
        )
    return name, path


class Folders:
    """The galleries in the folders an operator named, reopened when their files change."""

    def __init__(self, folders: Mapping[str, Path], check: Callable[[Gallery], None] | None = None):
        self._folders = dict(folders)
        self._check = check  # e.g. gallery.check_made_with(model, ·): refuse another model's gallery
        self._lock = threading.Lock()
        self._opened: dict[str, tuple[object, Gallery | str]] = {}

    def names(self) -> list[str]:
        """The galleries on offer, in the order they were given."""
        return list(self._folders)

    def get(self, name: str) -> Gallery:
        """The gallery `name`, opened once per version of its files."""
        if name not in self._folders:
            raise unknown(name, self.names())
        path = self._folders[name]
        version = gallery.signature(path)
        with self._lock:  # one opening per version, however many requests arrive together
            cached = self._opened.get(name)
            if cached is None or cached[0] != version:
                cached = self._opened[name] = (version, self._open(path))
        if isinstance(cached[1], str):
            raise GalleryError(cached[1])
        return cached[1]

    def _open(self, path: Path) -> Gallery | str:
        try:
            opened = Gallery.open(path)
            if self._check is not None:
                self._check(opened)
        except KoCLIPError as exc:  # kept, so a damaged gallery is read once per version, not per request
            return str(exc)
        if opened.index is not None:
            return gallery.probe(path) or opened
        return opened
