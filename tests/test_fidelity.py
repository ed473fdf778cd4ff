"""The published models' two training conventions that transformers' defaults do not follow: the
centre crop's offset (torchvision rounds it half to even) and the temperature (the checkpoint's
exp(logit_scale), uncapped)."""

import math

import numpy as np
import pytest
import tiny
from flax import serialization
from PIL import Image

import koclip
from koclip.patches import rank_patches
from koclip.transform import CLIP_MEAN, CLIP_STD, ImageTransform


def torchvision_center_crop(array: np.ndarray, size: int) -> np.ndarray:
    """torchvision's CenterCrop rule, written out: the offset is int(round((side - crop) / 2.0))."""
    height, width = array.shape[:2]
    top, left = int(round((height - size) / 2.0)), int(round((width - size) / 2.0))
    return array[top : top + size, left : left + size]


def training_pixels(image: Image.Image, size: int) -> np.ndarray:
    """Resize the short side (bicubic, long side truncated), crop by torchvision's rule, normalise."""
    short, long = sorted(image.size)
    new = (size, int(size * long / short)) if image.width <= image.height else (int(size * long / short), size)
    resized = np.asarray(image.resize(new, resample=Image.Resampling.BICUBIC))
    cropped = torchvision_center_crop(resized, size).astype(np.float64) * (1 / 255)
    return (cropped.astype(np.float32) - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)


@pytest.mark.parametrize("margin", [1, 3, 5, 7, 8])
def test_training_crop_follows_torchvision_on_odd_margins(margin):
    rng = np.random.default_rng(margin)
    size = 32
    image = Image.fromarray(rng.integers(0, 256, (size, size + margin, 3), dtype=np.uint8))  # wide: margin on x
    tall = image.transpose(Image.Transpose.ROTATE_90)  # and the same margin on y
    for im in (image, tall):
        ours = ImageTransform.training(size)([im])[0]
        np.testing.assert_array_equal(ours, training_pixels(im, size))
        # transformers' rule (floor) differs exactly where round-half-to-even goes up: margins 1, 3, 7
        differs = int(round(margin / 2.0)) != margin // 2
        assert differs == (not np.array_equal(ImageTransform.clip(size)([im])[0], ours))


def test_published_formats_take_the_training_crop(space, tmp_path):
    assert koclip.load("koclip-base").image_transform == ImageTransform.training(224)
    assert koclip.load("koclip-large").image_transform == ImageTransform.training(224)
    tiny.write_vision_text_dual_encoder(tmp_path / "pt")  # the koclip-base-pt layout
    assert koclip.load(tmp_path / "pt").image_transform == ImageTransform.training(32)
    assert koclip.load("koclip-mini").image_transform.crop_offset == "floor"


def test_a_saved_published_model_keeps_its_crop(space, tmp_path):
    model = koclip.load("koclip-base")
    reloaded = koclip.load(model.save(tmp_path / "saved"))
    assert reloaded.image_transform == ImageTransform.training(224)


def hybrid_clip_with_scale(directory, scale: float):
    tok = tiny.tokenizer()
    cfg, params, files = tiny.hybrid_clip_files(3, "clip", vocab_size=len(tok), noise=0.3)
    params["logit_scale"] = np.asarray(math.log(scale), np.float32)
    files["flax_model.msgpack"] = serialization.to_bytes(params)
    directory.mkdir(parents=True)
    for name, data in files.items():
        (directory / name).write_bytes(data)
    tok.save(directory)
    return directory


def test_published_probabilities_use_the_uncapped_temperature(tmp_path):
    model = koclip.load(hybrid_clip_with_scale(tmp_path / "hot", 250.0), backend="flax")
    assert model.logit_scale == pytest.approx(250.0, rel=1e-5)
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8))
    labels = ["고양이", "강아지", "자동차"]
    cosine = model.encode_image([image]) @ model.label_embeddings(labels).T
    logits = 250.0 * cosine[0].astype(np.float64)
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    got = dict(model.classify(image, labels))
    np.testing.assert_allclose([got[label] for label in labels], expected, rtol=1e-3, atol=1e-6)
    ranking = rank_patches(model, image, "고양이", rows=2, cols=2)
    patch_logits = 250.0 * ranking.cosine.astype(np.float64)
    np.testing.assert_allclose(
        ranking.probs,
        np.exp(patch_logits - patch_logits.max()) / np.exp(patch_logits - patch_logits.max()).sum(),
        rtol=1e-3,
        atol=1e-6,
    )


def test_koclip_format_keeps_the_cap(tmp_path):
    model = koclip.load(hybrid_clip_with_scale(tmp_path / "hot", 250.0), backend="flax")
    saved = koclip.load(model.save(tmp_path / "saved"), backend="flax")
    assert saved.model_format == "koclip" and saved.logit_scale == 100.0
