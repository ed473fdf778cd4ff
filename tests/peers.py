"""A tiny random transformers CLIPModel with its own processor, saved with save_pretrained: a peer
dual encoder for the benchmark tests, built offline (a byte-level BPE vocabulary with no merges)."""

from __future__ import annotations

import json
from pathlib import Path


def write_tiny_clip(directory: Path, seed: int = 0) -> Path:
    """Save a CLIPModel (2 layers, width 32, 32 px images) and its CLIPProcessor in `directory`."""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer
    from transformers.models.clip.tokenization_clip import bytes_to_unicode

    directory.mkdir(parents=True, exist_ok=True)
    symbols = list(bytes_to_unicode().values())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"])}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    (directory / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = CLIPTokenizer(str(directory / "vocab.json"), str(directory / "merges.txt"), model_max_length=77)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    torch.manual_seed(seed)
    tower = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
    config = CLIPConfig(
        text_config=dict(tower, vocab_size=len(vocab), max_position_embeddings=77),
        vision_config=dict(tower, image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(config).eval().save_pretrained(directory)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def clip_retrieval_module(name: str):
    """A module of clip-retrieval's own (installed with --no-deps), such as clip_retrieval.clip_client,
    imported without the package's __init__, which would import all of clip-back and its models
    (Flask, torch, open_clip, ...)."""
    import importlib
    import importlib.util
    import sys
    import types

    parts = name.split(".")
    for depth in range(1, len(parts)):
        package_name = ".".join(parts[:depth])
        if package_name not in sys.modules:
            spec = importlib.util.find_spec(package_name)
            assert spec is not None, "clip-retrieval is missing: scripts/setup.sh requirements-dev.txt installs it"
            package = types.ModuleType(package_name)
            package.__path__ = list(spec.submodule_search_locations)
            sys.modules[package_name] = package
    return importlib.import_module(name)


def clip_client():
    """clip-retrieval's own `ClipClient` class (clip_retrieval/clip_client.py, which needs only requests)."""
    return clip_retrieval_module("clip_retrieval.clip_client").ClipClient
