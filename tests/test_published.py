"""The published models load by name from a Hugging Face cache and embed as they were trained.

The reference is computed here, directly from transformers' Flax modules, with the conventions of
the original FlaxHybridCLIP training code: text positions 0, 1, 2, ..., zero token types, pooled
outputs through the bias-free projections, and torchvision's training transform (short side to
224 with bicubic resampling, centre crop, CLIP mean and std) for both vision towers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
from PIL import Image
from transformers import AutoTokenizer
from transformers.models.clip.modeling_flax_clip import FlaxCLIPVisionModule
from transformers.models.roberta.modeling_flax_roberta import FlaxRobertaModule
from transformers.models.vit.modeling_flax_vit import FlaxViTModule

import koclip
from koclip import hub
from koclip.models.torch_twin import transformers_config

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
# Long enough, and of different lengths, that positions from 0 and RoBERTa's positions
# (padding_idx + 1 + index) give clearly different embeddings, and padding matters.
TEXTS = [
    "빨간 자동차가 도로 위에 있다 그리고 강아지 두 마리가 공원에 있다 사람들이 버스를 기다리고 있다",
    "이것은 고양이 이다.",
    "하얀 눈이 쌓인 산 파란 하늘 아래 바다 큰 비행기가 하늘을 난다 테이블 위에 커피 한 잔",
]


def photos() -> list[Image.Image]:
    # Portrait, landscape and square; each crop margin is even, where torchvision's rounding and
    # transformers' flooring of the crop offset agree.
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(skimage.data.chelsea()),  # 451x300
        Image.fromarray(skimage.data.coffee()),  # 600x400
        Image.fromarray(rng.integers(0, 255, (500, 300, 3), dtype=np.uint8)),
        Image.fromarray(skimage.data.astronaut()),  # 512x512
    ]


def training_transform(image: Image.Image, size: int = 224) -> np.ndarray:
    """torchvision's Resize([size], BICUBIC), CenterCrop(size) and Normalize(CLIP), as HWC."""
    w, h = image.size
    new_w, new_h = (size, int(size * h / w)) if w <= h else (int(size * w / h), size)
    resized = np.asarray(image.convert("RGB").resize((new_w, new_h), Image.Resampling.BICUBIC), np.float32) / 255
    top, left = int(round((new_h - size) / 2.0)), int(round((new_w - size) / 2.0))
    return (resized[top : top + size, left : left + size] - CLIP_MEAN) / CLIP_STD


def normalize(x) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def klue_tokens(texts):
    directory = hub.fetch("klue/roberta-large", hub.TOKENIZER_FILES)
    tokenizer = AutoTokenizer.from_pretrained(str(directory), do_lower_case=False, strip_accents=False)
    encoded = tokenizer(texts, padding=True, return_tensors="np")
    return encoded["input_ids"], encoded["attention_mask"]


def reference_text(reference: dict, texts, positions: str = "from_zero") -> np.ndarray:
    cfg, params = reference["config"], reference["params"]
    ids, mask = klue_tokens(texts)
    if positions == "from_zero":
        position_ids = np.broadcast_to(np.arange(ids.shape[1]), ids.shape)
    else:
        position_ids = np.cumsum(mask, axis=1) * mask + cfg.text_config.pad_token_id
    module = FlaxRobertaModule(transformers_config(cfg.text_config), add_pooling_layer=True)
    pooled = module.apply({"params": params["text_model"]}, ids, mask, np.zeros_like(ids), position_ids, None)[1]
    return normalize(pooled @ params["text_projection"]["kernel"])


def reference_image(reference: dict, images) -> np.ndarray:
    cfg, params = reference["config"], reference["params"]
    pixels = np.stack([training_transform(image) for image in images])
    if cfg.vision_type == "clip":
        module = FlaxCLIPVisionModule(transformers_config(cfg.vision_config))
    else:
        module = FlaxViTModule(transformers_config(cfg.vision_config), add_pooling_layer=True)
    pooled = module.apply({"params": params["vision_model"]}, pixels)[1]
    return normalize(pooled @ params["visual_projection"]["kernel"])


@pytest.mark.parametrize("backend", ["flax", "torch"])
@pytest.mark.parametrize("name", ["koclip-base", "koclip-large"])
def test_published_model_by_name_embeds_as_trained(space, name, backend):
    reference = space[f"koclip/{name}"]
    model = koclip.load(name, backend=backend)
    assert model.name == name and model.directory.parent.name == "snapshots"
    np.testing.assert_allclose(model.encode_text(TEXTS), reference_text(reference, TEXTS), atol=1e-4)
    np.testing.assert_allclose(model.encode_image(photos()), reference_image(reference, photos()), atol=1e-4)


