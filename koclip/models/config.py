"""Model configuration: a text tower, a vision tower and a shared projection.

One config class reads every format KoCLIP meets: the published `hybrid-clip` checkpoints,
transformers' `vision-text-dual-encoder` (the PyTorch export), and koclip's own `koclip`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from koclip.errors import KoCLIPError

# The `model_type` strings each format may use for its towers.
CLIP_VISION_TYPES = ("clip", "clip_vision_model")
CONV_TYPE = "koclip_conv"
KNOWN_FORMATS = ("hybrid-clip", "vision-text-dual-encoder", "koclip")
# The published models' formats: trained by the original FlaxHybridCLIP code, whose conventions
# (text positions from 0, the CLIP training transform for any vision tower) they keep.
PUBLISHED_FORMATS = ("hybrid-clip", "vision-text-dual-encoder")

# How text position ids are numbered. "from_zero": 0, 1, 2, ... for every row, pads included, as
# FlaxHybridCLIP did when no position ids were given (the published models were trained so).
# "roberta": padding_idx + 1 + index on tokens and padding_idx on pads, as RoBERTa was pretrained.
POSITIONS_FROM_ZERO = "from_zero"
POSITIONS_ROBERTA = "roberta"
TEXT_POSITIONS = (POSITIONS_FROM_ZERO, POSITIONS_ROBERTA)


@dataclasses.dataclass
class TowerConfig:
    """A tower's shapes, read from and written to the same dict as transformers' config of that
    tower (unknown keys are ignored), so configs stay readable by both."""

    model_type = ""

    def to_dict(self) -> dict[str, Any]:
        """The fields as a dict, with model_type: a tower as config.json stores it."""
        return {**dataclasses.asdict(self), "model_type": self.model_type}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        """The config from a tower's dict in config.json; keys that are not fields are ignored."""
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in fields})


@dataclasses.dataclass
class RobertaConfig(TowerConfig):
    """A RoBERTa text tower; the defaults are transformers' `RobertaConfig` defaults."""

    model_type = "roberta"
    vocab_size: int = 50265
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    type_vocab_size: int = 2
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    pad_token_id: int = 1
    bos_token_id: int = 0
    eos_token_id: int = 2


@dataclasses.dataclass
class ClipVisionConfig(TowerConfig):
    """A CLIP vision tower; the defaults are transformers' `CLIPVisionConfig` defaults (ViT-B/32 at 224 pixels)."""

    model_type = "clip_vision_model"
    hidden_size: int = 768
    intermediate_size: int = 3072
    projection_dim: int = 512
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    num_channels: int = 3
    image_size: int = 224
    patch_size: int = 32
    hidden_act: str = "quick_gelu"
    layer_norm_eps: float = 1e-5
    attention_dropout: float = 0.0
    initializer_range: float = 0.02
    initializer_factor: float = 1.0


@dataclasses.dataclass
class VitConfig(TowerConfig):
    """A ViT image tower; the defaults are transformers' `ViTConfig` defaults (ViT-B/16 at 224 pixels)."""

    model_type = "vit"
    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.0
    attention_probs_dropout_prob: float = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-12
    image_size: int = 224
    patch_size: int = 16
    num_channels: int = 3
    qkv_bias: bool = True
    encoder_stride: int = 16
    pooler_output_size: int | None = None  # None: hidden_size
    pooler_act: str = "tanh"


@dataclasses.dataclass
class ConvTowerConfig(TowerConfig):
    """A small convolutional image tower, for models trained on a CPU (koclip-mini)."""

    model_type = CONV_TYPE
    image_size: int = 64
    num_channels: int = 3
    stem_patch: int = 4
    widths: tuple[int, ...] = (32, 64, 128)
    hidden_size: int = 128
    # Width of a per-position projection applied before pooling (0: none). Pooling channels that
    # mix a position's features lets one unit stand for "red AND square here", not red somewhere
    # and square somewhere else.
    local_size: int = 0
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        self.widths = tuple(self.widths)

    def to_dict(self) -> dict[str, Any]:
        """`TowerConfig.to_dict`, with `widths` as a list for JSON."""
        return {**super().to_dict(), "widths": list(self.widths)}


VisionConfig = ClipVisionConfig | VitConfig | ConvTowerConfig


def text_config_from_dict(d: dict[str, Any]) -> RobertaConfig:
    """The text tower's config from config.json's text_config; KoCLIPError unless it is a RoBERTa (or BERT) tower."""
    model_type = d.get("model_type", "roberta")
    if model_type not in ("roberta", "bert"):
        raise KoCLIPError(f"unsupported text tower type {model_type!r}: KoCLIP uses RoBERTa")
    return RobertaConfig.from_dict(d)


