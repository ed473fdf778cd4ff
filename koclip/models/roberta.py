"""The RoBERTa text tower in Flax, with the parameter tree of transformers' `FlaxRobertaModule`."""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from koclip.models.config import RobertaConfig
from koclip.models.layers import (
    DenseActivation,
    DenseOutput,
    Encoder,
    QKVAttention,
    layer_norm,
    padding_bias,
)


def _init(config: RobertaConfig):
    return nn.initializers.normal(stddev=config.initializer_range)


class RobertaEmbeddings(nn.Module):
    """Word, token type and position embeddings summed, layer-normed and dropped out, with the parameters of
    transformers' FlaxRobertaEmbeddings. Called with (batch, length) integer token ids, token type ids and position
    ids; returns (batch, length, hidden_size)."""

    config: RobertaConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, token_type_ids, position_ids, deterministic: bool):
        cfg = self.config

        def embed(name, rows, ids):
            return nn.Embed(rows, cfg.hidden_size, embedding_init=_init(cfg), dtype=self.dtype, name=name)(
                ids.astype("i4")
            )

        x = (
            embed("word_embeddings", cfg.vocab_size, input_ids)
            + embed("token_type_embeddings", cfg.type_vocab_size, token_type_ids)
            + embed("position_embeddings", cfg.max_position_embeddings, position_ids)
        )
        x = layer_norm(cfg, self.dtype, "LayerNorm")(x)
        return nn.Dropout(rate=cfg.hidden_dropout_prob, name="dropout")(x, deterministic=deterministic)


class RobertaAttention(nn.Module):
    """Self-attention and its output block, with the parameters of transformers' FlaxRobertaAttention (`self`,
    `output`). Called with (batch, length, hidden_size) states and an additive (batch, 1, 1, length) padding bias;
    returns states of the same shape."""

    config: RobertaConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, bias, deterministic: bool):
        cfg = self.config
        attended = QKVAttention(
            cfg.hidden_size,
            cfg.num_attention_heads,
            cfg.attention_probs_dropout_prob,
            _init(cfg),
            dtype=self.dtype,
            name="self",
        )(x, bias, deterministic)
        return DenseOutput(
            cfg.hidden_size, cfg.hidden_dropout_prob, _init(cfg), cfg.layer_norm_eps, self.dtype, name="output"
        )(attended, x, deterministic)


class RobertaLayer(nn.Module):
    """One encoder layer (attention, then the feed-forward block), with the parameters of transformers'
    FlaxRobertaLayer. Called with (batch, length, hidden_size) states and an additive (batch, 1, 1, length) padding
    bias; returns states of the same shape."""

    config: RobertaConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x, bias, deterministic: bool):
        cfg = self.config
        x = RobertaAttention(cfg, self.dtype, name="attention")(x, bias, deterministic)
        h = DenseActivation(cfg.intermediate_size, cfg.hidden_act, _init(cfg), self.dtype, name="intermediate")(x)
        return DenseOutput(
            cfg.hidden_size, cfg.hidden_dropout_prob, _init(cfg), cfg.layer_norm_eps, self.dtype, name="output"
        )(h, x, deterministic)


class RobertaTower(nn.Module):
    """Returns the last hidden states and the pooled output (tanh of a dense layer on the first token).

    Unlike the image towers it computes every token in the last layer: for a short query, which
    reads each weight once, the first-token-only layer was slower, not faster.
    """

    config: RobertaConfig
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, input_ids, attention_mask, token_type_ids, position_ids, deterministic: bool = True):
        cfg = self.config
        x = RobertaEmbeddings(cfg, self.dtype, name="embeddings")(
            input_ids, token_type_ids, position_ids, deterministic
        )
        x = Encoder(RobertaLayer, cfg, "layer", self.dtype, name="encoder")(
            x, padding_bias(attention_mask, self.dtype), deterministic
        )
        pooled = DenseActivation(cfg.hidden_size, "tanh", _init(cfg), self.dtype, name="pooler")(x[:, 0])
        return x, pooled
