"""Indexing as a Ray Data pipeline, for collections too large for one process.

keys -> decode (tasks: open, thumbnail, resize) -> encode (actors, each holding one model)
-> the driver, which saves each chunk as soon as all its rows are back. The result is the same
gallery the local engine writes. Ray is an optional extra: `pip install -r requirements-ray.txt`.
Without RAY_ADDRESS set, a local Ray runtime is started on this machine.
"""

from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np
from tqdm import tqdm

from koclip.errors import KoCLIPError
from koclip.search.jobs import Decoder, Job, encode


def _import_ray():
    try:
        import ray
        import ray.data
    except ImportError:
        raise KoCLIPError(
            "the Ray engine needs Ray, which is not installed: pip install -r requirements-ray.txt "
            "(or use the default --engine local)"
        ) from None
    return ray


class Encoder:
    """A Ray actor's model: loaded once per actor, then used for every batch it is given."""

    def __init__(self, model_ref: str, backend: str):
        from koclip.api import load

        self.model = load(model_ref, backend)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch["vector"] = encode(self.model, batch)
        del batch["pixels"]  # the driver needs only the vectors
        return batch


def run(job: Job, pending: list[int], decoder: Decoder, model_ref: str, backend: str, workers: int, bar: tqdm) -> None:
    """Encode the `pending` chunks of `job` with `workers` model actors, committing each chunk."""
    items = []
    for index in pending:
        chunk = job.chunk(index)
        items += [{"position": p, "key": k} for p, k in zip(chunk["position"].tolist(), chunk["key"].tolist())]
    if not items:
        return
    ray = _import_ray()
    if not ray.is_initialized():
        with warnings.catch_warnings():
            # Ray starts its processes with fork+exec, which JAX's warning about fork does not tell apart.
            warnings.filterwarnings("ignore", "os.fork", RuntimeWarning)
            ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False  # the caller shows one bar
    rows = (
        ray.data.from_items(items, override_num_blocks=len(pending))
        # Half a CPU: decoding is light, and with resources unlike the actors' Ray keeps the
        # stages apart, so images are decoded while the actors encode.
        .map_batches(decoder, batch_size=job.batch_size, batch_format="numpy", num_cpus=0.5)
        .map_batches(
            Encoder,
            fn_constructor_args=(model_ref, backend),
            batch_size=job.batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_cpus=1,
        )
    )
    # Rows come back in any grouping; a chunk is committed once all its rows have arrived.
    parts: dict[int, list[dict[str, np.ndarray]]] = defaultdict(list)
    for batch in rows.iter_batches(batch_size=None, batch_format="numpy"):
        chunk_of = job.chunk_of(batch["position"])
        for index in np.unique(chunk_of).tolist():
            parts[index].append({c: v[chunk_of == index] for c, v in batch.items()})
            if sum(len(p["position"]) for p in parts[index]) == job.chunk_length(index):
                done = parts.pop(index)
                merged = {c: np.concatenate([p[c] for p in done]) for c in batch}
                order = np.argsort(merged["position"])
                job.commit(index, {c: v[order] for c, v in merged.items()})
        bar.update(len(batch["position"]))
