"""Failures a user can cause give one clear exception type and message, never a traceback."""

import io

import numpy as np
import pytest
from PIL import Image

import koclip
from koclip import hub


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(koclip.UnknownModelError, match="koclip-base, koclip-large"):
        koclip.load("koclip-huge")


def test_offline_and_uncached_model_says_where_it_looked_and_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(koclip.ModelUnavailableError) as info:
        koclip.load("koclip-base")
    message = str(info.value)
    assert "koclip/koclip-base" in message and str(tmp_path) in message
    assert "python -m koclip download koclip-base" in message and "HF_HUB_OFFLINE" in message


@pytest.fixture
def unreachable_hub(tmp_path, monkeypatch):
    """An empty cache, online, with a closed local port standing in for a Hub that cannot be reached."""
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(hub, "offline", lambda: False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    return tmp_path


def test_unreachable_hub_gives_the_same_clear_error(unreachable_hub):
    with pytest.raises(koclip.ModelUnavailableError, match="could not be reached") as info:
        koclip.load("koclip/koclip-large")
    assert "python -m koclip download" in str(info.value)
    assert "(no connection to http://127.0.0.1:9)" in str(info.value)  # huggingface_hub's cut-off text is not quoted


def test_download_from_an_unreachable_hub_advises_another_way_than_itself(unreachable_hub):
    with pytest.raises(koclip.ModelUnavailableError, match="could not be reached") as info:
        hub.download("koclip-large")
    message = str(info.value)
    assert "koclip/koclip-large" in message and str(unreachable_hub) in message
    assert "python -m koclip download" not in message
    assert "HF_ENDPOINT" in message and "machine with internet access" in message


def test_folder_without_checkpoint_is_explained(tmp_path):
    with pytest.raises(koclip.ModelUnavailableError, match="no config.json"):
        koclip.load(tmp_path)


def _huge_png() -> bytes:
    """A 10000 x 8000 (80 MP) PNG that compresses to a few kilobytes: a decompression bomb in small."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 8_000)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_images_are_refused_clearly(tmp_path):
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    with pytest.raises(koclip.InvalidImageError, match="not a readable image"):
        koclip.open_image(text_file)
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, format="PNG")
    with pytest.raises(koclip.InvalidImageError, match="truncated"):
        koclip.open_image(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    bomb = _huge_png()
    assert len(bomb) < 100_000
    with pytest.raises(koclip.InvalidImageError, match="too large"):
        koclip.open_image(bomb)
