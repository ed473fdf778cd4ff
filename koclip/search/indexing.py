"""Building galleries from an image folder, a Hugging Face dataset, or generated scenes.

Inputs are taken in a fixed order (sorted paths, dataset rows, scene numbers) and cut into
chunks of `batch_size`. Each finished chunk is saved under `OUT/.partial/`, so a run that stops
resumes at the first unfinished chunk. The gallery files are assembled at the end and
`manifest.json` is written last: until then, `Gallery.open` refuses the folder.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm import tqdm

from koclip import domain
from koclip.api import KoCLIP, load
from koclip.atomic import replace_folder, staged
from koclip.errors import KoCLIPError
from koclip.search import gallery, tuning
from koclip.search.jobs import PARTIAL, Decoder, Job, encode, remove
from koclip.search.sources import Source  # what build takes

ENGINES = ("local", "ray")


def _describe_source(description: dict[str, Any]) -> str:
    details = {k: v for k, v in description.items() if k != "kind" and v is not None}
    return f"the {description['kind']} " + ", ".join(f"{k} {v}" for k, v in details.items())


def _encode_locally(job: Job, pending: list[int], decoder: Decoder, model: KoCLIP, bar: tqdm) -> None:
    """Encode the pending chunks in order, decoding the next chunk on a thread while this one encodes
    (PIL and XLA both release the GIL, so the two overlap)."""
    with ThreadPoolExecutor(1) as pool:
        upcoming = pool.submit(decoder, job.chunk(pending[0])) if pending else None
        for position, index in enumerate(pending):
            batch = upcoming.result()
            if position + 1 < len(pending):
                upcoming = pool.submit(decoder, job.chunk(pending[position + 1]))
            batch["vector"] = encode(model, batch)
            job.commit(index, batch)
            bar.update(len(batch["ok"]))


class _ReportingBar(tqdm):
    """A progress bar that also tells `report(done, total)` of every step, for callers without a terminal."""

    def __init__(self, *args, report: Callable[[int, int], None] | None = None, **kwargs):
        self._report = report
        super().__init__(*args, **kwargs)
        self._count = int(kwargs.get("initial", 0))  # a disabled tqdm does not count

    def update(self, n: float | None = 1) -> bool | None:
        shown = super().update(n)
        self._count += int(n or 0)
        if self._report is not None:
            self._report(self._count, int(self.total))
        return shown


def build(
    source: Source,
    model: KoCLIP | str,
    out: str | os.PathLike,
    *,
    batch_size: int = 64,
    dtype: str = "float32",
    engine: str = "local",
    workers: int = 1,
    ann_threshold: int = gallery.ANN_THRESHOLD,
    memory_budget: int = tuning.DEFAULT_BUDGET,
    target_recall: float = tuning.TARGET_RECALL,
    overwrite: bool = False,
    backend: str = "auto",
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Index `source` into the gallery folder `out`; returns its manifest.

    `model` is a loaded model, or a name, Hub id or folder to load with `backend`. `on_progress`
    is called with (images done, images in all) after every chunk, and once at the start. Galleries
    of `ann_threshold` rows or more get the fastest approximate index whose memory fits
    `memory_budget` (bytes) and whose recall@10 on held-out rows reaches `target_recall`.
    """
    if engine not in ENGINES:
        raise KoCLIPError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
    if dtype not in gallery.DTYPES:
        raise KoCLIPError(f"unknown dtype {dtype!r}; choose {' or '.join(gallery.DTYPES)}")
    if batch_size < 1:
        raise KoCLIPError(f"batch size must be at least 1, got {batch_size}")
    if isinstance(model, (str, os.PathLike)):
        model_ref, model = str(model), load(model, backend)
    else:  # what a Ray worker loads to get the same model
        model_ref = model.name if model.info is not None else str(model.directory)
        backend = model.backend.name
    description = source.describe()
    identity = {
        "format_version": gallery.FORMAT_VERSION,
        "model": model.name,
        "revision": model.revision,
        "source": description,
    }
    keys = source.keys()
    if not keys:
        raise KoCLIPError(f"{_describe_source(description)} holds no images to index")
    final = Path(out)
    gallery.recover(final)
    if (final / gallery.MANIFEST).exists():
        if not overwrite:
            raise gallery.occupied(final)
        # Built beside the old gallery, which stays searchable until the new one is complete.
        out = staged(final)
        if (out / gallery.MANIFEST).exists() or not (out / PARTIAL).is_dir():
            # Not a run to resume: a gallery a crash kept from the swap (new or, swapped out, old), or
            # what is left of one half deleted.
            remove(out)
    job = Job.start(out, keys, batch_size, identity)
    pending = job.pending()
    done = len(job.keys) - sum(job.chunk_length(i) for i in pending)
    bar = _ReportingBar(
        total=len(job.keys), initial=done, unit="img", desc="indexing", disable=not progress, report=on_progress
    )
    if on_progress is not None:
        on_progress(done, len(job.keys))
    # Every image is resized to one shape: zeros of it stand in for unreadable ones.
    pixel_shape = model.preprocess([Image.new("RGB", (8, 8))]).shape[1:]
    decoder = Decoder(source, model.image_transform, pixel_shape, not domain.trained_on_photos(model))
    with bar:
        if engine == "ray":
            from koclip.search import ray_engine

            ray_engine.run(job, pending, decoder, model_ref, backend, workers, bar)
        else:
            _encode_locally(job, pending, decoder, model, bar)
    model_path = str(Path(model_ref).resolve()) if Path(model_ref).is_dir() else None
    log = (lambda message: print(message, file=sys.stderr, flush=True)) if progress else (lambda message: None)
    manifest = job.finish(model, dtype, description, ann_threshold, model_path, memory_budget, target_recall, log)
    if job.out != final:
        replace_folder(job.out, final)
    return manifest
