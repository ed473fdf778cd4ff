"""Exports of a KoCLIP model for use outside this package.

`to_transformers`: a folder stock transformers loads as `VisionTextDualEncoderModel` with
`VisionTextDualEncoderProcessor` (or `AutoModel` / `AutoProcessor`), that gives the model's own
embeddings with no extra argument. RoBERTa numbers text positions `padding_idx + 1 + index`, while
the published models were trained with positions from 0, so the position-embedding rows are moved
down by `padding_idx + 1`: RoBERTa's numbering then reads the rows training used. The rows past the
last shifted one are the ones no text of at most `max_text_length` tokens reaches.

`to_onnx`: the text tower and the image tower as two ONNX files, with the tokenizer and the image
transform beside them, which `koclip.models.onnx_backend` runs with onnxruntime alone.

Both need PyTorch and transformers (requirements-torch.txt); `to_onnx` also needs `onnx`
(requirements-onnx.txt). This module's own imports are light, so the CLI checks its arguments
with `check_target` before the heavy ones.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from koclip import hub
from koclip.atomic import replace_folder
from koclip.errors import InvalidInputError, KoCLIPError
from koclip.models import onnx_backend
from koclip.models.config import POSITIONS_FROM_ZERO, POSITIONS_ROBERTA, KoCLIPConfig
from koclip.registry import DEFAULT_TEMPLATE, KLUE_TOKENIZER

FORMATS = ("transformers", "onnx")
POSITION_ROWS = "text_model.embeddings.position_embeddings.weight"
ONNX_OPSET = 18


def _needs_torch(what: str):
    try:
        import torch
        import transformers
    except ImportError as exc:
        raise KoCLIPError(
            f"{what} needs PyTorch and transformers, and {exc.name} is not installed: "
            "pip install -r requirements-torch.txt"
        ) from None
    return torch, transformers


def check_transformers_expressible(config: KoCLIPConfig, name: str) -> None:
    """Refuse a model that stock `VisionTextDualEncoderModel` cannot compute, saying why."""
    if config.vision_type not in ("clip", "vit"):
        raise InvalidInputError(
            f"{name} has a {config.vision_type} image tower (koclip's small CNN), which transformers has no "
            "model class for, so it cannot be exported to transformers; export it with --format onnx instead"
        )
    if config.text_pooling != "pooler":
        raise InvalidInputError(
            f"{name} pools its text tower by {config.text_pooling!r}, and VisionTextDualEncoderModel takes "
            "RoBERTa's pooled [CLS] output only, so it cannot be exported to transformers; use --format onnx"
        )


def shift_positions(state: dict[str, np.ndarray], pad_token_id: int) -> dict[str, np.ndarray]:
    """`state` with the position-embedding rows moved down by pad_token_id + 1, so that RoBERTa's
    numbering (pad_token_id + 1 + index) reads the row training used for each index; the first
    pad_token_id + 1 rows (RoBERTa's padding rows, which no token reads) are zeros."""
    rows = state[POSITION_ROWS]
    offset = pad_token_id + 1
    shifted = np.zeros_like(rows)
    shifted[offset:] = rows[: len(rows) - offset]
    return {**state, POSITION_ROWS: shifted}


def _staging(out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)
    return tmp


def check_target(out: Path, overwrite: bool) -> None:
    """Refuse an export target that is a file, or a folder holding files unless `overwrite`."""
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"{out} is a file; give a folder to export into")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise InvalidInputError(f"{out} already holds files; pass --overwrite to replace it, or give a new folder")


def _source(model_name: str):
    """The model (Flax weights, never compiled here) and the folder its tokenizer comes from."""
    from koclip.api import load

    model = load(model_name, backend="flax")
    return model, hub.tokenizer_dir(hub.resolve(model_name))


def _tokenizer(transformers, tokenizer_dir: Path, model, staging: Path):
    """transformers' tokenizer for the model's own: klue's (or the folder's) files as saved; a folder
    with no tokenizer_config.json gets the one koclip reads it as."""
    source = tokenizer_dir
    if not (tokenizer_dir / "tokenizer_config.json").is_file():
        source = staging / "tokenizer"
        model.text_processor.tokenizer.save(source)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(source), do_lower_case=False, strip_accents=False)
    tokenizer.model_max_length = model.max_text_length
    return tokenizer


def _image_processor(transformers, transform):
    """The transformers processor computing `transform` (the crop's rounding cannot be expressed)."""
    settings = {k: v for k, v in transform.to_dict().items() if not k.startswith("koclip_")}
    return getattr(transformers, settings.pop("image_processor_type")).from_dict(settings)


