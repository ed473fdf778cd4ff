"""koclip's tokenizer, image transform and Flax towers compute what transformers' do, without
importing it: the same token ids, the same pixels, the same weights from the same seed."""

from __future__ import annotations

import json
from pathlib import Path

import fake_hub
import jax
import numpy as np
import pytest
import tiny
from flax.traverse_util import flatten_dict
from PIL import Image
from transformers import AutoTokenizer, CLIPImageProcessor, ViTImageProcessor
from transformers.models.clip.modeling_flax_clip import FlaxCLIPVisionModule
from transformers.models.roberta.modeling_flax_roberta import FlaxRobertaModule
from transformers.models.vit.modeling_flax_vit import FlaxViTModule

import koclip
from koclip import tokenizer
from koclip.models.config import ClipVisionConfig, RobertaConfig, VitConfig
from koclip.models.roberta import RobertaTower
from koclip.models.torch_twin import transformers_config
from koclip.models.vision import ClipVisionTower, VitTower
from koclip.transform import ImageTransform

MINI = Path(koclip.__file__).parent / "assets" / "koclip-mini"
TEXTS = [
    "이것은 고양이 이다.",
    "빨간 원",
    "",
    "  ",
    "[CLS] 빨간 [MASK] 원",
    "ABC abc Éé 東京 😀",
    "빨간 " * 300,
    "a photo of a dog",
    "파란색삼각형이있다",
    "x" * 500,
    "강아지\t두  마리가\n공원에 있다",
]


def tokenizer_folders(tmp_path):
    klue = tmp_path / "klue"
    klue.mkdir()
    for name, data in fake_hub.klue_like_tokenizer_files().items():
        (klue / name).write_bytes(data)
    vocab_only = tmp_path / "vocab-only"  # a BERT vocab.txt and its configs, no tokenizer.json
    vocab_only.mkdir()
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (vocab_only / name).write_bytes((klue / name).read_bytes())
    trained = tmp_path / "trained"
    tiny.tokenizer().save(trained)
    # koclip-mini's tokenizer.json keeps the truncation it was saved with; a load must not apply it.
    return {"klue": klue, "vocab.txt": vocab_only, "trained": trained, "koclip-mini": MINI}


def test_token_ids_and_spans_are_transformers(tmp_path):
    for label, folder in tokenizer_folders(tmp_path).items():
        ours = tokenizer.load(folder)
        theirs = AutoTokenizer.from_pretrained(str(folder), do_lower_case=False, strip_accents=False)
        for max_length in (None, 8, 66, 512):
            expected = theirs(TEXTS, truncation=max_length is not None, max_length=max_length)["input_ids"]
            assert ours.encode(TEXTS, max_length) == expected, (label, max_length)
        for text in TEXTS:
            encoded = theirs(
                text, add_special_tokens=False, return_offsets_mapping=True, truncation=True, max_length=20
            )
            assert ours.pieces(text, 20) == list(zip(encoded["input_ids"], map(tuple, encoded["offset_mapping"]))), (
                label
            )
            assert ours.tokenize(text) == theirs.tokenize(text), label
        assert (ours.pad_token_id, ours.unk_token_id, len(ours)) == (
            theirs.pad_token_id,
            theirs.unk_token_id,
            len(theirs),
        )


def test_a_lowercasing_normaliser_is_loaded_without_case_folding(tmp_path):
    folder = tokenizer_folders(tmp_path)["klue"]
    saved = json.loads((folder / "tokenizer.json").read_text())
    saved["normalizer"] = {**saved["normalizer"], "lowercase": True, "strip_accents": True}
    (folder / "tokenizer.json").write_text(json.dumps(saved))
    assert tokenizer.load(folder).tokenize("이것은 고양이 이다.") == ["이것은", "고양이", "이다", "."]


def test_an_unreadable_tokenizer_is_a_clear_error(tmp_path):
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(tokenizer.ModelUnavailableError, match="tokenizer in .* is unreadable"):
        tokenizer.load(tmp_path)
    (tmp_path / "tokenizer.json").unlink()
    with pytest.raises(tokenizer.ModelUnavailableError, match="no tokenizer.json or vocab.txt"):
        tokenizer.load(tmp_path)


def images():
    rng = np.random.default_rng(0)
    sizes = [(224, 224), (300, 500), (500, 301), (8, 160), (161, 8), (33, 31), (1000, 999), (10, 10)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in sizes]


