"""`python -m koclip export ... --format onnx`: two ONNX graphs that onnxruntime alone runs, and
`koclip.load` runs as backend="onnx" with neither PyTorch nor JAX imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from PIL import Image

import koclip
from koclip import export
from koclip.errors import InvalidInputError

ROOT = Path(__file__).resolve().parents[1]
TEXTS = ["빨간 원", "파란 삼각형이 왼쪽에 있다 " * 8, "이것은 고양이 이다."]


def pictures(n: int = 5) -> list[Image.Image]:
    rng = np.random.default_rng(2)
    return [Image.fromarray(rng.integers(0, 256, (40 + 7 * i, 60 - 3 * i, 3), dtype=np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def mini_export(tmp_path_factory):
    return export.to_onnx("koclip-mini", tmp_path_factory.mktemp("onnx") / "mini")


def test_onnxruntime_alone_computes_koclip_embeddings(mini_export):
    ours = koclip.load("koclip-mini", backend="flax")
    text = onnxruntime.InferenceSession(str(mini_export / "text_model.onnx"))
    vision = onnxruntime.InferenceSession(str(mini_export / "vision_model.onnx"))
    for texts in (TEXTS[:1], TEXTS):  # batch and sequence lengths other than the traced ones
        ids, mask = ours.text_processor(texts)
        got = text.run(None, {"input_ids": ids.astype(np.int64), "attention_mask": mask.astype(np.int64)})[0]
        np.testing.assert_allclose(got, ours.encode_text(texts), atol=1e-4)
    for n in (1, 5):
        pixels = ours.preprocess(pictures(n))
        got = vision.run(None, {"pixel_values": pixels.transpose(0, 3, 1, 2).copy()})[0]
        np.testing.assert_allclose(got, ours.encode_image(pictures(n)), atol=1e-4)


def test_koclip_load_runs_the_export(mini_export):
    ours = koclip.load("koclip-mini", backend="flax")
    model = koclip.load(mini_export)
    assert model.backend.name == "onnx" and koclip.load(mini_export, backend="onnx").backend.name == "onnx"
    np.testing.assert_allclose(model.encode_text(TEXTS), ours.encode_text(TEXTS), atol=1e-4)
    np.testing.assert_allclose(model.encode_image(pictures()), ours.encode_image(pictures()), atol=1e-4)
    labels = ["빨간 원", "파란 별", "노란 삼각형"]
    got, expected = model.classify(pictures(1)[0], labels), ours.classify(pictures(1)[0], labels)
    assert [label for label, _ in got] == [label for label, _ in expected]
    np.testing.assert_allclose([p for _, p in got], [p for _, p in expected], atol=1e-4)
    assert model.logit_scale == pytest.approx(ours.logit_scale) and model.image_transform == ours.image_transform


def test_a_published_model_keeps_its_conventions(space, tmp_path):
    ours = koclip.load("koclip-large", backend="flax")
    model = koclip.load(export.to_onnx("koclip-large", tmp_path / "large"))
    assert model.image_transform.crop_offset == "round" and model.logit_scale == pytest.approx(ours.logit_scale)
    np.testing.assert_allclose(model.encode_text(TEXTS), ours.encode_text(TEXTS), atol=1e-4)
    np.testing.assert_allclose(model.encode_image(pictures(2)), ours.encode_image(pictures(2)), atol=1e-4)


def test_loading_the_export_imports_neither_torch_nor_jax(mini_export):
    code = (
        "import sys, koclip\n"
        f"model = koclip.load({str(mini_export)!r})\n"
        "model.classify(__import__('PIL.Image').Image.new('RGB', (40, 40), 'red'), ['빨간 원', '파란 별'])\n"
        "print(sorted(m for m in ('torch', 'jax', 'jaxlib', 'flax', 'transformers') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items()} | {"PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_wrong_backends_and_broken_exports_are_refused(mini_export, tmp_path):
    with pytest.raises(InvalidInputError, match='backend="onnx" only'):
        koclip.load(mini_export, backend="flax")
    with pytest.raises(InvalidInputError, match="--format onnx"):
        koclip.load("koclip-mini", backend="onnx")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "koclip_onnx.json").write_text(json.dumps({"format": "koclip-onnx"}))
    with pytest.raises(koclip.KoCLIPError, match="lacks text_model.onnx"):
        koclip.load(broken)


def test_the_cli_exports(tmp_path):
    from koclip.cli import main as cli

    assert cli(["export", "koclip-mini", str(tmp_path / "out"), "--format", "onnx"]) == 0
    assert (tmp_path / "out" / "vision_model.onnx").is_file() and (tmp_path / "out" / "README.md").is_file()
