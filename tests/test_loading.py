"""Checkpoints in every published format load through koclip.load and match transformers: its
models, tokenizers and image processors compute the reference embeddings."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import tiny
import torch
from PIL import Image
from transformers import (
    AutoTokenizer,
    CLIPImageProcessor,
    FlaxVisionTextDualEncoderModel,
    VisionTextDualEncoderConfig,
    VisionTextDualEncoderModel,
)

import koclip
from koclip.models.torch_twin import transformers_config

TEXTS = ["이것은 고양이 이다.", "a photo of a dog", "빨간 자동차가 도로 위에 있다 그리고 강아지 두 마리"]


def images():
    rng = np.random.default_rng(0)
    return [
        Image.fromarray(rng.integers(0, 255, (40, 56, 3), dtype=np.uint8)),
        Image.new("RGB", (32, 32), (200, 30, 30)),
        Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8)),
    ]


def normalize(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def reference_inputs(directory, image_size: int):
    """Token ids, mask and NHWC pixels as transformers makes them for a published-format folder."""
    tokenizer = AutoTokenizer.from_pretrained(str(directory), do_lower_case=False, strip_accents=False)
    tok = tokenizer(TEXTS, padding=True, return_tensors="np")
    processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        resample=Image.Resampling.BICUBIC,
    )  # the transform the published models were trained with
    pixels = processor(images=images(), return_tensors="np", input_data_format="channels_last")["pixel_values"]
    return tok["input_ids"], tok["attention_mask"], pixels.transpose(0, 2, 3, 1)


def positions_from_zero(mask):
    """The published models' text positions (see koclip.models.config.TEXT_POSITIONS)."""
    return np.broadcast_to(np.arange(mask.shape[1]), mask.shape)


@pytest.fixture(scope="module", params=["clip", "vit"])
def hybrid_clip(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"hybrid-{request.param}")
    cfg, params = tiny.write_hybrid_clip(directory, seed=1, kind=request.param)
    return directory, cfg, params


def test_hybrid_clip_checkpoint_matches_transformers_flax(hybrid_clip):
    directory, cfg, params = hybrid_clip
    model = koclip.load(directory)
    ids, mask, pixels = reference_inputs(directory, cfg.image_size)
    ref_config = VisionTextDualEncoderConfig.from_vision_text_configs(
        transformers_config(cfg.vision_config), transformers_config(cfg.text_config), projection_dim=cfg.projection_dim
    )
    reference = FlaxVisionTextDualEncoderModel(ref_config)
    ref_text = reference.get_text_features(
        jnp.asarray(ids), jnp.asarray(mask), position_ids=jnp.asarray(positions_from_zero(mask)), params=params
    )
    ref_image = reference.get_image_features(jnp.asarray(pixels), params=params)  # NHWC, see STACK.md
    np.testing.assert_allclose(model.encode_text(TEXTS), normalize(ref_text), atol=1e-5)
    np.testing.assert_allclose(model.encode_image(images()), normalize(ref_image), atol=1e-5)


@pytest.fixture(scope="module")
def pytorch_export(tmp_path_factory):
    directory = tmp_path_factory.mktemp("vtde")
    tiny.write_vision_text_dual_encoder(directory, seed=2)
    return directory


@pytest.mark.parametrize("backend", ["flax", "torch"])
def test_pytorch_export_matches_transformers_torch(pytorch_export, backend):
    model = koclip.load(pytorch_export, backend=backend)
    ids, mask, pixels = reference_inputs(pytorch_export, model.config.image_size)
    reference = VisionTextDualEncoderModel.from_pretrained(pytorch_export).eval()
    with torch.no_grad():
        ref_text = reference.get_text_features(
            input_ids=torch.from_numpy(ids),
            attention_mask=torch.from_numpy(mask),
            position_ids=torch.from_numpy(np.ascontiguousarray(positions_from_zero(mask))),
        )
        ref_image = reference.get_image_features(pixel_values=torch.from_numpy(pixels.transpose(0, 3, 1, 2)))
    np.testing.assert_allclose(model.encode_text(TEXTS), normalize(ref_text), atol=1e-5)
    np.testing.assert_allclose(model.encode_image(images()), normalize(ref_image), atol=1e-5)