def transformers_pixels(processor, image) -> np.ndarray:
    return processor(images=[image], return_tensors="np", input_data_format="channels_last")["pixel_values"].transpose(
        0, 2, 3, 1
    )


@pytest.mark.parametrize("size", [224, 64, 32])
def test_image_transforms_are_transformers_processors(size):
    pairs = [
        (
            ImageTransform.clip(size),
            CLIPImageProcessor(
                size={"shortest_edge": size},
                crop_size={"height": size, "width": size},
                resample=Image.Resampling.BICUBIC,
            ),
        ),
        (ImageTransform.vit(size), ViTImageProcessor(size={"height": size, "width": size})),
        # A crop larger than the resized image is zero-padded.
        (
            ImageTransform.from_dict(
                CLIPImageProcessor(
                    size={"shortest_edge": size}, crop_size={"height": size + 7, "width": size + 5}
                ).to_dict()
            ),
            CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size + 7, "width": size + 5}),
        ),
    ]
    for ours, theirs in pairs:
        assert ImageTransform.from_dict(theirs.to_dict()) == ours
        reread = type(theirs).from_dict(ours.to_dict())  # what koclip saves, transformers reads as the same
        for image in images():
            np.testing.assert_array_equal(ours([image]), transformers_pixels(theirs, image))
            np.testing.assert_array_equal(ours([image]), transformers_pixels(reread, image))


def test_older_feature_extractor_files_are_read():
    clip = ImageTransform.from_dict({"feature_extractor_type": "CLIPFeatureExtractor", "size": 224, "crop_size": 224})
    vit = ImageTransform.from_dict({"feature_extractor_type": "ViTFeatureExtractor", "size": 64})
    assert clip == ImageTransform.clip(224) and vit == ImageTransform.vit(64)


TOWERS = [
    (
        RobertaTower,
        FlaxRobertaModule,
        RobertaConfig(
            vocab_size=100,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            max_position_embeddings=40,
            type_vocab_size=1,
        ),
    ),
    (
        ClipVisionTower,
        FlaxCLIPVisionModule,
        ClipVisionConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
        ),
    ),
    (
        VitTower,
        FlaxViTModule,
        VitConfig(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=32,
            patch_size=8,
            hidden_dropout_prob=0.1,
        ),
    ),
]


@pytest.mark.parametrize("ours, theirs, config", TOWERS, ids=["roberta", "clip", "vit"])
def test_towers_initialise_and_compute_as_transformers_flax_modules(ours, theirs, config):
    rng = jax.random.PRNGKey(0)
    ours = ours(config)
    theirs = theirs(
        transformers_config(config), **({} if theirs is FlaxCLIPVisionModule else {"add_pooling_layer": True})
    )
    if isinstance(config, RobertaConfig):
        ids = np.random.default_rng(0).integers(0, 100, (2, 9))
        mask = np.array([[1] * 9, [1] * 5 + [0] * 4])
        inputs = (ids, mask, np.zeros_like(ids), np.broadcast_to(np.arange(9), ids.shape))
        their_inputs = inputs + (None,)  # no head mask
    else:
        inputs = their_inputs = (np.random.default_rng(1).standard_normal((2, 32, 32, 3)).astype(np.float32),)
    params = ours.init(rng, *inputs)["params"]
    theirs_params = theirs.init(rng, *their_inputs)["params"]
    flat, their_flat = flatten_dict(params), flatten_dict(theirs_params)
    assert flat.keys() == their_flat.keys() and all(np.array_equal(flat[k], their_flat[k]) for k in flat)
    for deterministic in (True, False):  # dropout too draws the same masks
        kwargs = {"deterministic": deterministic, "rngs": {"dropout": rng}}
        out, ref = (
            ours.apply({"params": params}, *inputs, **kwargs),
            theirs.apply({"params": params}, *their_inputs, **kwargs),
        )
        np.testing.assert_allclose(out[0], ref[0], atol=1e-6)
        np.testing.assert_allclose(out[1], ref[1], atol=1e-6)
    if isinstance(config, RobertaConfig):
        return
    # The last layer for the first token alone, as the dual encoder runs image towers: the same pooled output.
    first = ours.clone(first_only=True).apply({"params": params}, *inputs)
    assert first[0].shape[1] == 1
    np.testing.assert_allclose(first[1], theirs.apply({"params": params}, *their_inputs)[1], atol=1e-5)
