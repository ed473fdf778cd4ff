"""Tiny random KoCLIP checkpoints in every published format, for tests that run offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flax import serialization
from transformers import CLIPConfig, CLIPVisionConfig, RobertaConfig, ViTConfig

from koclip.config import ConvTowerConfig, KoCLIPConfig
from koclip.model import init_params
from koclip.tokenizer import train_wordpiece

SENTENCES = [
    "이것은 고양이 이다.", "강아지 두 마리가 공원에 있다", "빨간 자동차가 도로 위에 있다",
    "파란 하늘 아래 바다", "a photo of a dog", "사람들이 버스를 기다리고 있다",
    "테이블 위에 커피 한 잔", "하얀 눈이 쌓인 산", "큰 비행기가 하늘을 난다",
] * 4


def tokenizer():
    return train_wordpiece(SENTENCES, vocab_size=300)


def text_config(vocab_size: int) -> RobertaConfig:
    return RobertaConfig(
        vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=66, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        type_vocab_size=1,
    )


def vision_config(kind: str):
    if kind == "clip":
        return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=2, image_size=32, patch_size=8)
    if kind == "vit":
        return ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, image_size=32, patch_size=8)
    return ConvTowerConfig(image_size=32, widths=(8, 16), hidden_size=24, local_size=12)


def config(kind: str = "clip", vocab_size: int = 300) -> KoCLIPConfig:
    return KoCLIPConfig(text_config(vocab_size), vision_config(kind), projection_dim=16)


def _random_params(cfg: KoCLIPConfig, seed: int) -> dict:
    # Perturb every weight so that no tower sits at a symmetric init (zeros, ones) that would hide bugs.
    import jax

    params = init_params(cfg, seed)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda x: np.asarray(x) + 0.02 * rng.standard_normal(x.shape).astype(np.float32), params)


def write_hybrid_clip(directory: Path, seed: int = 0, kind: str = "clip") -> tuple[KoCLIPConfig, dict]:
    """The published koclip-base / koclip-large layout, as `FlaxHybridCLIP.save_pretrained` wrote it."""
    tok = tokenizer()
    cfg = config(kind, len(tok))
    params = _random_params(cfg, seed)
    directory.mkdir(parents=True, exist_ok=True)
    vision = cfg.vision_config.to_dict()
    if kind == "clip":
        # hybrid-clip kept a full CLIP config and used its vision part.
        vision = {**CLIPConfig(vision_config=vision).to_dict(), "model_type": "clip"}
    raw = {
        "model_type": "hybrid-clip",
        "projection_dim": cfg.projection_dim,
        "text_config": {**cfg.text_config.to_dict(), "model_type": "roberta"},
        "vision_config": vision,
        "architectures": ["FlaxHybridCLIP"],
    }
    (directory / "config.json").write_text(json.dumps(raw))
    (directory / "flax_model.msgpack").write_bytes(serialization.to_bytes(params))
    tok.save_pretrained(directory)
    return cfg, params


def write_vision_text_dual_encoder(directory: Path, seed: int = 0) -> None:
    """The published koclip-base-pt layout: transformers' VisionTextDualEncoderModel, saved from PyTorch."""
    import torch
    from transformers import VisionTextDualEncoderConfig, VisionTextDualEncoderModel

    tok = tokenizer()
    cfg = config("clip", len(tok))
    vtde = VisionTextDualEncoderConfig.from_vision_text_configs(cfg.vision_config, cfg.text_config, projection_dim=16)
    torch.manual_seed(seed)
    model = VisionTextDualEncoderModel(vtde)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(directory)
    tok.save_pretrained(directory)
