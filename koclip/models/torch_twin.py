"""The PyTorch twin of `model.DualEncoder`, for `backend="torch"`.

Module names mirror the Flax ones, so `convert.flax_to_torch` maps parameters one to one.
"""

from __future__ import annotations

import torch
import transformers
from torch import nn

from koclip.models.config import (
    ClipVisionConfig,
    ConvTowerConfig,
    KoCLIPConfig,
    RobertaConfig,
    VitConfig,
)

# koclip's tower configs and the transformers configs that build the same towers in PyTorch.
TRANSFORMERS_CONFIGS = {
    RobertaConfig: transformers.RobertaConfig,
    ClipVisionConfig: transformers.CLIPVisionConfig,
    VitConfig: transformers.ViTConfig,
}


def transformers_config(config: RobertaConfig | ClipVisionConfig | VitConfig) -> transformers.PretrainedConfig:
    """The transformers config (RobertaConfig, CLIPVisionConfig or ViTConfig) with the fields of koclip's tower
    config."""
    fields = {k: v for k, v in config.to_dict().items() if k != "model_type"}
    return TRANSFORMERS_CONFIGS[type(config)](**fields)


class _ChannelNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of NCHW maps, as Flax's LayerNorm does on NHWC."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class TorchConvTower(nn.Module):
    """The PyTorch twin of koclip's small CNN image tower (`conv.ConvTower`, koclip-mini's), with the parameters
    `convert.flax_to_torch` gives it."""

    def __init__(self, cfg: ConvTowerConfig):
        super().__init__()
        self.num_stages = len(cfg.widths)
        p = cfg.stem_patch
        self.stem = nn.Conv2d(cfg.num_channels, cfg.widths[0], p, stride=p)
        prev = cfg.widths[0]
        for i, width in enumerate(cfg.widths):
            self.add_module(f"down{i}", nn.Conv2d(prev, width, 3, stride=1 if i == 0 else 2, padding=1))
            self.add_module(f"norm{i}a", _ChannelNorm(width, eps=cfg.layer_norm_eps))
            self.add_module(f"conv{i}", nn.Conv2d(width, width, 3, padding=1))
            self.add_module(f"norm{i}b", _ChannelNorm(width, eps=cfg.layer_norm_eps))
            prev = width
        self.local = nn.Linear(prev, cfg.local_size) if cfg.local_size else None
        self.head = nn.Linear(2 * (cfg.local_size or prev), cfg.hidden_size)

    def forward(self, pixel_values: torch.Tensor):
        """The last feature map, (batch, channels, h, w), and the pooled output, (batch, hidden_size), of float NCHW
        pixels."""
        x = self.stem(pixel_values)
        for i in range(self.num_stages):
            x = nn.functional.gelu(getattr(self, f"norm{i}a")(getattr(self, f"down{i}")(x)))
            x = nn.functional.gelu(getattr(self, f"norm{i}b")(getattr(self, f"conv{i}")(x)))
        if self.local is not None:
            x = nn.functional.gelu(self.local(x.permute(0, 2, 3, 1))).permute(0, 3, 1, 2)
        pooled = torch.cat([x.mean(dim=(2, 3)), x.amax(dim=(2, 3))], dim=-1)
        return x, self.head(pooled)


def _vision_tower(vision) -> nn.Module:
    if isinstance(vision, ClipVisionConfig):
        return transformers.CLIPVisionModel(transformers_config(vision))
    if isinstance(vision, VitConfig):
        return transformers.ViTModel(transformers_config(vision), add_pooling_layer=True)
    return TorchConvTower(vision)


class TorchDualEncoder(nn.Module):
    """The PyTorch twin of `DualEncoder`: transformers' RobertaModel and the vision tower `config` chooses, with the
    same projections and logit_scale, under the state dict keys `convert.flax_to_torch` produces. TorchBackend holds
    one."""

    def __init__(self, config: KoCLIPConfig):
        super().__init__()
        self.config = config
        self.text_model = transformers.RobertaModel(transformers_config(config.text_config), add_pooling_layer=True)
        self.vision_model = _vision_tower(config.vision_config)
        self.text_projection = nn.Linear(config.text_config.hidden_size, config.projection_dim, bias=False)
        self.visual_projection = nn.Linear(config.vision_config.hidden_size, config.projection_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(config.logit_scale_init_value))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """L2-normalised text embeddings of (batch, length) token ids and their mask."""
        mask = attention_mask.long()
        hidden, pooled = self.text_model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(mask),
            position_ids=self.config.position_ids(mask),
        )[:2]
        return nn.functional.normalize(self.text_projection(self.config.pool_text(hidden, pooled, mask)), dim=-1)

    def encode_image(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """`pixel_values` are NCHW, as PyTorch convolutions want them."""
        out = self.vision_model(pixel_values)
        return nn.functional.normalize(self.visual_projection(out[1]), dim=-1)
