"""koclip's small CNN image tower (koclip-mini's), for a ConvTowerConfig; its PyTorch twin is
`torch_twin.TorchConvTower`."""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from koclip.models.config import ConvTowerConfig


class ConvTower(nn.Module):
    """Patchify stem, then 3x3 conv stages that halve the resolution, then mean+max pooling.

    Convolutions learn shape from few examples far faster than a ViT of the same cost on a CPU.
    Padding is explicit so that the PyTorch twin (`torch_twin.TorchConvTower`) matches exactly.
    """

    config: ConvTowerConfig
    dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, pixel_values: jnp.ndarray, deterministic: bool = True):
        cfg = self.config
        p = cfg.stem_patch
        x = nn.Conv(cfg.widths[0], (p, p), strides=(p, p), padding="VALID", dtype=self.dtype, name="stem")(pixel_values)
        for i, width in enumerate(cfg.widths):
            stride = 1 if i == 0 else 2
            x = nn.Conv(
                width, (3, 3), strides=(stride, stride), padding=((1, 1), (1, 1)), dtype=self.dtype, name=f"down{i}"
            )(x)
            x = nn.gelu(
                nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name=f"norm{i}a")(x), approximate=False
            )
            x = nn.Conv(width, (3, 3), padding=((1, 1), (1, 1)), dtype=self.dtype, name=f"conv{i}")(x)
            x = nn.gelu(
                nn.LayerNorm(epsilon=cfg.layer_norm_eps, dtype=self.dtype, name=f"norm{i}b")(x), approximate=False
            )
        if cfg.local_size:
            x = nn.gelu(nn.Dense(cfg.local_size, dtype=self.dtype, name="local")(x), approximate=False)
        pooled = jnp.concatenate([x.mean(axis=(1, 2)), x.max(axis=(1, 2))], axis=-1)
        pooled = nn.Dense(cfg.hidden_size, dtype=self.dtype, name="head")(pooled)
        return x, pooled
