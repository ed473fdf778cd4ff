"""The vision transformer towers in Flax: CLIP's (koclip-base) and ViT (koclip-large).

Their parameter trees are those of transformers' `FlaxCLIPVisionModule` and `FlaxViTModule`.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from koclip.models.config import ClipVisionConfig, VitConfig
from koclip.models.layers import (
    DenseActivation,
    DenseOutput,
    Encoder,
    QKVAttention,
    activation,
    attend,
    layer_norm,
    split_heads,
)


def _patches(conv: nn.Conv, pixel_values) -> jnp.ndarray:
    x = conv(pixel_values)  # NHWC in, one embedding per patch out
    return x.reshape(x.shape[0], -1, x.shape[-1])


# ------------------------------------------------------------------------------------------ CLIP


class ClipAttention(nn.Module):
    """CLIP's self-attention, with the parameters of transformers' FlaxCLIPAttention (q_proj, k_proj, v_proj,
    out_proj). Called with (batch, tokens, hidden_size) states; returns (batch, rows, hidden_size), all tokens when
    `rows` is None."""

    config: ClipVisionConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool, rows: int | None = None):
        """Queries from the first `rows` tokens only (None: all); keys and values from all."""
        cfg = self.config
        heads = cfg.num_attention_heads

        def dense(name):
            return nn.Dense(cfg.hidden_size, kernel_init=nn.initializers.normal(0.01), dtype=self.dtype, name=name)

        def project(name, tokens):
            return split_heads(dense(name)(tokens), heads)

        out = attend(
            self,
            project("q_proj", x[:, :rows]),
            project("k_proj", x),
            project("v_proj", x),
            None,
            cfg.attention_dropout,
            deterministic,
            self.dtype,
        )
        return dense("out_proj")(out)


class ClipMLP(nn.Module):
    """CLIP's feed-forward block (fc1, the activation, fc2), with the parameters of transformers' FlaxCLIPMLP;
    (batch, tokens, hidden_size) in and out."""

    config: ClipVisionConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        cfg = self.config
        init = nn.initializers.normal(0.01)
        x = nn.Dense(cfg.intermediate_size, kernel_init=init, dtype=self.dtype, name="fc1")(x)
        return nn.Dense(cfg.hidden_size, kernel_init=init, dtype=self.dtype, name="fc2")(activation(cfg.hidden_act)(x))


class ClipLayer(nn.Module):
    """One pre-norm encoder layer, with the parameters of transformers' FlaxCLIPEncoderLayer. Called with (batch,
    tokens, hidden_size) states (`bias` is unused: images have no padding); returns (batch, rows, hidden_size), all
    tokens when `rows` is None."""

    config: ClipVisionConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, bias, deterministic: bool, rows: int | None = None):
        cfg = self.config
        attention = ClipAttention(cfg, self.dtype, name="self_attn")
        x = x[:, :rows] + attention(layer_norm(cfg, self.dtype, "layer_norm1")(x), deterministic, rows)
        return x + ClipMLP(cfg, self.dtype, name="mlp")(layer_norm(cfg, self.dtype, "layer_norm2")(x))


class ClipVisionTransformer(nn.Module):
    """CLIP's vision transformer, with the parameters of transformers' FlaxCLIPVisionTransformer. Called with (batch,
    size, size, 3) NHWC pixels; returns the last hidden states, (batch, tokens, hidden_size) (only the first token
    when `first_only`), and the pooled output, (batch, hidden_size)."""

    config: ClipVisionConfig
    dtype: Any = jnp.float32
    first_only: bool = False

    @nn.compact
    def __call__(self, pixel_values, deterministic: bool):
        cfg = self.config
        x = ClipVisionEmbeddings(cfg, self.dtype, name="embeddings")(pixel_values)
        x = layer_norm(cfg, self.dtype, "pre_layrnorm")(x)
        x = Encoder(ClipLayer, cfg, "layers", self.dtype, self.first_only, name="encoder")(x, None, deterministic)
        pooled = layer_norm(cfg, self.dtype, "post_layernorm")(x[:, 0])
        return x, pooled


class ClipVisionEmbeddings(nn.Module):
    """The class token and patch embeddings plus position embeddings, with the parameters of transformers'
    FlaxCLIPVisionEmbeddings. Called with (batch, size, size, 3) NHWC pixels; returns (batch, 1 + patches,
    hidden_size)."""

    config: ClipVisionConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, pixel_values):
        cfg = self.config
        width = cfg.hidden_size
        cls = self.param("class_embedding", nn.initializers.normal(stddev=0.02), (width,))
        conv = nn.Conv(
            width,
            (cfg.patch_size,) * 2,
            strides=(cfg.patch_size,) * 2,
            padding="VALID",
            use_bias=False,
            kernel_init=nn.initializers.normal(),
            dtype=self.dtype,
            name="patch_embedding",
        )
        x = _patches(conv, pixel_values)
        x = jnp.concatenate([jnp.broadcast_to(cls.astype(x.dtype), (x.shape[0], 1, width)), x], axis=1)
        positions = nn.Embed(x.shape[1], width, embedding_init=nn.initializers.normal(), name="position_embedding")
        return x + positions(jnp.arange(x.shape[1])[None])


class ClipVisionTower(nn.Module):
    """Returns the last hidden states and the pooled output (the first token, layer-normed).
    `first_only`: the last hidden state of the first token alone, which is all the pooled output needs."""

    config: ClipVisionConfig
    dtype: Any = jnp.float32
    first_only: bool = False

    @nn.compact
    def __call__(self, pixel_values, deterministic: bool = True):
        transformer = ClipVisionTransformer(self.config, self.dtype, self.first_only, name="vision_model")
        return transformer(pixel_values, deterministic)


# ------------------------------------------------------------------------------------------- ViT


def _vit_init(config: VitConfig):
    return nn.initializers.variance_scaling(config.initializer_range**2, "fan_in", "truncated_normal")


class VitEmbeddings(nn.Module):
    """The class token and patch embeddings plus position embeddings, dropped out, with the parameters of
    transformers' FlaxViTEmbeddings. Called with (batch, size, size, 3) NHWC pixels; returns (batch, 1 + patches,
    hidden_size)."""

    config: VitConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, pixel_values, deterministic: bool):
        cfg = self.config
        patches = (cfg.image_size // cfg.patch_size) ** 2
        cls = self.param("cls_token", _vit_init(cfg), (1, 1, cfg.hidden_size))
        x = VitPatchEmbeddings(cfg, self.dtype, name="patch_embeddings")(pixel_values)
        positions = self.param("position_embeddings", _vit_init(cfg), (1, patches + 1, cfg.hidden_size))
        x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, cfg.hidden_size)), x], axis=1) + positions
        return nn.Dropout(rate=cfg.hidden_dropout_prob, name="dropout")(x, deterministic=deterministic)


class VitPatchEmbeddings(nn.Module):
    """One embedding per patch, with the parameters of transformers' FlaxViTPatchEmbeddings. Called with (batch,
    size, size, 3) NHWC pixels; returns (batch, patches, hidden_size)."""

    config: VitConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, pixel_values):
        cfg = self.config
        return _patches(
            nn.Conv(
                cfg.hidden_size,
                (cfg.patch_size,) * 2,
                strides=(cfg.patch_size,) * 2,
                padding="VALID",
                kernel_init=_vit_init(cfg),
                dtype=self.dtype,
                name="projection",
            ),
            pixel_values,
        )


class VitAttention(nn.Module):
    """Self-attention and its output block, with the parameters of transformers' FlaxViTAttention. Called with
    (batch, tokens, hidden_size) states; returns (batch, rows, hidden_size), all tokens when `rows` is None."""

    config: VitConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, deterministic: bool, rows: int | None = None):
        cfg = self.config
        attended = QKVAttention(
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.attention_probs_dropout_prob,
            _vit_init(cfg),
            cfg.qkv_bias,
            self.dtype,
            name="attention",
        )(x, None, deterministic, rows)
        return DenseOutput(cfg.hidden_size, cfg.hidden_dropout_prob, _vit_init(cfg), dtype=self.dtype, name="output")(
            attended, deterministic=deterministic
        )


class VitLayer(nn.Module):
    """One pre-norm encoder layer, with the parameters of transformers' FlaxViTLayer. Called with (batch, tokens,
    hidden_size) states (`bias` is unused: images have no padding); returns (batch, rows, hidden_size), all tokens
    when `rows` is None."""

    config: VitConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, bias, deterministic: bool, rows: int | None = None):
        cfg = self.config
        attention = VitAttention(cfg, self.dtype, name="attention")
        x = x[:, :rows] + attention(layer_norm(cfg, self.dtype, "layernorm_before")(x), deterministic, rows)
        h = DenseActivation(cfg.intermediate_size, cfg.hidden_act, _vit_init(cfg), self.dtype, name="intermediate")(
            layer_norm(cfg, self.dtype, "layernorm_after")(x)
        )
        return DenseOutput(cfg.hidden_size, cfg.hidden_dropout_prob, _vit_init(cfg), dtype=self.dtype, name="output")(
            h, x, deterministic
        )


class VitTower(nn.Module):
    """Returns the last hidden states, layer-normed, and the pooled output (tanh of a dense layer on
    the first token). `first_only`: the last hidden state of the first token alone, which is all the
    pooled output needs."""

    config: VitConfig
    dtype: Any = jnp.float32
    first_only: bool = False

    @nn.compact
    def __call__(self, pixel_values, deterministic: bool = True):
        cfg = self.config
        x = VitEmbeddings(cfg, self.dtype, name="embeddings")(pixel_values, deterministic)
        x = Encoder(VitLayer, cfg, "layer", self.dtype, self.first_only, name="encoder")(x, None, deterministic)
        x = layer_norm(cfg, self.dtype, "layernorm")(x)
        pooled = DenseActivation(
            cfg.pooler_output_size or cfg.hidden_size, cfg.pooler_act, _vit_init(cfg), self.dtype, name="pooler"
        )(x[:, 0])
        return x, pooled
