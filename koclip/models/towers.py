"""The Flax tower for each part of a config: RoBERTa for text; CLIP vision, ViT or the small CNN
(conv.py) for images.

Every tower returns the last hidden states and the pooled output. The dual encoder uses only the
pooled output of an image tower, so its transformer image towers compute their last layer for the
first token alone: the same embeddings for less work.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from koclip.models.config import ClipVisionConfig, KoCLIPConfig, VitConfig
from koclip.models.conv import ConvTower
from koclip.models.roberta import RobertaTower
from koclip.models.vision import ClipVisionTower, VitTower


def text_tower(config: KoCLIPConfig, dtype=jnp.float32) -> nn.Module:
    """The Flax RoBERTa tower for `config.text_config`."""
    return RobertaTower(config.text_config, dtype=dtype)


def vision_tower(config: KoCLIPConfig, dtype=jnp.float32) -> nn.Module:
    """The Flax vision tower for `config.vision_config`: CLIP's or ViT's transformer, whose last layer computes the
    first token alone, or koclip's CNN."""
    vision = config.vision_config
    if isinstance(vision, ClipVisionConfig):
        return ClipVisionTower(vision, dtype=dtype, first_only=True)
    if isinstance(vision, VitConfig):
        return VitTower(vision, dtype=dtype, first_only=True)
    return ConvTower(vision, dtype=dtype)
