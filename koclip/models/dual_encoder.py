"""The Flax dual encoder: two towers, two bias-free projections, L2 normalisation, one temperature.

Parameter names follow the published `hybrid-clip` checkpoints (and transformers'
`FlaxVisionTextDualEncoderModel`): `text_model`, `vision_model`, `text_projection`,
`visual_projection`, `logit_scale`. Their weights therefore load without renaming.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from koclip.models.config import KoCLIPConfig
from koclip.models.towers import text_tower, vision_tower


def l2_normalize(x: jnp.ndarray) -> jnp.ndarray:
    """`x` divided by its L2 norm along the last axis; a norm under 1e-12 counts as 1e-12, so a zero row stays zero."""
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True).clip(1e-12)


class DualEncoder(nn.Module):
    """The Flax dual encoder: the text and vision towers `config` chooses, each followed by a bias-free projection to
    projection_dim, and the learned logit_scale, under the published checkpoints' parameter names (text_model,
    vision_model, text_projection, visual_projection). FlaxBackend and training apply it."""

    config: KoCLIPConfig
    dtype: jnp.dtype = jnp.float32

    def setup(self):
        """Make the two towers, their projections and the logit_scale parameter."""
        cfg = self.config
        self.text_model = text_tower(cfg, self.dtype)
        self.vision_model = vision_tower(cfg, self.dtype)
        self.text_projection = nn.Dense(cfg.projection_dim, use_bias=False, dtype=self.dtype)
        self.visual_projection = nn.Dense(cfg.projection_dim, use_bias=False, dtype=self.dtype)
        self.logit_scale = self.param("logit_scale", nn.initializers.constant(cfg.logit_scale_init_value), ())

    def encode_text(self, input_ids, attention_mask, deterministic: bool = True):
        """L2-normalised text embeddings of (batch, length) token ids and their mask."""
        mask = attention_mask.astype(jnp.int32)
        hidden, pooled = self.text_model(
            input_ids,
            attention_mask,
            token_type_ids=jnp.zeros_like(input_ids),
            position_ids=self.config.position_ids(mask),
            deterministic=deterministic,
        )
        return l2_normalize(self.text_projection(self.config.pool_text(hidden, pooled, mask)))

    def encode_image(self, pixel_values, deterministic: bool = True):
        """`pixel_values` are NHWC."""
        outputs = self.vision_model(pixel_values, deterministic=deterministic)
        return l2_normalize(self.visual_projection(outputs[1]))

    def __call__(self, input_ids, attention_mask, pixel_values, deterministic: bool = True):
        """Text embeddings, image embeddings and the (unclipped) logit scale, for training."""
        text = self.encode_text(input_ids, attention_mask, deterministic)
        image = self.encode_image(pixel_values, deterministic)
        return text, image, self.logit_scale


def init_params(config: KoCLIPConfig, seed: int = 0, text_length: int = 8) -> dict:
    """Random parameters for `config` (pretrained towers are loaded separately)."""
    module = DualEncoder(config)
    ids = jnp.ones((1, text_length), jnp.int32)
    pixels = jnp.zeros((1, config.image_size, config.image_size, 3), jnp.float32)
    return module.init(jax.random.PRNGKey(seed), ids, ids, pixels)["params"]


def param_shapes(config: KoCLIPConfig) -> dict:
    """The parameter tree's shapes without computing anything: the template for conversions."""
    return jax.eval_shape(lambda: init_params(config))
