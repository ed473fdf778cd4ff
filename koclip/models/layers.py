"""Building blocks shared by the transformer towers (`roberta`, `vision`).

Module and parameter names follow transformers' Flax towers, so the published checkpoints load
as they are and a tower initialised here with a given seed gets the same weights as theirs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax.linen.attention import dot_product_attention_weights

from koclip.errors import KoCLIPError

ACTIVATIONS: dict[str, Callable] = {
    "gelu": lambda x: nn.gelu(x, approximate=False),
    "gelu_new": lambda x: nn.gelu(x, approximate=True),
    "gelu_pytorch_tanh": lambda x: nn.gelu(x, approximate=True),
    "quick_gelu": lambda x: x * jax.nn.sigmoid(1.702 * x),
    "relu": nn.relu,
    "silu": nn.swish,
    "swish": nn.swish,
    "tanh": nn.tanh,
}


def activation(name: str) -> Callable:
    """The activation function config.json calls `name`; KoCLIPError for one koclip does not run."""
    if name not in ACTIVATIONS:
        raise KoCLIPError(f"unsupported activation {name!r} in the model config; koclip runs {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]


def layer_norm(config, dtype, name: str) -> nn.LayerNorm:
    """A LayerNorm with the tower's epsilon."""
    return nn.LayerNorm(epsilon=config.layer_norm_eps, dtype=dtype, name=name)


def padding_bias(attention_mask: jnp.ndarray, dtype) -> jnp.ndarray:
    """An additive attention bias that keeps padded keys out: (batch, 1, 1, keys)."""
    keep = attention_mask[:, None, None, :] > 0
    return jnp.where(keep, jnp.zeros((), dtype), jnp.asarray(jnp.finfo(dtype).min, dtype))


def split_heads(x: jnp.ndarray, heads: int) -> jnp.ndarray:
    """(batch, tokens, width) as (batch, tokens, heads, width / heads)."""
    return x.reshape(x.shape[:2] + (heads, x.shape[-1] // heads))


def attend(module: nn.Module, query, key, value, bias, dropout_rate: float, deterministic: bool, dtype):
    """Scaled dot-product attention over heads; inputs and output are (batch, tokens, heads, depth)
    and (batch, tokens, heads * depth)."""
    dropout_rng = module.make_rng("dropout") if not deterministic and dropout_rate > 0 else None
    weights = dot_product_attention_weights(
        query,
        key,
        bias=bias,
        dropout_rng=dropout_rng,
        dropout_rate=dropout_rate,
        broadcast_dropout=True,
        deterministic=deterministic,
        dtype=dtype,
    )
    out = jnp.einsum("...hqk,...khd->...qhd", weights, value)
    return out.reshape(out.shape[:2] + (-1,))


class QKVAttention(nn.Module):
    """Self-attention with projections named `query`, `key` and `value` (RoBERTa's and ViT's)."""

    hidden_size: int
    heads: int
    dropout_rate: float
    kernel_init: Callable
    use_bias: bool = True
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, bias, deterministic: bool, rows: int | None = None):
        """Queries from the first `rows` tokens only (None: all); keys and values from all."""

        def project(name, tokens):
            dense = nn.Dense(
                self.hidden_size, use_bias=self.use_bias, kernel_init=self.kernel_init, dtype=self.dtype, name=name
            )
            return split_heads(dense(tokens), self.heads)

        query, key, value = project("query", x[:, :rows]), project("key", x), project("value", x)
        return attend(self, query, key, value, bias, self.dropout_rate, deterministic, self.dtype)


class DenseOutput(nn.Module):
    """`dense`, then dropout; then, as configured, the residual added and `LayerNorm` applied."""

    features: int
    dropout_rate: float
    kernel_init: Callable
    layer_norm_eps: float | None = None  # None: no LayerNorm
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, residual=None, deterministic: bool = True):
        x = nn.Dense(self.features, kernel_init=self.kernel_init, dtype=self.dtype, name="dense")(x)
        x = nn.Dropout(rate=self.dropout_rate, name="dropout")(x, deterministic=deterministic)
        if residual is not None:
            x = x + residual
        if self.layer_norm_eps is not None:
            x = nn.LayerNorm(epsilon=self.layer_norm_eps, dtype=self.dtype, name="LayerNorm")(x)
        return x


class DenseActivation(nn.Module):
    """`dense`, then an activation: the feed-forward block's first half, and the poolers."""

    features: int
    act: str
    kernel_init: Callable
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x):
        return activation(self.act)(
            nn.Dense(self.features, kernel_init=self.kernel_init, dtype=self.dtype, name="dense")(x)
        )


class Stack(nn.Module):
    """`config.num_hidden_layers` layers named 0, 1, ..., applied in turn as `layer(x, bias, deterministic)`.

    `first_only`: the last layer is called with `rows=1` and computes the first token alone (its
    attention still reads every token), for a tower whose output is pooled from that token: the
    same result for less work.
    """

    layer: type
    config: Any
    dtype: Any = jnp.float32
    first_only: bool = False

    @nn.compact
    def __call__(self, x, bias, deterministic: bool):
        last = self.config.num_hidden_layers - 1
        for i in range(self.config.num_hidden_layers):
            first_only = {"rows": 1} if self.first_only and i == last else {}
            x = self.layer(self.config, self.dtype, name=str(i))(x, bias, deterministic, **first_only)
        return x


class Encoder(nn.Module):
    """The layer stack under the name each family gives it (`encoder/layer/0`, `encoder/layers/0`)."""

    layer: type
    config: Any
    stack_name: str
    dtype: Any = jnp.float32
    first_only: bool = False

    @nn.compact
    def __call__(self, x, bias, deterministic: bool):
        return Stack(self.layer, self.config, self.dtype, self.first_only, name=self.stack_name)(x, bias, deterministic)
