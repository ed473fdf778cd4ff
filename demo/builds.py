"""Gallery builds that run in the background of a server, watched by every session.

A Streamlit script run belongs to one visitor and ends when they leave, but building a gallery of a
few thousand photos takes minutes and should be done once for everyone. Each build runs on its own
thread, keyed by its gallery folder: a second request for the same folder watches the running
build instead of starting another. Builds write through `indexing.build`, so one interrupted by a
restart resumes from its last finished chunk when started again.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from pathlib import Path
from typing import Any

from koclip import hub
from koclip.api import KoCLIP
from koclip.errors import KoCLIPError
from koclip.search import indexing, sources

log = logging.getLogger(__name__)

PREPARING, ENCODING, FINISHED, FAILED = "preparing", "encoding", "finished", "failed"
MAX_TRIES = 3  # builds of one gallery that may fail within RETRY_WINDOW before it must wait
RETRY_WINDOW = 600.0  # seconds
HUB_TIMEOUT = 5.0  # seconds the Hub has to answer before a dataset build fails


@dataclasses.dataclass(frozen=True)
class Status:
    phase: str  # PREPARING (listing or downloading the inputs), ENCODING, FINISHED or FAILED
    done: int = 0  # images encoded, those of an earlier interrupted run included
    total: int = 0
    rate: float = 0.0  # images per second in this run
    eta: float | None = None  # seconds left, once a rate is known
    error: str | None = None
    resumed_from: int = 0  # images already done when this run started

    @property
    def running(self) -> bool:
        return self.phase in (PREPARING, ENCODING)


class Build:
    def __init__(self, out: Path, source: sources.Source, model: KoCLIP, batch_size: int):
        self.out = out
        self.source = source
        self.model = model
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self._status = Status(PREPARING)
        self._started: tuple[float, int] | None = None  # (time, images done) at the first report
        self._thread = threading.Thread(target=self._run, name=f"koclip-build:{out.name}", daemon=True)

    @property
    def status(self) -> Status:
        with self._lock:
            return self._status

    def start(self) -> Build:
        self._thread.start()
        return self

    def wait(self, timeout: float | None = None) -> Status:
        self._thread.join(timeout)
        return self.status

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._status = dataclasses.replace(self._status, **changes)

    def _report(self, done: int, total: int) -> None:
        now = time.monotonic()
        if self._started is None:
            self._started = (now, done)
            self._update(phase=ENCODING, done=done, total=total, resumed_from=done)
            return
        elapsed, encoded = now - self._started[0], done - self._started[1]
        rate = encoded / elapsed if elapsed > 0 else 0.0
        self._update(done=done, total=total, rate=rate, eta=(total - done) / rate if rate > 0 else None)

    def _run(self) -> None:
        try:
            _check_hub(self.source)
            manifest = indexing.build(
                self.source, self.model, self.out, batch_size=self.batch_size, progress=False, on_progress=self._report
            )
        except KoCLIPError as exc:
            self._update(phase=FAILED, error=str(exc))
        except Exception as exc:  # a thread's exception would otherwise vanish; the server log gets the traceback
            log.exception("building the gallery %s failed", self.out)
            self._update(phase=FAILED, error=f"{type(exc).__name__}: {exc}")
        else:
            self._update(phase=FINISHED, done=manifest["count"], eta=0.0)


def _check_hub(source: sources.Source) -> None:
    """Fail at once, not after huggingface_hub's retries (about 25 s), when a Hub dataset cannot be had."""
    if not isinstance(source, sources.DatasetSource) or Path(source.name).exists() or hub.offline():
        return  # offline, datasets looks in its cache only, and fails at once
    if not hub.reachable(HUB_TIMEOUT):
        raise KoCLIPError(
            f"the Hugging Face Hub did not answer within {HUB_TIMEOUT:.0f} s, so the dataset {source.name!r} "
            f"could not be downloaded. Up to {MAX_TRIES} tries are allowed every {RETRY_WINDOW / 60:.0f} minutes; "
            "the server's operator can also name a dataset folder on the server (KOCLIP_GALLERY_DATASET)."
        )


class Builds:
    """The builds of one server process, by gallery folder; safe to use from any thread.

    A failed build can be started again (by any session), up to MAX_TRIES failures of one gallery
    within RETRY_WINDOW seconds: a source that keeps failing is not hammered by every visitor.
    """

    def __init__(self, clock=time.monotonic) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._builds: dict[Path, Build] = {}
        self._failures: dict[Path, list[float]] = {}  # when each failed build of a folder was replaced or seen

    def start(self, out: str | Path, source: sources.Source, model: KoCLIP, batch_size: int = 64) -> Build:
        """Start building `out`, unless a build of it is running or has finished, or it failed too often
        lately (see retry_in); returns the build that stands for `out`."""
        out = Path(out).resolve()
        with self._lock:
            build = self._builds.get(out)
            if build is None or (build.status.phase == FAILED and self._wait(out) is None):
                if build is not None:
                    self._failures.setdefault(out, []).append(self._clock())
                build = self._builds[out] = Build(out, source, model, batch_size).start()
            return build

    def get(self, out: str | Path) -> Build | None:
        with self._lock:
            return self._builds.get(Path(out).resolve())

    def retry_in(self, out: str | Path) -> float | None:
        """Seconds until a failed build of `out` may be started again; None when it may be now."""
        with self._lock:
            return self._wait(Path(out).resolve())

    def _wait(self, out: Path) -> float | None:
        now = self._clock()
        recent = [t for t in self._failures.get(out, []) if now - t < RETRY_WINDOW]
        self._failures[out] = recent
        build = self._builds.get(out)
        failed = len(recent) + (build is not None and build.status.phase == FAILED)
        return None if failed < MAX_TRIES else min(recent, default=now) + RETRY_WINDOW - now
