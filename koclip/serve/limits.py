"""What one request may send and ask for, and how much work the service takes on at once.

The image budgets are the library's and the app's: a fetched image is capped at webimage.MAX_BYTES
within webimage.TIMEOUT_S, and any image at images.MAX_PIXELS decoded pixels. A request body may
hold one such image in base64, and little more.
"""

from __future__ import annotations

import dataclasses
import math
import os

from koclip import webimage

URL_CHARS = 2048  # what browsers and servers commonly accept, as in the app
TEXT_CHARS = 1000  # a search query; the towers read only its first few dozen tokens anyway
MAX_RESULTS = 1000  # rows one request may ask for
MAX_IDS = 1000  # rows one /metadata request may name


def base64_length(size: int) -> int:
    """How many characters base64 turns `size` bytes into."""
    return 4 * math.ceil(size / 3)


@dataclasses.dataclass(frozen=True)
class Limits:
    """A service's bounds. `workers` requests are worked on at once and `queue` more wait, each at most
    `queue_seconds`; past that a request is answered 503 at once. A request's work ends after
    `request_seconds` with a 504 (an encode already running finishes, still holding its worker)."""

    workers: int = min(4, os.cpu_count() or 1)
    queue: int = 32
    queue_seconds: float = 10.0
    request_seconds: float = 30.0
    body_bytes: int = base64_length(webimage.MAX_BYTES) + (64 << 10)
    text_chars: int = TEXT_CHARS
    url_chars: int = URL_CHARS
    max_results: int = MAX_RESULTS
    max_ids: int = MAX_IDS
    fetch_seconds: float = webimage.TIMEOUT_S
    allow_loopback_urls: bool = False  # only for tests against a local image server

    @property
    def capacity(self) -> int:
        """Requests admitted at once: working and waiting."""
        return self.workers + self.queue
