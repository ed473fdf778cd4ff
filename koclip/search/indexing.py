"""Building galleries from an image folder, a Hugging Face dataset, or generated scenes.

Inputs are taken in a fixed order (sorted paths, dataset rows, scene numbers) and cut into
chunks of `batch_size`. Each finished chunk is saved under `OUT/.partial/`, so a run that stops
resumes at the first unfinished chunk. The gallery files are assembled at the end and
`manifest.json` is written last: until then, `Gallery.open` refuses the folder. A gallery that
replaces another (an overwrite, or an append: the old gallery grown by the inputs it lacks) is
built beside it, in a hidden folder, and swapped in once complete.
"""

from __future__ import annotations

import hashlib
import json
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
from koclip.errors import GalleryError, KoCLIPError
from koclip.search import gallery, jobs, tuning
from koclip.search.jobs import PARTIAL, Decoder, Job, encode, remove
from koclip.search.sources import Source  # what build takes

ENGINES = ("local", "ray")


def _describe_source(description: dict[str, Any]) -> str:
    details = {k: v for k, v in description.items() if k != "kind" and v is not None}
    return f"the {description['kind']} " + ", ".join(f"{k} {v}" for k, v in details.items())


# Of what a source's description records, what may differ between the source of a gallery and one appended to it:
# how many inputs it has (scenes) and their captions (a folder's metadata.jsonl).
GROWING = ("n", "captions")


def check_appendable(out: Path, dtype: str | None = None) -> str:
    """Refuse, before a model is loaded, an append to `out` that cannot be: no finished gallery there, a damaged
    manifest, a `dtype` other than the gallery's, or an index tuning it cannot follow. Returns the gallery's dtype.
    """
    gallery.recover(out)
    if not (out / gallery.MANIFEST).is_file():
        unfinished = " (its indexing has not finished)" if (out / PARTIAL).is_dir() else ""
        raise GalleryError(
            f"{out} holds no gallery to append to{unfinished}; run `python -m koclip index` without --append "
            "to build one there"
        )
    manifest = gallery.read_manifest(out)
    if dtype is not None and dtype != manifest["dtype"]:
        raise GalleryError(
            f"{out} stores {manifest['dtype']} vectors, not {dtype}; append with --dtype {manifest['dtype']} "
            "(or leave --dtype out), or re-index it with --overwrite"
        )
    tuning.tuned_count(manifest)
    return manifest["dtype"]


def _open_base(out: Path, model: KoCLIP, description: dict[str, Any]) -> gallery.Gallery:
    """The gallery at `out`, opened with every check, to be appended to from the source `description` with
    `model`; GalleryError when it is damaged, was made with another model or revision, or from another source."""
    try:
        base = gallery.Gallery.open(out)
    except GalleryError as exc:
        raise GalleryError(f"cannot append: {exc}") from None
    gallery.check_made_with(model, base)
    recorded = base.manifest.get("source")
    if not isinstance(recorded, dict) or "kind" not in recorded:
        raise GalleryError(
            f"{out} records no source, so which inputs it holds is unknown; re-index it with --overwrite"
        )

    def origin(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in GROWING}

    if origin(recorded) != origin(description):
        raise GalleryError(
            f"{out} was indexed from {_describe_source(recorded)}, not {_describe_source(description)}: inputs are "
            "matched by their key (a path in the folder, a row or scene number), so --append takes only the "
            "gallery's own source; index another source into another --out"
        )
    return base


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
    dtype: str | None = None,
    engine: str = "local",
    workers: int = 1,
    ann_threshold: int = gallery.ANN_THRESHOLD,
    memory_budget: int = tuning.DEFAULT_BUDGET,
    target_recall: float = tuning.TARGET_RECALL,
    overwrite: bool = False,
    append: bool = False,
    backend: str = "auto",
    progress: bool = True,
    on_progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Index `source` into the gallery folder `out`; returns its manifest.

    `model` is a loaded model, or a name, Hub id or folder to load with `backend`. `on_progress`
    is called with (images done, images in all) after every chunk, and once at the start. Galleries
    of `ann_threshold` rows or more get the fastest approximate index whose memory fits
    `memory_budget` (bytes) and whose recall@10 on held-out rows reaches `target_recall`. `dtype` is
    float32 unless given (with `append`, the gallery's).

    With `append`, `out` must hold a gallery made with the same model and dtype from the same source
    (`check_appendable`); only the inputs it does not hold (by their key, as its rows record it) are
    encoded, and the gallery is replaced by itself grown: its rows first and unchanged, the new ones
    after (see `jobs.Job.finish` and, for the index, `jobs.search_index`). Every refusal comes before
    any encoding. The manifest returned tells in `appended` how many rows were added and how many
    inputs were there already; when none is new, the gallery is left as it is.
    """
    if engine not in ENGINES:
        raise KoCLIPError(f"unknown engine {engine!r}; choose {' or '.join(ENGINES)}")
    if dtype is not None and dtype not in gallery.DTYPES:
        raise KoCLIPError(f"unknown dtype {dtype!r}; choose {' or '.join(gallery.DTYPES)}")
    if batch_size < 1:
        raise KoCLIPError(f"batch size must be at least 1, got {batch_size}")
    final = Path(out)
    if append:
        if overwrite:
            raise KoCLIPError("--append adds to the gallery and --overwrite replaces it; pass one of them")
        dtype = check_appendable(final, dtype)
    dtype = dtype or "float32"
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
    base = _open_base(final, model, description) if append else None
    keys = source.keys()
    if not keys:
        raise KoCLIPError(f"{_describe_source(description)} holds no images to index")
    log = (lambda message: print(message, file=sys.stderr, flush=True)) if progress else (lambda message: None)
    first = already = 0
    if base is not None:
        held = {row["source"] for row in base.metadata}
        new = [key for key in keys if key not in held]
        already = len(keys) - len(new)
        log(f"{already:,} of the {len(keys):,} images are in {final} already: skipped")
        if not new:
            return {**base.manifest, "appended": {"added": 0, "already_held": already}}
        # An interrupted append to this very gallery resumes (its thumbnails numbered from the same `first`); one to
        # a gallery since changed starts over.
        text = json.dumps(base.manifest, sort_keys=True, ensure_ascii=False)
        identity["append_to"] = hashlib.sha256(text.encode()).hexdigest()[:16]
        keys, first = new, jobs.next_position(base)
    gallery.recover(final)
    if (final / gallery.MANIFEST).exists():
        if not (overwrite or append):
            raise gallery.occupied(final)
        # Built beside the old gallery, which stays searchable until the new one is complete.
        out = staged(final)
        if (out / gallery.MANIFEST).exists() or not (out / PARTIAL).is_dir():
            # Not a run to resume: a gallery a crash kept from the swap (new or, swapped out, old), or
            # what is left of one half deleted.
            remove(out)
    job = Job.start(out, keys, batch_size, identity, first)
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
    manifest = job.finish(
        model, dtype, description, ann_threshold, model_path, memory_budget, target_recall, log, base, already
    )
    if job.out != final:
        replace_folder(job.out, final)
    return manifest
