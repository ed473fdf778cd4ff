import os
import sys
from pathlib import Path

# Tests never reach the Hub: every model they load is built here or ships with the package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).parent))

import fake_hub  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def own_embeddings(tmp_path_factory, monkeypatch):
    """Every test writes and finds app galleries in a folder of its own, never in the repository's embeddings/."""
    folder = tmp_path_factory.mktemp("embeddings")
    monkeypatch.setenv("KOCLIP_EMBEDDINGS", str(folder))
    return folder


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny random model with a convolutional image tower, in a folder: quick to load and to run."""
    import tiny

    directory = tmp_path_factory.mktemp("tiny-model") / "tiny-conv"
    tiny.write_hybrid_clip(directory, seed=7, kind="conv")
    return directory


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory):
    """A Hugging Face cache holding tiny koclip-base, koclip-large and klue/roberta-large (see fake_hub.py)."""
    cache = tmp_path_factory.mktemp("hf-cache")
    return cache, fake_hub.lay_cache(cache)


@pytest.fixture
def space(hub_cache, monkeypatch):
    """The environment of a Space that has downloaded the published models: HF_HUB_CACHE set, offline.

    Returns each repo's config and parameters, from which tests compute reference embeddings.
    """
    cache, models = hub_cache
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return models