@pytest.mark.parametrize("kind", ["clip", "vit", "conv"])
def test_flax_and_torch_backends_agree(tmp_path, kind):
    tiny.write_hybrid_clip(tmp_path, seed=3, kind=kind)
    flax_model, torch_model = koclip.load(tmp_path), koclip.load(tmp_path, backend="torch")
    np.testing.assert_allclose(flax_model.encode_text(TEXTS), torch_model.encode_text(TEXTS), atol=1e-4)
    np.testing.assert_allclose(flax_model.encode_image(images()), torch_model.encode_image(images()), atol=1e-4)
    assert flax_model.logit_scale == pytest.approx(torch_model.logit_scale)


@pytest.mark.parametrize("backend", ["flax", "torch"])
def test_koclip_save_round_trips(tmp_path, backend):
    tiny.write_hybrid_clip(tmp_path / "src", seed=4, kind="conv")
    original = koclip.load(tmp_path / "src", backend=backend)
    saved = original.save(tmp_path / "saved")
    assert (saved / "config.json").is_file() and (saved / "tokenizer.json").is_file()
    reloaded = koclip.load(saved)
    np.testing.assert_allclose(reloaded.encode_text(TEXTS), original.encode_text(TEXTS), atol=1e-5)
    np.testing.assert_allclose(reloaded.encode_image(images()), original.encode_image(images()), atol=1e-5)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temporary folders were left behind"


def test_embeddings_are_unit_float32_rows(hybrid_clip):
    model = koclip.load(hybrid_clip[0])
    text, image = model.encode_text(TEXTS), model.encode_image(images())
    assert text.dtype == image.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(image, axis=1), 1, atol=1e-5)
    # Batching and padding to buckets must not change a row's embedding.
    np.testing.assert_allclose(model.encode_text(TEXTS[1:2])[0], text[1], atol=1e-5)


@pytest.mark.parametrize("kind", ["clip", "vit"])
def test_checkpoints_laid_without_transformers_hold_what_transformers_writes(kind):
    # tests/data/transformers_configs.json stands in for transformers where the fake Hub is laid.
    def as_written(config) -> dict:  # through JSON, as config.json holds it
        return json.loads(config.to_json_string(use_diff=False))

    cfg = tiny.config(kind, 300, 224)
    assert tiny.transformers_dict(cfg.text_config) == as_written(transformers_config(cfg.text_config))
    assert tiny.transformers_dict(cfg.vision_config) == as_written(transformers_config(cfg.vision_config))
    if kind == "clip":
        from transformers import CLIPConfig

        _, _, files = tiny.hybrid_clip_files(0, "clip", 224, "clip")
        written = json.loads(files["config.json"])["vision_config"]
        assert written == as_written(CLIPConfig(vision_config=transformers_config(cfg.vision_config).to_dict()))


def test_the_fake_klue_tokenizer_files_are_what_transformers_saves(tmp_path):
    import fake_hub
    from transformers import BertTokenizerFast

    files = fake_hub.klue_like_tokenizer_files()
    (tmp_path / "vocab.txt").write_bytes(files["vocab.txt"])
    saved = tmp_path / "saved"
    BertTokenizerFast(
        vocab_file=str(tmp_path / "vocab.txt"),
        do_lower_case=False,
        strip_accents=None,
        bos_token="[CLS]",
        eos_token="[SEP]",
        model_max_length=512,
    ).save_pretrained(saved)
    assert json.loads((saved / "tokenizer.json").read_text()) == json.loads(files["tokenizer.json"])
    expected = json.loads((saved / "tokenizer_config.json").read_text()) | {"tokenizer_class": "BertTokenizer"}
    assert expected == json.loads(files["tokenizer_config.json"])
