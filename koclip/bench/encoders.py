"""The models a benchmark can score, each through its own library, behind one small interface.

- a koclip model: a registered name (`koclip-base`, `koclip-mini`, ...), a Hub id or a folder (`koclip.load`);
- `hf:NAME_OR_FOLDER`: a transformers dual encoder with `get_text_features` / `get_image_features`
  (CLIPModel, AltCLIP, Chinese-CLIP ...), with its own processor (`AutoModel`, `AutoProcessor`);
- `open_clip:ARCH/PRETRAINED`: an open_clip model (`open-clip-torch`);
- `mclip:NAME`: a Multilingual-CLIP text tower (`multilingual-clip`) with the open_clip image tower it was
  trained against.

A peer whose library is missing is refused with one line saying what to install.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from koclip.errors import KoCLIPError

# M-CLIP's text towers and the image towers (open_clip architecture, pretrained tag) each was distilled against.
MCLIP_IMAGE_TOWERS = {
    "M-CLIP/XLM-Roberta-Large-Vit-B-32": ("ViT-B-32", "openai"),
    "M-CLIP/XLM-Roberta-Large-Vit-L-14": ("ViT-L-14", "openai"),
    "M-CLIP/XLM-Roberta-Large-Vit-B-16Plus": ("ViT-B-16-plus-240", "laion400m_e32"),
    "M-CLIP/LABSE-Vit-L-14": ("ViT-L-14", "openai"),
}


class Encoder(Protocol):
    """What a benchmark needs of a model: a name, the revision of its weights, and L2-normalised
    float32 embeddings of texts and of PIL images, one row each."""

    name: str
    revision: str

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 (len(texts), dim) embeddings of the texts."""
        ...

    def encode_image(self, images: Sequence) -> np.ndarray:
        """L2-normalised float32 (len(images), dim) embeddings of PIL images."""
        ...


def require(module: str, package: str, what: str) -> None:
    """Refuse, with one line naming the package to install, when `module` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise KoCLIPError(f"{what} needs the {package} package, which is not installed: pip install {package}")


def _normalised(features) -> np.ndarray:
    array = features.detach().float().cpu().numpy() if hasattr(features, "detach") else np.asarray(features)
    return (array / np.linalg.norm(array, axis=-1, keepdims=True)).astype(np.float32)


def _rgb(images: Sequence) -> list:
    from koclip.images import open_image

    return [open_image(image) for image in images]


class TransformersEncoder:
    """A transformers dual encoder and its processor, loaded with AutoModel and AutoProcessor."""

    def __init__(self, name: str):
        require("torch", "torch", f"hf:{name}")
        require("transformers", "transformers", f"hf:{name}")
        import torch
        from transformers import AutoModel, AutoProcessor

        self.torch = torch
        try:
            self.model = AutoModel.from_pretrained(name).eval()
            self.processor = AutoProcessor.from_pretrained(name)
        except OSError as exc:  # not a folder, not cached and the Hub unreachable, or no such repository
            raise KoCLIPError(f"cannot load hf:{name} with transformers' AutoModel and AutoProcessor: {exc}") from None
        for method in ("get_text_features", "get_image_features"):
            if not hasattr(self.model, method):
                raise KoCLIPError(
                    f"hf:{name} is a {type(self.model).__name__}, which has no {method}: not a dual encoder"
                )
        self.name = f"hf:{name}"
        commit = getattr(self.model.config, "_commit_hash", None)
        folder = Path(name).expanduser()
        if commit:
            self.revision = commit
        elif folder.is_dir():
            from koclip.hub import revision

            self.revision = revision(folder)
        else:
            self.revision = "unknown"

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 (len(texts), dim) embeddings of the texts."""
        inputs = self.processor(text=list(texts), padding=True, truncation=True, return_tensors="pt")
        inputs = {k: v for k, v in inputs.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        with self.torch.no_grad():
            return _normalised(self.model.get_text_features(**inputs))

    def encode_image(self, images: Sequence) -> np.ndarray:
        """L2-normalised float32 (len(images), dim) embeddings of PIL images."""
        pixels = self.processor(images=_rgb(images), return_tensors="pt")["pixel_values"]
        with self.torch.no_grad():
            return _normalised(self.model.get_image_features(pixel_values=pixels))


class OpenClipEncoder:
    """An open_clip model by architecture and pretrained tag, with its own transform and tokenizer."""

    def __init__(self, spec: str):
        require("open_clip", "open-clip-torch", f"open_clip:{spec}")
        import open_clip
        import torch

        arch, _, pretrained = spec.partition("/")
        self.torch = torch
        self.model, _, self.transform = open_clip.create_model_and_transforms(arch, pretrained=pretrained or None)
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(arch)
        self.name = f"open_clip:{spec}"
        self.revision = pretrained or "untrained"

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 (len(texts), dim) embeddings of the texts."""
        with self.torch.no_grad():
            return _normalised(self.model.encode_text(self.tokenizer(list(texts))))

    def encode_image(self, images: Sequence) -> np.ndarray:
        """L2-normalised float32 (len(images), dim) embeddings of PIL images."""
        pixels = self.torch.stack([self.transform(image) for image in _rgb(images)])
        with self.torch.no_grad():
            return _normalised(self.model.encode_image(pixels))


class MClipEncoder:
    """A Multilingual-CLIP text tower with the open_clip image tower it was trained to match."""

    def __init__(self, name: str):
        require("multilingual_clip", "multilingual-clip", f"mclip:{name}")
        if name not in MCLIP_IMAGE_TOWERS:
            raise KoCLIPError(
                f"mclip:{name} is not an M-CLIP model this knows; they are {', '.join(MCLIP_IMAGE_TOWERS)}"
            )
        arch, pretrained = MCLIP_IMAGE_TOWERS[name]
        self.images = OpenClipEncoder(f"{arch}/{pretrained}")
        import transformers
        from multilingual_clip import pt_multilingual_clip

        self.text_model = pt_multilingual_clip.MultilingualCLIP.from_pretrained(name).eval()
        self.tokenizer = transformers.AutoTokenizer.from_pretrained(name)
        self.name = f"mclip:{name}"
        self.revision = f"{getattr(self.text_model.config, '_commit_hash', None) or 'unknown'}+{pretrained}"

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 (len(texts), dim) embeddings of the texts."""
        with self.images.torch.no_grad():
            return _normalised(self.text_model.forward(list(texts), self.tokenizer))

    def encode_image(self, images: Sequence) -> np.ndarray:
        """L2-normalised float32 (len(images), dim) embeddings of PIL images."""
        return self.images.encode_image(images)


def open_encoder(spec: str, backend: str = "auto") -> Encoder:
    """The model `spec` names (see the module's docstring), ready to encode."""
    kind, _, rest = spec.partition(":")
    if kind == "hf" and rest:
        return TransformersEncoder(rest)
    if kind == "open_clip" and rest:
        return OpenClipEncoder(rest)
    if kind == "mclip" and rest:
        return MClipEncoder(rest)
    import koclip

    return koclip.load(spec, backend=backend)
