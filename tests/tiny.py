"""Tiny random KoCLIP checkpoints in every published format, for tests that run offline."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flax import serialization

from koclip.models.config import (
    ClipVisionConfig,
    ConvTowerConfig,
    KoCLIPConfig,
    RobertaConfig,
    VitConfig,
)
from koclip.models.dual_encoder import init_params
from koclip.tokenizer import train_wordpiece

# Every key transformers 4.57.6 writes in each tower's config.json, at its defaults
# (test_loading.py checks them against transformers itself): checkpoints laid here need no transformers.
TRANSFORMERS_DEFAULTS = json.loads((Path(__file__).parent / "data" / "transformers_configs.json").read_text())

SENTENCES = [
    "이것은 고양이 이다.",
    "강아지 두 마리가 공원에 있다",
    "빨간 자동차가 도로 위에 있다",
    "파란 하늘 아래 바다",
    "a photo of a dog",
    "사람들이 버스를 기다리고 있다",
    "테이블 위에 커피 한 잔",
    "하얀 눈이 쌓인 산",
    "큰 비행기가 하늘을 난다",
] * 4


def tokenizer():
    return train_wordpiece(SENTENCES, vocab_size=300)


def text_config(vocab_size: int) -> RobertaConfig:
    return RobertaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=66,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
    )


def vision_config(kind: str, image_size: int = 32):
    """A tiny tower of the kind given; at 224 px the patches are ViT-B/32's (clip) or ViT-L/16's (vit)."""
    if kind == "clip":
        return ClipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=8 if image_size == 32 else 32,
        )
    if kind == "vit":
        return VitConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=8 if image_size == 32 else 16,
        )
    return ConvTowerConfig(image_size=image_size, widths=(8, 16), hidden_size=24, local_size=12)


def config(kind: str = "clip", vocab_size: int = 300, image_size: int = 32) -> KoCLIPConfig:
    return KoCLIPConfig(text_config(vocab_size), vision_config(kind, image_size), projection_dim=16)


def _random_params(cfg: KoCLIPConfig, seed: int, noise: float = 0.02) -> dict:
    # Perturb every weight so that no tower sits at a symmetric init (zeros, ones) that would hide bugs.
    import jax

    params = init_params(cfg, seed)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(
        lambda x: np.asarray(x) + noise * rng.standard_normal(x.shape).astype(np.float32), params
    )


def transformers_dict(tower) -> dict:
    """A tower's config as transformers writes it, every key included."""
    written = {**TRANSFORMERS_DEFAULTS[tower.model_type], **tower.to_dict()}
    if "pooler_output_size" in written and written["pooler_output_size"] is None:  # ViT's follows its width
        written["pooler_output_size"] = written["hidden_size"]
    return written


def hybrid_clip_files(
    seed: int = 0,
    kind: str = "clip",
    image_size: int = 32,
    vision_type: str = "clip",
    vocab_size: int = 300,
    noise: float = 0.02,
) -> tuple[KoCLIPConfig, dict, dict[str, bytes]]:
    """config.json and flax_model.msgpack as the original `FlaxHybridCLIP.save_pretrained` wrote them.

    `vision_type` is the CLIP tower's `model_type`: "clip" (a full CLIP config whose vision part is
    used) or "clip_vision_model" (the vision config alone).
    """
    cfg = config(kind, vocab_size, image_size)
    params = _random_params(cfg, seed, noise)
    vision = transformers_dict(cfg.vision_config) if kind in ("clip", "vit") else cfg.vision_config.to_dict()
    if kind == "clip" and vision_type == "clip":
        nested = {key: value for key, value in vision.items() if key != "transformers_version"}
        vision = {**TRANSFORMERS_DEFAULTS["clip"], "vision_config": nested}
    raw = {
        "architectures": ["FlaxHybridCLIP"],
        "initializer_factor": 1.0,
        "model_type": "hybrid-clip",
        "projection_dim": cfg.projection_dim,
        "text_config": transformers_dict(cfg.text_config),
        "vision_config": vision,
        "transformers_version": "4.9.0.dev0",
    }
    files = {"config.json": json.dumps(raw, indent=2).encode(), "flax_model.msgpack": serialization.to_bytes(params)}
    return cfg, params, files


def write_hybrid_clip(directory: Path, seed: int = 0, kind: str = "clip") -> tuple[KoCLIPConfig, dict]:
    """A hybrid-clip folder with its own tokenizer, for tests that load a folder."""
    tok = tokenizer()
    cfg, params, files = hybrid_clip_files(seed, kind, vocab_size=len(tok))
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    tok.save(directory)
    return cfg, params


def write_vision_text_dual_encoder(directory: Path, seed: int = 0) -> None:
    """The published koclip-base-pt layout: transformers' VisionTextDualEncoderModel, saved from PyTorch."""
    import torch
    from transformers import VisionTextDualEncoderConfig, VisionTextDualEncoderModel

    from koclip.models.torch_twin import transformers_config

    tok = tokenizer()
    cfg = config("clip", len(tok))
    vtde = VisionTextDualEncoderConfig.from_vision_text_configs(
        transformers_config(cfg.vision_config), transformers_config(cfg.text_config), projection_dim=16
    )
    torch.manual_seed(seed)
    model = VisionTextDualEncoderModel(vtde)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.save_pretrained(directory)
    tok.save(directory)
