"""Bounded concurrency for the service: a fixed pool of worker threads and a bounded queue.

A request is admitted while fewer than `Limits.capacity` are working or waiting; past that it is
answered 503 at once, so a burst never piles up threads, memory or latency. An admitted request
waits at most `queue_seconds` for a worker (503 after that) and its work at most `request_seconds`
(504). A timed-out encode cannot be interrupted: it keeps its worker and its place until it ends,
so the bounds hold even then.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from koclip.errors import KoCLIPError
from koclip.serve.limits import Limits

T = TypeVar("T")


class Busy(KoCLIPError):
    """The service is working on and queueing all it may; the client should retry shortly (503)."""


class TimedOut(KoCLIPError):
    """A request's work took longer than the service allows (504)."""


class Gate:
    """Runs blocking work on `limits.workers` threads, admitting at most `limits.capacity` requests."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self._lock = threading.Lock()
        self._admitted = 0
        self._pool = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="koclip-serve")

    @property
    def admitted(self) -> int:
        """Requests working or waiting now."""
        with self._lock:
            return self._admitted

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self.limits.capacity:
                raise Busy(
                    f"the service is busy: {self.limits.workers} requests are being answered and "
                    f"{self.limits.queue} are waiting; try again in a moment"
                )
            self._admitted += 1

    def _leave(self, _future: Future | None = None) -> None:
        with self._lock:
            self._admitted -= 1

    async def run(self, work: Callable[[], T]) -> T:
        """`work()` on a worker thread, within the queue's and the request's time limits."""
        self._admit()
        loop = asyncio.get_running_loop()
        began = asyncio.Event()

        def job() -> T:
            loop.call_soon_threadsafe(began.set)
            return work()

        try:
            future = self._pool.submit(job)
        except RuntimeError:  # the pool is shut down: the server is stopping
            self._leave()
            raise Busy("the service is shutting down") from None
        future.add_done_callback(self._leave)
        limits = self.limits
        try:
            try:
                await asyncio.wait_for(began.wait(), limits.queue_seconds)
            except asyncio.TimeoutError:
                if future.cancel():
                    raise Busy(
                        f"the service is busy: this request waited {limits.queue_seconds:.0f} s for a worker; "
                        "try again in a moment"
                    ) from None
            try:
                return await asyncio.wait_for(asyncio.shield(asyncio.wrap_future(future)), limits.request_seconds)
            except asyncio.TimeoutError:
                raise TimedOut(f"the request took longer than {limits.request_seconds:.0f} s and was stopped") from None
        except asyncio.CancelledError:  # the client went away: drop the work if it has not begun
            future.cancel()
            raise

    def close(self) -> None:
        """Stop taking work; what runs finishes on its own."""
        self._pool.shutdown(wait=False, cancel_futures=True)
