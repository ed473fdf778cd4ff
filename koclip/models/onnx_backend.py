"""The dual encoder as two ONNX graphs, run by onnxruntime alone: no PyTorch, no JAX.

A folder written by `python -m koclip export MODEL OUT --format onnx` (`koclip.export.to_onnx`)
holds `text_model.onnx` (int64 `input_ids`, `attention_mask` → L2-normalised embeddings),
`vision_model.onnx` (float32 NCHW `pixel_values` → L2-normalised embeddings), the tokenizer,
`preprocessor_config.json` and `koclip_onnx.json` (the model's config, its temperature and the
format it was exported from). Batch and sequence axes are dynamic, so nothing compiles per shape.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from koclip.errors import KoCLIPError

TEXT_FILE, IMAGE_FILE, CONFIG_FILE = "text_model.onnx", "vision_model.onnx", "koclip_onnx.json"
FORMAT = "koclip-onnx"  # CONFIG_FILE's "format"
INSTALL = "pip install -r requirements-onnx.txt (or pip install onnxruntime==1.32.0)"


def is_export(directory: Path) -> bool:
    """Whether `directory` is an ONNX export (it holds CONFIG_FILE)."""
    return (Path(directory) / CONFIG_FILE).is_file()


def read_config(directory: Path) -> dict:
    """CONFIG_FILE of an export, checked: its format and both graph files."""
    path = Path(directory) / CONFIG_FILE
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KoCLIPError(f"{path} is unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise KoCLIPError(f"{path} is not a koclip ONNX export (its format is not {FORMAT!r})")
    for name in (TEXT_FILE, IMAGE_FILE):
        if not (Path(directory) / name).is_file():
            raise KoCLIPError(f"{directory} lacks {name}; export the model again with --format onnx")
    return meta


class OnnxBackend:
    """The two graphs of an export in onnxruntime sessions on the CPU."""

    name = "onnx"
    compiles = False

    def __init__(self, directory: Path, logit_scale: float):
        try:
            import onnxruntime
        except ImportError:
            raise KoCLIPError(f'backend="onnx" needs onnxruntime, which is not installed: {INSTALL}') from None
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        # Idle worker threads would spin for a while after each call, taking the CPU from whatever
        # runs next in the process (the tokenizer, another backend, the app's server).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        cpu = ["CPUExecutionProvider"]
        self._text = onnxruntime.InferenceSession(str(Path(directory) / TEXT_FILE), options, providers=cpu)
        self._image = onnxruntime.InferenceSession(str(Path(directory) / IMAGE_FILE), options, providers=cpu)
        self.logit_scale = float(logit_scale)

    def encode_text(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """L2-normalised float32 (batch, dim) text embeddings from the text graph."""
        feeds = {"input_ids": input_ids.astype(np.int64), "attention_mask": attention_mask.astype(np.int64)}
        return np.asarray(self._text.run(None, feeds)[0], dtype=np.float32)

    def encode_image(self, pixels_nhwc: np.ndarray) -> np.ndarray:
        """L2-normalised float32 (batch, dim) image embeddings of NHWC pixels, from the image graph."""
        pixels = np.ascontiguousarray(pixels_nhwc.transpose(0, 3, 1, 2), dtype=np.float32)
        return np.asarray(self._image.run(None, {"pixel_values": pixels})[0], dtype=np.float32)

    def flax_params(self) -> dict:
        """Refused: an ONNX folder holds graphs, not weights (KoCLIPError)."""
        raise KoCLIPError("an ONNX export holds graphs, not weights koclip can save; save the model it came from")
