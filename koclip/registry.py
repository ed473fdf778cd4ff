"""Named models: where their weights live, which tokenizer goes with them, and the published ones'
architectures (`published_architecture`).

The model code never decides this; a name (or a Hub id) is looked up here first. Preprocessing
follows from the checkpoint itself (`transform.checkpoint_image_transform`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from koclip.errors import UnknownModelError

if TYPE_CHECKING:
    from koclip.models.config import KoCLIPConfig

BUNDLED_DIR = Path(__file__).parent / "assets"
KLUE_TOKENIZER = "klue/roberta-large"  # also the text tower koclip-base and koclip-large start from
CLIP_VISION = "openai/clip-vit-base-patch32"  # the image tower koclip-base starts from
# The prompt the original demo put each label in ("This is {}."): MSCOCO's captions are sentences.
DEFAULT_TEMPLATE = "이것은 {} 이다."


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A registered model: its short name, a description, where its weights are (a Hub repo or a folder shipped with
    koclip), its tokenizer, and what it can be asked about. MODELS holds one per name."""

    name: str
    description: str
    repo_id: str | None = None  # on the Hugging Face Hub
    bundled: str | None = None  # a folder under koclip/assets, shipped with the package
    # Hub id of the tokenizer, used whatever the checkpoint folder holds (the published repos may
    # carry CLIP's English processor files); None: the checkpoint folder holds its own.
    tokenizer: str | None = KLUE_TOKENIZER
    size_note: str = ""
    # Trained on photographs (MSCOCO). False: on generated scenes, so photos mean nothing to it.
    photos: bool = True
    # What the model can read about, when that is narrower than everyday Korean.
    vocabulary: str | None = None
    # The gallery that ships with the app for this model: a folder of the app's embeddings/.
    gallery: str | None = None

    @property
    def path(self) -> Path | None:
        """The shipped checkpoint folder under koclip/assets, or None for a model on the Hub."""
        return BUNDLED_DIR / self.bundled if self.bundled else None


MODELS: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo(
            "koclip-base",
            "klue/roberta-large + CLIP ViT-B/32, fine-tuned on MSCOCO with Korean captions",
            repo_id="koclip/koclip-base",
            size_note="about 1.7 GB",
        ),
        ModelInfo(
            "koclip-large",
            "klue/roberta-large + ViT-L/16, fine-tuned on MSCOCO with Korean captions",
            repo_id="koclip/koclip-large",
            size_note="about 2.6 GB",
        ),
        ModelInfo(
            "koclip-base-pt",
            "koclip-base exported to PyTorch (VisionTextDualEncoderModel)",
            repo_id="koclip/koclip-base-pt",
            size_note="about 1.7 GB",
        ),
        ModelInfo(
            "koclip-mini",
            "a tiny KoCLIP trained on generated scenes of coloured shapes, not on photos; it ships with koclip",
            bundled="koclip-mini",
            tokenizer=None,
            size_note="a few MB, ships with koclip",
            photos=False,
            vocabulary="shapes and colours only, such as 빨간 원 or 파란 삼각형",
            gallery="koclip-mini-scenes",
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


def published_architecture(name: str) -> KoCLIPConfig:
    """The shapes of a published model, as its config.json gives them: klue/roberta-large's text
    tower with CLIP ViT-B/32 (koclip-base) or ViT-L/16 at 224 pixels (koclip-large)."""
    # imported here: `import koclip` (the CLI's start) reads this module, and needs no configs
    from koclip.models.config import POSITIONS_FROM_ZERO, ClipVisionConfig, KoCLIPConfig, RobertaConfig, VitConfig

    text = RobertaConfig(
        vocab_size=32000,
        hidden_size=1024,
        num_hidden_layers=24,
        num_attention_heads=16,
        intermediate_size=4096,
        max_position_embeddings=514,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
    )
    visions = {
        "koclip-base": lambda: ClipVisionConfig(),  # the defaults are ViT-B/32 at 224 pixels
        "koclip-large": lambda: VitConfig(
            hidden_size=1024,
            num_hidden_layers=24,
            num_attention_heads=16,
            intermediate_size=4096,
            patch_size=16,
            image_size=224,
        ),
    }
    if name not in visions:
        trained = ' (koclip-mini ships trained: koclip.load("koclip-mini"))' if name == "koclip-mini" else ""
        raise UnknownModelError(f"no published architecture named {name!r}; choose {' or '.join(visions)}{trained}")
    return KoCLIPConfig(text, visions[name](), projection_dim=512, text_positions=POSITIONS_FROM_ZERO)