def test_the_two_position_conventions_differ_on_these_texts(space):
    # Otherwise the test above could not tell the published convention from RoBERTa's.
    reference = space["koclip/koclip-base"]
    gap = np.abs(reference_text(reference, TEXTS) - reference_text(reference, TEXTS, positions="roberta")).max()
    assert gap > 1e-2


def test_koclip_large_gets_the_clip_training_transform_not_vits(space):
    pixels = koclip.load("koclip-large").preprocess([Image.new("RGB", (300, 200), (255, 0, 0))])
    assert pixels.shape == (1, 224, 224, 3)
    red = (1.0 - CLIP_MEAN[0]) / CLIP_STD[0]  # ViT's mean and std of 0.5 would give 1.0
    np.testing.assert_allclose(pixels[0, ..., 0], red, atol=1e-5)


def test_published_models_use_klues_tokenizer_even_with_other_tokenizer_files(hub_cache, monkeypatch, tmp_path):
    # A published repo may also carry CLIP's English processor files; the text tower reads klue's vocabulary.
    import shutil

    import fake_hub
    import tiny

    cache, _ = hub_cache
    shutil.copytree(cache / "models--klue--roberta-large", tmp_path / "models--klue--roberta-large", symlinks=True)
    snapshot = next((cache / "models--koclip--koclip-base" / "snapshots").iterdir())
    files = {p.name: p.read_bytes() for p in snapshot.iterdir()}
    english = tiny.train_wordpiece(["a photo of a cat", "a dog on the grass"] * 8, vocab_size=60)
    english.save(tmp_path / "english")
    files |= {name: (tmp_path / "english" / name).read_bytes() for name in ("tokenizer.json", "tokenizer_config.json")}
    fake_hub.lay_repo(tmp_path, "koclip/koclip-base", files)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    model = koclip.load("koclip-base")
    assert model.text_processor.tokenizer.tokenize("이것은 고양이 이다.") == ["이것은", "고양이", "이다", "."]


def test_a_koclip_folder_honours_its_preprocessor_config(tmp_path):
    import tiny

    tiny.write_hybrid_clip(tmp_path / "src", seed=5, kind="vit")
    model = koclip.load(tmp_path / "src")
    saved = model.save(tmp_path / "saved")
    config = json.loads((saved / "preprocessor_config.json").read_text())
    assert config["image_processor_type"] == "CLIPImageProcessor" and config["crop_size"] == {"height": 32, "width": 32}
    # Another transform written there is what the saved model then uses.
    vit = {
        "image_processor_type": "ViTImageProcessor",
        "do_resize": True,
        "size": {"height": 48, "width": 48},
        "do_normalize": True,
        "image_mean": [0.5] * 3,
        "image_std": [0.25] * 3,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
    }
    (saved / "preprocessor_config.json").write_text(json.dumps(vit))
    pixels = koclip.load(saved).preprocess([Image.new("RGB", (30, 20), (255, 255, 255))])
    assert pixels.shape == (1, 48, 48, 3)
    np.testing.assert_allclose(pixels, 2.0, atol=1e-5)  # (1 - 0.5) / 0.25


def test_a_published_format_ignores_a_preprocessor_config_in_its_folder(tmp_path):
    import tiny

    tiny.write_hybrid_clip(tmp_path, seed=6, kind="vit")
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps({"image_processor_type": "ViTImageProcessor", "size": {"height": 48, "width": 48}})
    )
    pixels = koclip.load(tmp_path).preprocess([Image.new("RGB", (30, 20))])
    assert pixels.shape == (1, 32, 32, 3)  # the training transform at the tower's own size


def test_a_broken_preprocessor_config_is_a_clear_error(tmp_path):
    import tiny

    tiny.write_hybrid_clip(tmp_path / "src", seed=7, kind="conv")
    saved = koclip.load(tmp_path / "src").save(tmp_path / "saved")
    (saved / "preprocessor_config.json").write_text("{not json")
    with pytest.raises(koclip.KoCLIPError, match="preprocessor_config.json is unreadable"):
        koclip.load(saved)
    (saved / "preprocessor_config.json").write_text(json.dumps({"image_processor_type": "SiglipImageProcessor"}))
    with pytest.raises(koclip.KoCLIPError, match="does not use"):
        koclip.load(saved)


def test_a_published_model_missing_from_the_cache_says_where_and_how(space, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(koclip.ModelUnavailableError) as error:
        koclip.load("koclip-base")
    message = str(error.value)
    assert "koclip/koclip-base" in message and str(tmp_path) in message and "python -m koclip download" in message
