"""Named models: where their weights live and which preprocessing goes with them.

The model code never decides this; a name (or a Hub id) is looked up here first.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

BUNDLED_DIR = Path(__file__).parent / "assets"
KLUE_TOKENIZER = "klue/roberta-large"


@dataclasses.dataclass(frozen=True)
class ImageProcessorSpec:
    """`clip`: resize the short side, centre-crop, CLIP mean/std. `vit`: resize to a square, mean/std 0.5."""

    kind: str
    size: int


CLIP_224 = ImageProcessorSpec("clip", 224)
VIT_224 = ImageProcessorSpec("vit", 224)


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    image_processor: ImageProcessorSpec
    repo_id: str | None = None  # on the Hugging Face Hub
    bundled: str | None = None  # a folder under koclip/assets, shipped with the package
    tokenizer: str | None = KLUE_TOKENIZER  # Hub id; None: the checkpoint folder holds its own
    size_note: str = ""

    @property
    def path(self) -> Path | None:
        return BUNDLED_DIR / self.bundled if self.bundled else None


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            "koclip-base",
            "klue/roberta-large + CLIP ViT-B/32, fine-tuned on MSCOCO with Korean captions",
            CLIP_224,
            repo_id="koclip/koclip-base",
            size_note="about 1.5 GB",
        ),
        ModelInfo(
            "koclip-large",
            "klue/roberta-large + ViT-L/16, fine-tuned on MSCOCO with Korean captions",
            VIT_224,
            repo_id="koclip/koclip-large",
            size_note="about 1.5 GB",
        ),
        ModelInfo(
            "koclip-base-pt",
            "koclip-base exported to PyTorch (VisionTextDualEncoderModel)",
            CLIP_224,
            repo_id="koclip/koclip-base-pt",
            size_note="about 1.5 GB",
        ),
        ModelInfo(
            "koclip-mini",
            "a tiny KoCLIP trained on generated scenes of coloured shapes, not photos; works offline",
            ImageProcessorSpec("vit", 64),
            bundled="koclip-mini",
            tokenizer=None,
            size_note="a few MB, ships with koclip",
        ),
    )
}

# The names a user picks from; koclip-base-pt is reachable by its Hub id or name but not listed.
DEMO_MODELS = ("koclip-base", "koclip-large", "koclip-mini")


def lookup(name_or_repo: str) -> ModelInfo | None:
    """A registered model by short name or by Hub id."""
    if name_or_repo in MODELS:
        return MODELS[name_or_repo]
    return next((m for m in MODELS.values() if m.repo_id == name_or_repo), None)
