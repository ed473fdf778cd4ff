"""Parameter conversion between the Flax tree and a PyTorch state dict.

Both models use the same module names (transformers keeps its Flax and PyTorch towers aligned,
and koclip's own modules follow suit), so a conversion only renames leaves and transposes:
Dense `kernel` (in, out) <-> Linear `weight` (out, in); Conv `kernel` HWIO <-> `weight` OIHW;
LayerNorm `scale` <-> `weight`; Embed `embedding` <-> `weight`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from koclip.errors import KoCLIPError

_RENAMED = {"kernel": "weight", "scale": "weight", "embedding": "weight"}


def _torch_key(path: tuple[str, ...]) -> str:
    return ".".join(path[:-1] + (_RENAMED.get(path[-1], path[-1]),))


# Axis orders from the Flax layout to the PyTorch one, and back, for kernels of each rank.
_TO_TORCH = {2: (1, 0), 4: (3, 2, 0, 1)}
_TO_FLAX = {2: (1, 0), 4: (2, 3, 1, 0)}


def _relayout(leaf: str, array: np.ndarray, axes: dict[int, tuple[int, ...]]) -> np.ndarray:
    return array.transpose(axes[array.ndim]) if leaf == "kernel" and array.ndim in axes else array


def flax_to_torch(params: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A Flax parameter tree as a flat PyTorch state dict with TorchDualEncoder's keys, each array laid out as
    PyTorch's layers want it (Dense kernels transposed, Conv kernels HWIO as OIHW), contiguous; a 0-d leaf
    (the logit scale) stays 0-d."""
    out = {}
    for path, value in flatten_dict(params).items():
        array = _relayout(path[-1], np.asarray(value), _TO_TORCH)
        out[_torch_key(path)] = np.ascontiguousarray(array).reshape(array.shape)  # keeps a 0-d leaf 0-d
    return out


def torch_to_flax(state_dict: Mapping[str, np.ndarray], template: Mapping[str, Any]) -> dict:
    """Fill `template` (a tree of shapes, from `model.param_shapes`) from a PyTorch state dict."""
    out, missing = {}, []
    for path, spec in flatten_dict(template).items():
        key = _torch_key(path)
        if key not in state_dict:
            missing.append(key)
            continue
        array = _relayout(path[-1], np.asarray(state_dict[key], dtype=np.float32), _TO_FLAX)
        if array.shape != tuple(spec.shape):
            raise KoCLIPError(f"weight {key} has shape {array.shape}, the config expects {tuple(spec.shape)}")
        out[path] = array
    if missing:
        raise KoCLIPError(
            f"the checkpoint lacks {len(missing)} weights the config needs, e.g. {', '.join(missing[:3])}"
        )
    return unflatten_dict(out)