def to_transformers(model_name: str, out: str | os.PathLike, overwrite: bool = False, shift: bool = True) -> Path:
    """Export `model_name` (a name, Hub id or folder) as a stock transformers folder at `out`.

    `shift=False` writes the rows as they are (only to show what the shift fixes). Returns `out`.
    """
    out = Path(out)
    check_target(out, overwrite)
    torch, transformers = _needs_torch("exporting to transformers")
    model, tokenizer_dir = _source(model_name)
    config = model.config
    check_transformers_expressible(config, model_name)
    from transformers.modeling_utils import no_init_weights

    from koclip.models import convert
    from koclip.models.torch_twin import transformers_config

    state = convert.flax_to_torch(model.backend.flax_params())
    positions = config.text_positions
    if positions == POSITIONS_FROM_ZERO and shift:
        state = shift_positions(state, config.text_config.pad_token_id)
        positions = POSITIONS_ROBERTA
    vtde_config = transformers.VisionTextDualEncoderConfig.from_vision_text_configs(
        transformers_config(config.vision_config),
        transformers_config(config.text_config),
        projection_dim=config.projection_dim,
        logit_scale_init_value=float(model.backend.logit_scale),
        text_positions=positions,  # kept in config.json, so koclip reads the export back as it was written
    )
    vtde_config.architectures = ["VisionTextDualEncoderModel"]
    with no_init_weights():
        vtde = transformers.VisionTextDualEncoderModel(vtde_config).eval()
    result = vtde.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=False)
    buffers = {name for name, _ in vtde.named_buffers()}
    missing = [k for k in result.missing_keys if k not in buffers]
    if missing or result.unexpected_keys:
        raise KoCLIPError(
            f"the weights do not fit VisionTextDualEncoderModel: {(missing + result.unexpected_keys)[:3]}"
        )
    staging = _staging(out)
    try:
        vtde.save_pretrained(staging, safe_serialization=True)
        processor = transformers.VisionTextDualEncoderProcessor(
            image_processor=_image_processor(transformers, model.image_transform),
            tokenizer=_tokenizer(transformers, tokenizer_dir, model, staging),
        )
        shutil.rmtree(staging / "tokenizer", ignore_errors=True)
        processor.save_pretrained(staging)
        (staging / "README.md").write_text(model_card(model, model_name, "transformers"), encoding="utf-8")
        replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def to_onnx(model_name: str, out: str | os.PathLike, overwrite: bool = False) -> Path:
    """Export `model_name` (a name, Hub id or folder) as two ONNX graphs at `out`, with its tokenizer,
    image transform and configuration: what `koclip.load(out)` runs with onnxruntime alone. Returns `out`."""
    out = Path(out)
    check_target(out, overwrite)
    torch, _ = _needs_torch("exporting to ONNX")
    try:
        import onnx  # noqa: F401  (torch.onnx writes through it)
    except ImportError:
        raise KoCLIPError(f"exporting to ONNX needs onnx: {onnx_backend.INSTALL}") from None
    from koclip.models import convert
    from koclip.models.torch_twin import TorchDualEncoder

    model, _ = _source(model_name)
    twin = TorchDualEncoder(model.config).eval()
    state = convert.flax_to_torch(model.backend.flax_params())
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, strict=False)

    class Text(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.twin = twin  # a submodule, so its weights are the graph's initialisers

        def forward(self, input_ids, attention_mask):
            return self.twin.encode_text(input_ids, attention_mask)

    class Image(Text):
        def forward(self, pixel_values):
            return self.twin.encode_image(pixel_values)

    length, size = min(16, model.max_text_length), model.config.image_size
    ids = torch.ones((2, length), dtype=torch.long)
    pixels = torch.zeros((2, 3, size, size))
    staging = _staging(out)
    try:
        with torch.no_grad():
            torch.onnx.export(
                Text(),
                (ids, torch.ones_like(ids)),
                str(staging / onnx_backend.TEXT_FILE),
                input_names=["input_ids", "attention_mask"],
                output_names=["text_embeds"],
                dynamic_axes={name: {0: "batch", 1: "sequence"} for name in ("input_ids", "attention_mask")}
                | {"text_embeds": {0: "batch"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
            torch.onnx.export(
                Image(),
                (pixels,),
                str(staging / onnx_backend.IMAGE_FILE),
                input_names=["pixel_values"],
                output_names=["image_embeds"],
                dynamic_axes={"pixel_values": {0: "batch"}, "image_embeds": {0: "batch"}},
                opset_version=ONNX_OPSET,
                dynamo=False,
            )
        model.text_processor.tokenizer.save(staging)
        model.image_transform.save(staging)
        meta = {
            "format": onnx_backend.FORMAT,
            "source": model_name,
            "model_format": model.model_format,
            "logit_scale": float(model.backend.logit_scale),
            "config": model.config.to_dict(),
        }
        (staging / onnx_backend.CONFIG_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False), "utf-8")
        (staging / "README.md").write_text(model_card(model, model_name, "onnx"), encoding="utf-8")
        replace_folder(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def model_card(model, model_name: str, export_format: str) -> str:
    """The Hub model card of an export: metadata header, usage, the conventions it keeps."""
    info = model.info
    repo = info.repo_id if info is not None and info.repo_id else model_name
    text_positions = model.config.text_positions
    header = [
        "---",
        "language: ko",
        "license: apache-2.0",
        "library_name: " + ("transformers" if export_format == "transformers" else "onnx"),
        "pipeline_tag: zero-shot-image-classification",
        "tags:",
        "  - clip",
        "  - koclip",
        "  - vision-text-dual-encoder",
        "base_model:",
        f"  - {KLUE_TOKENIZER}",
        "---",
        "",
    ]
    crop = (
        "The model was trained with torchvision's `CenterCrop`, which rounds the crop's offset into the "
        "margin (half to even); `CLIPImageProcessor` floors it, so on an image whose margin after the resize "
        "is odd (1, 3, 7, … pixels) the processor's crop sits one pixel off the training crop. `koclip.load` "
        "on this folder crops as training did."
        if model.image_transform.crop_offset == "round"
        else "The image processor computes the model's own transform exactly."
    )
    temperature = float(np.exp(model.backend.logit_scale))
    if export_format == "transformers":
        usage = f"""```python
from PIL import Image
from transformers import AutoModel, AutoProcessor

model = AutoModel.from_pretrained("OWNER/NAME")          # a VisionTextDualEncoderModel
processor = AutoProcessor.from_pretrained("OWNER/NAME")  # klue/roberta-large's tokenizer + CLIPImageProcessor
labels = ["고양이", "강아지", "자동차"]
inputs = processor(text=["{DEFAULT_TEMPLATE}".format(label) for label in labels],
                   images=Image.open("cat.jpg"), return_tensors="pt", padding=True)
probs = model(**inputs).logits_per_image.softmax(dim=-1)  # the trained temperature, uncapped
```

transformers' `pipeline("zero-shot-image-classification", model="OWNER/NAME")` runs it too (it logs that
`VisionTextDualEncoderModel` is not in its list of classes, and works); pass
`hypothesis_template="{DEFAULT_TEMPLATE}"`, the prompt the model was served with."""
        positions = (
            f"The position-embedding rows are stored moved down by `padding_idx + 1` "
            f"({model.config.text_config.pad_token_id + 1}), so RoBERTa's own "
            "position numbering reads the rows training used (positions 0, 1, 2, …): no `position_ids` "
            "argument is needed. Texts are read up to "
            f"{model.max_text_length} tokens (the tokenizer's `model_max_length`)."
            if text_positions == POSITIONS_FROM_ZERO
            else f"Text positions are RoBERTa's own; texts are read up to {model.max_text_length} tokens."
        )
    else:
        usage = """```python
import koclip  # pip install koclip's requirements.txt and requirements-onnx.txt; no torch, no jax

model = koclip.load("FOLDER")  # backend="onnx"
model.classify("cat.jpg", ["고양이", "강아지", "자동차"])
```

Or with onnxruntime alone: `text_model.onnx` takes `input_ids` and `attention_mask` (int64, batch ×
length), `vision_model.onnx` takes `pixel_values` (float32, batch × 3 × H × W, NCHW); both return
L2-normalised embeddings. `tokenizer.json` is the tokenizer, `preprocessor_config.json` the image
transform, `koclip_onnx.json` the model's configuration and temperature."""
        positions = (
            f"Text positions are computed inside the text graph; texts are read up to {model.max_text_length} tokens."
        )
    return (
        "\n".join(header)
        + f"""# {repo} ({export_format} export)

KoCLIP: a Korean CLIP, `{KLUE_TOKENIZER}` for text and a {model.config.vision_type.upper()} image tower,
trained contrastively on MSCOCO images with Korean captions. Exported from `{model_name}` by
`python -m koclip export {model_name} OUT --format {export_format}`.

## Usage

{usage}

## Conventions

- Text: {positions} Token types are all zero; the features are the pooled outputs through
  bias-free projections.
- Images: the short side resized to {model.config.image_size} (bicubic), the centre
  {model.config.image_size}×{model.config.image_size} cropped, CLIP's mean and std, for this image tower too. {crop}
- Temperature: `exp(logit_scale)` = {temperature:.4g}, as trained (uncapped).
"""
    )