def vision_config_from_dict(d: dict[str, Any]) -> VisionConfig:
    """The vision tower's config from config.json's vision_config, by its model_type: CLIP vision (a full CLIP
    config's nested vision_config included), ViT or koclip's CNN; KoCLIPError for any other type."""
    model_type = d.get("model_type")
    if model_type in CLIP_VISION_TYPES:
        # A full CLIP config nests its vision part; a vision-only config is flat.
        return ClipVisionConfig.from_dict(d.get("vision_config", d))
    if model_type == "vit":
        return VitConfig.from_dict(d)
    if model_type == CONV_TYPE:
        return ConvTowerConfig.from_dict(d)
    raise KoCLIPError(
        f"unsupported vision tower type {model_type!r}; expected one of "
        f"{', '.join(CLIP_VISION_TYPES + ('vit', CONV_TYPE))}"
    )


@dataclasses.dataclass
class KoCLIPConfig:
    """A dual encoder's configuration, as config.json holds it: the text and vision towers' configs, the projection
    width, the logit scale's initial value, and how text is pooled and its positions numbered. Checkpoint and KoCLIP
    hold one."""

    text_config: RobertaConfig
    vision_config: VisionConfig
    projection_dim: int = 512
    logit_scale_init_value: float = 2.6592
    # "pooler": RoBERTa's pooled [CLS] output, as the published models use;
    # "mean": the mean over tokens, which lets a tower trained from scratch start learning at once.
    text_pooling: str = "pooler"
    text_positions: str = POSITIONS_ROBERTA

    def __post_init__(self):
        if self.text_positions not in TEXT_POSITIONS:
            raise KoCLIPError(
                f"unknown text_positions {self.text_positions!r}; expected one of {', '.join(TEXT_POSITIONS)}"
            )

    def position_ids(self, attention_mask):
        """Text position ids in this checkpoint's convention (see TEXT_POSITIONS), for a (batch, length)
        integer mask. Written with the operations NumPy, JAX and PyTorch arrays share, so the Flax
        towers and the PyTorch twin number positions by this one rule."""
        if self.text_positions == POSITIONS_FROM_ZERO:
            return (attention_mask * 0 + 1).cumsum(1) - 1
        return attention_mask.cumsum(1) * attention_mask + self.text_config.pad_token_id

    def pool_text(self, hidden, pooled, attention_mask):
        """The text tower's output that is projected: RoBERTa's pooled output, or the mean of the
        `hidden` states over the tokens the (batch, length) mask keeps (text_pooling "mean"). Any of
        NumPy, JAX or PyTorch arrays, as `position_ids`."""
        if self.text_pooling != "mean":
            return pooled
        weights = attention_mask[..., None] * (hidden[..., :1] * 0 + 1)  # the mask in hidden's dtype
        return (hidden * weights).sum(1) / weights.sum(1).clip(min=1)

    @property
    def vision_type(self) -> str:
        """Which vision tower the config holds: "clip", "vit" or CONV_TYPE."""
        if isinstance(self.vision_config, ClipVisionConfig):
            return "clip"
        if isinstance(self.vision_config, VitConfig):
            return "vit"
        return CONV_TYPE

    @property
    def image_size(self) -> int:
        """The side, in pixels, of the square images the vision tower takes."""
        return int(self.vision_config.image_size)

    @property
    def max_text_length(self) -> int:
        """The most tokens a text may have, special tokens included: the position table less the positions padding
        takes."""
        # RoBERTa's position ids start after padding_idx, so two positions are never used; the same
        # bound holds for positions from zero, which keeps one tokenizer limit for both conventions.
        return int(self.text_config.max_position_embeddings - self.text_config.pad_token_id - 1)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> KoCLIPConfig:
        """The config from config.json's dict; KoCLIPError for a model_type koclip does not read or a tower it does
        not run."""
        model_type = d.get("model_type")
        if model_type not in KNOWN_FORMATS:
            raise KoCLIPError(f"config.json has model_type {model_type!r}; KoCLIP reads {', '.join(KNOWN_FORMATS)}")
        return cls(
            text_config=text_config_from_dict(d["text_config"]),
            vision_config=vision_config_from_dict(d["vision_config"]),
            projection_dim=int(d.get("projection_dim", 512)),
            logit_scale_init_value=float(d.get("logit_scale_init_value", 2.6592)),
            text_pooling=d.get("text_pooling", "pooler"),
            # koclip's own format names its convention; older koclip folders (koclip-mini) used RoBERTa's.
            # The published formats were trained from zero; koclip's transformers export names its own.
            text_positions=d.get(
                "text_positions", POSITIONS_FROM_ZERO if model_type in PUBLISHED_FORMATS else POSITIONS_ROBERTA
            ),
        )

    def to_dict(self) -> dict[str, Any]:
        """koclip's own format; the sub-configs stay readable by transformers."""
        return {
            "model_type": "koclip",
            "projection_dim": self.projection_dim,
            "logit_scale_init_value": self.logit_scale_init_value,
            "text_pooling": self.text_pooling,
            "text_positions": self.text_positions,
            "text_config": self.text_config.to_dict(),
            "vision_config": self.vision_config.to_dict(),
        }
