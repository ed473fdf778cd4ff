"""The searches a service answers, with no HTTP in them: queries are checked, encoded and run against
a named gallery of the catalog.

Every input is checked against the service's Limits before any work: text length, base64 and its
decoded size, image pixels (images.open_image), URLs (webimage, public addresses only, within the
app's byte and time budget), embeddings (length, finite, not zero), result counts and row numbers.
A text the model cannot read at all is refused (Unanswerable) rather than answered with rows that
would mean nothing; a text it reads in part is answered, and the words it skipped are named.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import re
from collections.abc import Callable
from typing import Any

import numpy as np

from koclip import domain, images, webimage
from koclip.api import KoCLIP, Verdict, word_list
from koclip.errors import InvalidImageError, InvalidInputError
from koclip.search import gallery
from koclip.search.exact import Hit
from koclip.search.gallery import Gallery
from koclip.serve.catalog import Catalog
from koclip.serve.limits import Limits

DATA_URL = re.compile(r"^data:[\w/+.-]*;base64,")
WHITESPACE = re.compile(rb"\s+")


class Unanswerable(InvalidInputError):
    """A text query with no word the model can read (422), where the protocol has no place to say so:
    any rows it returned would mean nothing."""


class TooLarge(InvalidInputError):
    """An input over the service's limits (413)."""


@dataclasses.dataclass
class Query:
    """An encoded query: its (dim,) vector, and what to tell the client about it."""

    vector: np.ndarray | None  # None for a text with no word the model reads: it has no answer
    verdict: Verdict | None = None  # for a text
    truncated: bool = False  # a text longer than the model reads
    note: str | None = None  # what the model made of it: words it skipped, or an image unlike its training

    def answerable(self) -> Query:
        """This query, or Unanswerable with its note when it has no vector."""
        if self.vector is None:
            raise Unanswerable(self.note)
        return self


