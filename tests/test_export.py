"""`python -m koclip export ... --format transformers`: stock transformers, given the folder alone,
computes koclip's embeddings and its zero-shot ranking; what it cannot express is refused."""

from __future__ import annotations

import numpy as np
import pytest
import tiny
import torch
import yaml
from PIL import Image
from transformers import (
    AutoModel,
    AutoProcessor,
    VisionTextDualEncoderModel,
    VisionTextDualEncoderProcessor,
    pipeline,
)

import koclip
from koclip import export
from koclip.cli import main as cli
from koclip.errors import InvalidInputError
from koclip.models.config import POSITIONS_ROBERTA
from koclip.transform import ImageTransform

LABELS = ["고양이", "강아지", "자동차"]
# Short and long texts: at every length RoBERTa's numbering (from padding_idx + 1) differs from training's.
TEXTS = ["이것은 고양이 이다.", "빨간 자동차가 도로 위에 있다", "강아지 두 마리가 공원에 있다 " * 6]


def photos(margin_even: bool = True, size: int = 224) -> list[Image.Image]:
    """Images whose margin after the resize to `size` is even (both crop rules agree) or odd."""
    rng = np.random.default_rng(1)
    if margin_even:  # the short side 2s resizes to s, the long 2s + 8 to s + 4: a margin of 4
        sizes = [(2 * size, 2 * size + 8), (size, size + 36), (size + 50, size)]
    else:
        sizes = [(size, size + 3), (size + 7, size)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def stock_embeddings(folder, texts, images):
    """Text and image embeddings from stock transformers given the folder and nothing else."""
    model = VisionTextDualEncoderModel.from_pretrained(folder).eval()
    processor = VisionTextDualEncoderProcessor.from_pretrained(folder)
    with torch.no_grad():
        text = model.get_text_features(**processor(text=texts, return_tensors="pt", padding=True))
        image = model.get_image_features(**processor(images=images, return_tensors="pt"))
    unit = torch.nn.functional.normalize
    return unit(text, dim=-1).numpy(), unit(image, dim=-1).numpy()


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """Folders to export beside the fake Hub's: koclip-base-pt's layout, and koclip's own format with
    positions from zero (a saved published model) and with RoBERTa's (a trained one)."""
    root = tmp_path_factory.mktemp("sources")
    tiny.write_vision_text_dual_encoder(root / "base-pt", seed=4)
    own = koclip.load(tiny.write_hybrid_clip(root / "hybrid", seed=5, kind="vit") and root / "hybrid")
    own.save(root / "koclip-from-zero")
    cfg = tiny.config("clip", len(tiny.tokenizer()))
    assert cfg.text_positions == POSITIONS_ROBERTA
    from koclip import checkpoint
    from koclip.models.dual_encoder import init_params

    checkpoint.save(root / "koclip-roberta", cfg, init_params(cfg, 6), tiny.tokenizer(), ImageTransform.clip(32))
    return root


@pytest.mark.parametrize("source", ["koclip-base", "koclip-large", "base-pt", "koclip-from-zero", "koclip-roberta"])
def test_stock_transformers_computes_koclip_embeddings(space, sources, tmp_path, source):
    name = str(sources / source) if (sources / source).is_dir() else source
    ours = koclip.load(name, backend="flax")
    out = export.to_transformers(name, tmp_path / "out")
    images = photos(size=ours.config.image_size)
    text, image = stock_embeddings(out, TEXTS, images)
    np.testing.assert_allclose(text, ours.encode_text(TEXTS), atol=1e-4)
    # transformers' processor floors the crop offset; on these images both rules agree
    np.testing.assert_allclose(image, ours.encode_image(images), atol=1e-4)
    # koclip reads the export back as the model it came from; a published model's crop and temperature too
    back = koclip.load(out, backend="flax")
    np.testing.assert_allclose(back.encode_text(TEXTS), ours.encode_text(TEXTS), atol=1e-5)
    if ours.model_format != "koclip":
        assert back.image_transform == ours.image_transform and back.logit_scale == pytest.approx(ours.logit_scale)


def test_the_only_image_difference_is_the_one_pixel_crop(space, tmp_path):
    ours = koclip.load("koclip-base", backend="flax")
    out = export.to_transformers("koclip-base", tmp_path / "out")
    _, image = stock_embeddings(out, TEXTS[:1], photos(margin_even=False))
    floored = ours.encode_pixels(ImageTransform.clip(224)([im.convert("RGB") for im in photos(margin_even=False)]))
    np.testing.assert_allclose(image, floored, atol=1e-4)
    assert np.abs(image - ours.encode_image(photos(margin_even=False))).max() > 1e-3


def test_an_unshifted_export_gets_the_text_wrong(space, tmp_path):
    ours = koclip.load("koclip-base", backend="flax")
    out = export.to_transformers("koclip-base", tmp_path / "out", shift=False)
    text, _ = stock_embeddings(out, TEXTS, photos()[:1])
    assert np.abs(text - ours.encode_text(TEXTS)).max() > 1e-2


def test_auto_classes_and_the_folder(space, tmp_path):
    out = export.to_transformers("koclip-base", tmp_path / "out")
    assert isinstance(AutoModel.from_pretrained(out), VisionTextDualEncoderModel)
    processor = AutoProcessor.from_pretrained(out)
    assert isinstance(processor, VisionTextDualEncoderProcessor)
    assert processor.tokenizer.model_max_length == koclip.load("koclip-base").max_text_length == 64
    image = processor.image_processor
    assert (image.size, image.crop_size, image.resample) == (
        {"shortest_edge": 224},
        {"height": 224, "width": 224},
        Image.Resampling.BICUBIC,
    )
    assert (out / "model.safetensors").is_file() and not (out / "pytorch_model.bin").exists()


def test_the_model_card_has_the_hub_header(space, tmp_path):
    out = export.to_transformers("koclip-large", tmp_path / "out")
    card = (out / "README.md").read_text(encoding="utf-8")
    header = yaml.safe_load(card.split("---")[1])
    assert header["pipeline_tag"] == "zero-shot-image-classification" and header["language"] == "ko"
    assert header["license"] == "apache-2.0" and "klue/roberta-large" in header["base_model"]
    assert "padding_idx + 1" in card and "one pixel" in card and "AutoModel.from_pretrained" in card


def test_the_zero_shot_pipeline_ranks_as_classify(space, tmp_path):
    ours = koclip.load("koclip-base", backend="flax")
    out = export.to_transformers("koclip-base", tmp_path / "out")
    classifier = pipeline("zero-shot-image-classification", model=str(out), device="cpu")
    for image in photos():
        theirs = classifier(image, candidate_labels=LABELS, hypothesis_template=koclip.DEFAULT_TEMPLATE)
        expected = ours.classify(image, LABELS)
        assert [r["label"] for r in theirs] == [label for label, _ in expected]
        np.testing.assert_allclose([r["score"] for r in theirs], [p for _, p in expected], atol=1e-4)


def test_koclip_mini_is_refused_with_the_reason(tmp_path, capsys):
    with pytest.raises(InvalidInputError, match="CNN.*transformers has no"):
        export.to_transformers("koclip-mini", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert cli(["export", "koclip-mini", str(tmp_path / "out")]) == 2
    assert "--format onnx instead" in capsys.readouterr().err


def test_a_folder_holding_files_is_not_overwritten(tmp_path, capsys):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    assert cli(["export", "koclip-mini", str(tmp_path / "out"), "--format", "onnx"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (tmp_path / "out" / "keep.txt").read_text() == "mine"
