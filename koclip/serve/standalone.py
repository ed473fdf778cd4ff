"""The service on its own, as `python -m koclip serve` runs it: galleries from folders, one model
loaded and warmed up, everything checked before the port opens."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from fastapi import FastAPI
from PIL import Image

import koclip
from koclip.search import gallery
from koclip.serve.app import create_app
from koclip.serve.catalog import Folders
from koclip.serve.limits import Limits
from koclip.serve.service import SearchService


def build(
    folders: Mapping[str, Path],
    model: str | None = None,
    cors: list[str] | None = None,
    **limits,
) -> tuple[FastAPI, SearchService]:
    """The application and its service for the galleries in `folders` (name → folder), searched with
    `model` (default: the first gallery's). Every gallery is opened, checked and, if it has an
    approximate index, probed now, and the model's single-query shapes are compiled, so the first
    request waits for neither; the other shapes compile on a background thread. `limits` are Limits'
    fields."""
    first = gallery.read_manifest(next(iter(folders.values())))
    loaded = koclip.load(model or gallery.model_reference(first))
    catalog = Folders(folders, check=lambda opened: gallery.check_made_with(loaded, opened))
    for name in catalog.names():
        catalog.get(name)  # its GalleryError, now rather than on the first request
    loaded.encode_text(["빨간 원"])
    loaded.encode_image([Image.new("RGB", (64, 64))])
    loaded.warm_up_in_background()
    service = SearchService(loaded, catalog, Limits(**limits))
    return create_app(service, cors_origins=tuple(cors or ("*",))), service
