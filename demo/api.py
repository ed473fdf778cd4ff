"""The search service (koclip.serve) mounted under /api beside the pages, when the operator sets
KOCLIP_API: the same loaded model and the same galleries as Text → Image, shared, not loaded again.

It serves the server's default model (models.default_model) and that model's galleries on disk
(galleries.disk_galleries), each named by its folder; a gallery a visitor builds on the page is
offered as soon as it is finished.
"""

from __future__ import annotations

import concurrent.futures
import logging
from pathlib import Path

from starlette.routing import Mount

import koclip
from demo import galleries, models
from koclip.errors import ModelUnavailableError
from koclip.search.gallery import Gallery
from koclip.serve import catalog
from koclip.serve.app import create_app
from koclip.serve.limits import Limits
from koclip.serve.service import SearchService

PREFIX = "/api"


class PageGalleries:
    """The default model's galleries as the Text → Image page lists them, by folder name."""

    def _paths(self) -> dict[str, str]:
        usable, _damaged = galleries.disk_galleries(models.default_model())
        return {Path(path).name: path for path in usable}

    def names(self) -> list[str]:
        """The galleries on offer, the page's default first."""
        return list(self._paths())

    def get(self, name: str) -> Gallery:
        """The gallery `name`, opened once per version as the page opens it."""
        paths = self._paths()
        if name not in paths:
            raise catalog.unknown(name, list(paths))
        return galleries.open_gallery(paths[name])


def server_model(wait: float) -> koclip.KoCLIP:
    """The server's default model, loading it if no page has yet; waited for at most `wait` seconds."""
    name = models.default_model()
    try:
        return models.server_models().get(name).result(timeout=wait)
    except concurrent.futures.TimeoutError:
        raise ModelUnavailableError(f"{name} is still loading on this server; try again in a moment") from None


def routes() -> list[Mount]:
    """The service's routes for st.App: everything under /api."""
    log = logging.getLogger("koclip.serve")  # its access lines, beside runlog's lines of the pages
    if not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s koclip.serve %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
    limits = Limits()
    service = SearchService(lambda: server_model(limits.request_seconds), PageGalleries(), limits)
    return [Mount(PREFIX, app=create_app(service, title="KoCLIP Space"))]