def whole(value: Any, what: str, low: int, high: int) -> int:
    """`value` as a whole number from `low` to `high`, or InvalidInputError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidInputError(f"{what} must be a whole number, not {str(value)[:40]!r}")
    if value < low:
        raise InvalidInputError(f"{what} must be at least {low}, not {value}")
    if value > high:
        raise InvalidInputError(f"{what} is {value:,}; this service answers at most {high:,}")
    return value


class SearchService:
    """Searches over `catalog`'s galleries with one model.

    `model` is the model itself, or a function returning it (waiting for it to load, or raising
    ModelUnavailableError). Safe to call from many threads at once: the model and galleries are
    only read.
    """

    def __init__(self, model: KoCLIP | Callable[[], KoCLIP], catalog: Catalog, limits: Limits | None = None):
        self._model = model
        self.catalog = catalog
        self.limits = limits or Limits()

    @property
    def model(self) -> KoCLIP:
        """The service's model (loaded, or waited for)."""
        return self._model if isinstance(self._model, KoCLIP) else self._model()

    def gallery(self, name: Any) -> Gallery:
        """The catalog's gallery `name`, checked to be the model's: looked up once per request, then passed on."""
        opened = self.catalog.get(name if isinstance(name, str) else str(name))
        gallery.check_made_with(self.model, opened)
        return opened

    def default_gallery(self) -> str:
        """The first gallery's name, for a request that names none."""
        names = self.catalog.names()
        if not names:
            raise gallery.GalleryError("this service has no gallery to search")
        return names[0]

    # ---------------------------------------------------------------- queries

    def text_query(self, text: Any) -> Query:
        """A text query, refused when it is not text, empty or too long; without a vector when the model
        reads none of its words."""
        if not isinstance(text, str):
            raise InvalidInputError(f"the text must be a string, not {type(text).__name__}")
        text = text.strip()
        if not text:
            raise InvalidInputError("the text is empty: send what to look for, for example 빨간 원")
        if len(text) > self.limits.text_chars:
            raise TooLarge(f"the text is {len(text):,} characters; a query may have at most {self.limits.text_chars:,}")
        model = self.model
        verdict = model.verdict(text)
        known = f" It knows {model.vocabulary}." if model.vocabulary else ""
        if not verdict.answerable:
            note = f"{model.name} knows none of the words in {text[:60]!r}, so it has no answer.{known}"
            return Query(None, verdict, note=note)
        note = None
        if verdict.unknown:
            skipped = word_list(verdict.unknown)
            note = f"{model.name} does not know {skipped}: that part of the query was ignored.{known}"
        return Query(model.encode_text([text])[0], verdict, model.is_truncated(text), note)

    def image_bytes(self, image: Any = None, image_url: Any = None) -> bytes:
        """The bytes of an image sent as base64 (optionally a data: URL) or fetched from a public URL."""
        limit = webimage.MAX_BYTES
        if image is not None:
            if not isinstance(image, str):
                raise InvalidImageError(f"the image must be base64 text, not {type(image).__name__}")
            if len(image) > self.limits.body_bytes:
                raise TooLarge(f"the image is over {limit / 2**20:.0f} MiB; send a smaller one")
            encoded = WHITESPACE.sub(b"", DATA_URL.sub("", image, count=1).encode("ascii", "replace"))
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError) as exc:
                raise InvalidImageError(f"the image is not valid base64 ({exc})") from None
            if len(data) > limit:
                raise TooLarge(f"the image is {len(data) / 2**20:.1f} MiB; the limit is {limit / 2**20:.0f} MiB")
            return data
        if not isinstance(image_url, str) or not image_url.strip():
            raise InvalidInputError("send an image as base64, or its URL")
        if len(image_url) > self.limits.url_chars:
            raise TooLarge(f"the URL is {len(image_url):,} characters; the limit is {self.limits.url_chars:,}")
        return webimage.fetch_bytes(
            image_url.strip(),
            timeout=self.limits.fetch_seconds,
            allow_loopback=self.limits.allow_loopback_urls,
        )

    def image_query(self, image: Any = None, image_url: Any = None) -> Query:
        """An image query, from base64 or a URL, decoded within the pixel budget."""
        picture = images.open_image(self.image_bytes(image, image_url))
        model = self.model
        note = None if domain.knows_images_like(model, picture) else domain.warning(model)
        return Query(model.encode_image([picture])[0], note=note)

    def embedding_query(self, values: Any) -> Query:
        """A query given as an embedding: `dim` finite numbers, not all zero, normalised here."""
        dim = self.model.dim
        if not isinstance(values, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
        ):
            raise InvalidInputError(f"the embedding must be a list of {dim} numbers")
        if len(values) != dim:
            raise InvalidInputError(f"the embedding has {len(values):,} numbers; {self.model.name}'s have {dim}")
        vector = np.asarray(values, np.float64)
        norm = float(np.linalg.norm(vector)) if np.isfinite(vector).all() else float("nan")
        if not np.isfinite(norm) or norm == 0:
            raise InvalidInputError("the embedding must be finite numbers, not all zero")
        return Query((vector / norm).astype(np.float32))

    @staticmethod
    def row(opened: Gallery, row: Any, name: str) -> int:
        """`row` checked to be a row number of `opened`, the gallery called `name`."""
        count = len(opened)
        if isinstance(row, bool) or not isinstance(row, int) or not 0 <= row < count:
            raise InvalidInputError(f"row {str(row)[:40]} is not in gallery {name!r} of {count:,} rows")
        return row

    # ---------------------------------------------------------------- searches

    def search(self, opened: Gallery, query: Query, k: Any) -> list[Hit]:
        """The `k` rows of the gallery `opened` (from `gallery`) most similar to `query`."""
        k = whole(k, "the number of results", 1, self.limits.max_results)
        return opened.search_vectors(query.answerable().vector, k)

    def similar(self, opened: Gallery, row: Any, k: Any, name: str) -> list[Hit]:
        """The `k` rows of `opened`, the gallery `name`, most like row `row`, itself left out ("more like this")."""
        k = whole(k, "the number of results", 1, self.limits.max_results)
        return opened.similar(self.row(opened, row, name), k)

    @staticmethod
    def describe(opened: Gallery, index: int) -> dict[str, Any]:
        """Row `index`'s metadata as a client may see it: caption, source, size; never a path on disk."""
        row = opened.metadata[index]
        return {key: row[key] for key in ("caption", "source", "width", "height") if key in row}

    def galleries(self) -> list[dict[str, Any]]:
        """Each gallery's name, model, size and index kind; a damaged one with its error instead."""
        listed = []
        for name in self.catalog.names():
            try:
                opened = self.gallery(name)
            except gallery.GalleryError as exc:
                listed.append({"name": name, "error": str(exc)})
                continue
            index = opened.manifest["index"]
            listed.append({"name": name, "model": opened.model, "count": len(opened), "index": index})
        return listed
