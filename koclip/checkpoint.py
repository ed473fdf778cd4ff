"""Reading and writing checkpoint folders.

Read: `config.json` in any format `KoCLIPConfig` knows, with Flax weights (`flax_model.msgpack`)
or PyTorch weights (`model.safetensors`, `pytorch_model.bin`, sharded or not).
Write: koclip's own format, atomically, with the weights as flax_model.msgpack or, with
`safe_serialization`, as model.safetensors in PyTorch's layout (what `read` takes back).
Nothing here unpickles: msgpack and safetensors are plain
data, and `.bin` files are read with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization
from flax.traverse_util import flatten_dict, unflatten_dict

from koclip.atomic import replace_folder
from koclip.errors import KoCLIPError, ModelUnavailableError
from koclip.models.config import KoCLIPConfig

FLAX_WEIGHTS = "flax_model.msgpack"
SAFE_WEIGHTS = "model.safetensors"


@dataclasses.dataclass
class Checkpoint:
    """A checkpoint folder read into memory: its config, its format (config.json's model_type) and its weights,
    either as a Flax parameter tree or as a PyTorch state dict of NumPy arrays."""

    directory: Path
    config: KoCLIPConfig
    format: str
    flax_params: dict | None = None  # as saved, when the weights are Flax
    torch_state: dict[str, np.ndarray] | None = None  # as saved, when the weights are PyTorch


def _as_float32(tree: dict) -> dict:
    return unflatten_dict({k: np.asarray(v, dtype=np.float32) for k, v in flatten_dict(tree).items()})


def _read_msgpack(path: Path) -> dict:
    params = serialization.msgpack_restore(path.read_bytes())
    if set(params) == {"params"}:
        params = params["params"]
    return _as_float32(params)


def _read_torch_file(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".safetensors":  # plain data: read without torch, which the app does not need
        from safetensors.numpy import load_file

        return {k: np.asarray(v, dtype=np.float32) for k, v in load_file(str(path)).items()}
    try:
        import torch
    except ImportError:
        raise ModelUnavailableError(
            f"{path} holds PyTorch weights, and reading them needs PyTorch: pip install torch "
            "(the CPU build: pip install torch --index-url https://download.pytorch.org/whl/cpu)"
        ) from None
    tensors = torch.load(path, map_location="cpu", weights_only=True)
    return {k: v.float().numpy() for k, v in tensors.items()}


def _torch_weight_files(directory: Path) -> list[Path]:
    for index_name, single in (
        ("model.safetensors.index.json", "model.safetensors"),
        ("pytorch_model.bin.index.json", "pytorch_model.bin"),
    ):
        index = directory / index_name
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return [directory / s for s in shards]
        if (directory / single).is_file():
            return [directory / single]
    return []


def read(directory: Path) -> Checkpoint:
    """The checkpoint in `directory`: its config.json and its Flax or PyTorch weights. ModelUnavailableError when
    either is missing; KoCLIPError when one cannot be read."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise ModelUnavailableError(f"{directory} has no config.json, so it is not a checkpoint folder")
    try:
        raw = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KoCLIPError(f"{config_path} is not valid JSON: {exc}") from None
    config = KoCLIPConfig.from_dict(raw)
    ckpt = Checkpoint(directory, config, raw["model_type"])
    try:
        if (directory / FLAX_WEIGHTS).is_file():
            ckpt.flax_params = _read_msgpack(directory / FLAX_WEIGHTS)
        elif files := _torch_weight_files(directory):
            ckpt.torch_state = {k: v for f in files for k, v in _read_torch_file(f).items()}
        else:
            raise ModelUnavailableError(
                f"{directory} has a config.json but no weights ({FLAX_WEIGHTS}, model.safetensors or pytorch_model.bin)"
            )
    except (ValueError, OSError, RuntimeError, KeyError) as exc:
        raise KoCLIPError(f"the weights in {directory} could not be read ({type(exc).__name__}: {exc})") from None
    return ckpt


def save(
    directory: str | os.PathLike,
    config: KoCLIPConfig,
    params: dict,
    tokenizer: Any = None,
    image_transform: Any = None,
    extra_files: dict[str, bytes] | None = None,
    safe_serialization: bool = False,
) -> Path:
    """Write koclip's format: config.json, the weights (flax_model.msgpack, or model.safetensors
    with `safe_serialization`), the tokenizer and the image preprocessing (preprocessor_config.json),
    all or nothing.

    Files go into a temporary sibling folder that is renamed into place only once complete.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; a saved model should be readable like any folder
    try:
        (tmp / "config.json").write_text(json.dumps(config.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        params = _as_float32(serialization.to_state_dict(params))
        if safe_serialization:
            from safetensors.numpy import save_file

            from koclip.models import convert

            save_file(convert.flax_to_torch(params), str(tmp / SAFE_WEIGHTS), metadata={"format": "pt"})
        else:
            (tmp / FLAX_WEIGHTS).write_bytes(serialization.msgpack_serialize(params))
        if tokenizer is not None:
            tokenizer.save(tmp)
        if image_transform is not None:
            image_transform.save(tmp)
        for name, data in (extra_files or {}).items():
            (tmp / name).write_bytes(data)
        replace_folder(tmp, directory)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return directory
