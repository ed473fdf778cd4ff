"""The encoding API: templates and ensembles, compile buckets, image modes and orientation."""

import io
import threading

import numpy as np
import pytest
import tiny
from PIL import Image

import koclip
from koclip.images import open_image


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("api-model")
    tiny.write_hybrid_clip(directory, seed=5, kind="conv")
    return koclip.load(directory)


def test_template_changes_the_encoded_text(model):
    assert model.prompts(["고양이"]) == [["이것은 고양이 이다."]]
    assert model.prompts(["고양이"], template=None) == [["고양이"]]
    ensemble = ["이것은 {} 이다.", "{} 사진", "a photo of {}"]
    assert model.prompts(["고양이"], template=ensemble) == [["이것은 고양이 이다.", "고양이 사진", "a photo of 고양이"]]


def test_classify_encodes_the_template_and_averages_an_ensemble(model, monkeypatch):
    seen = []
    original = model.encode_text
    monkeypatch.setattr(model, "encode_text", lambda texts: seen.extend(texts) or original(texts))
    image = Image.new("RGB", (40, 40), (10, 200, 10))
    model.classify(image, ["고양이", "강아지"])
    assert seen == ["이것은 고양이 이다.", "이것은 강아지 이다."]
    seen.clear()
    model.classify(image, ["고양이", "강아지"], template=None)
    assert seen == ["고양이", "강아지"]
    ensemble = ["이것은 {} 이다.", "{} 사진"]
    combined = model.label_embeddings(["고양이"], ensemble)[0]
    mean = original(["이것은 고양이 이다.", "고양이 사진"]).mean(axis=0)
    np.testing.assert_allclose(combined, mean / np.linalg.norm(mean), atol=1e-6)


def test_classify_returns_sorted_probabilities_that_follow_similarity(model):
    image = Image.new("RGB", (40, 40), (200, 10, 10))
    labels = ["고양이", "강아지", "자동차", "바다"]
    result = model.classify(image, labels)
    probs = [p for _, p in result]
    assert sorted(labels) == sorted(label for label, _ in result)
    assert probs == sorted(probs, reverse=True) and sum(probs) == pytest.approx(1, abs=1e-5)
    sims = model.encode_image([image]) @ model.label_embeddings(labels).T
    assert result[0][0] == labels[int(np.argmax(sims))]


@pytest.mark.parametrize("labels", [[], ["", "  "]])
def test_empty_labels_are_refused(model, labels):
    with pytest.raises(koclip.InvalidInputError, match="no labels"):
        model.classify(Image.new("RGB", (8, 8)), labels)


def test_template_without_placeholder_is_refused(model):
    with pytest.raises(koclip.InvalidInputError, match="{}"):
        model.prompts(["고양이"], template="이것은 이다.")


def test_too_many_labels_or_templates_are_refused_before_any_is_read(model):
    from koclip.api import MAX_LABELS, MAX_TEMPLATES

    with pytest.raises(koclip.InvalidInputError, match=f"the limit is {MAX_LABELS}"):
        model.prompts([f"라벨{i}" for i in range(MAX_LABELS + 1)])
    with pytest.raises(koclip.InvalidInputError, match=f"the limit is {MAX_TEMPLATES}"):
        model.prompts(["고양이"], template=["{} 사진"] * 1_000_000)


def test_long_text_is_truncated_not_refused(model):
    query = "고양이 " * 5000
    assert model.is_truncated(query) and not model.is_truncated("고양이")
    assert model.encode_text([query]).shape == (1, model.dim)


def test_queries_of_many_lengths_compile_once_per_bucket(model):
    backend = model.backend
    before = backend.compilations
    words = "빨간 자동차가 도로 위에 있다 그리고 강아지".split()
    for i in range(50):
        model.encode_text([" ".join(words[: 1 + i % len(words)] * (1 + i // 10))])
    used = {model.text_processor(["x " * n])[0].shape[1] for n in range(1, 64)}
    assert backend.compilations - before <= len(used)


def test_after_warm_up_no_query_or_image_batch_compiles(model):
    assert model.warm_up() > 0
    backend = model.backend
    before = backend.compilations
    for n in (1, 3, 7, 20, 45, 90, 150, 200):  # 1 to 200 words: every length bucket, and truncation
        model.encode_text(["빨간 원 " * n])
        model.encode_text(["파란 별"] * min(n, 70))  # batches of every size bucket, and two batches
    model.encode_image([Image.new("RGB", (40, 30))] * 9)  # a 3x3 patch grid
    model.classify(Image.new("RGB", (20, 20)), ["빨간 원", "파란 별", "노란 하트"])
    assert backend.compilations == before


def test_warm_up_stops_when_asked(model):
    stop = threading.Event()
    stop.set()
    assert model.warm_up(stop) == 0


def test_image_modes_become_rgb_and_exif_orientation_is_applied():
    rgba = Image.new("RGBA", (30, 20), (255, 0, 0, 0))
    assert open_image(rgba).getpixel((0, 0)) == (255, 255, 255)  # transparent becomes white
    for mode in ("L", "P", "CMYK", "I;16", "1"):
        assert open_image(Image.new(mode, (30, 20))).mode == "RGB"
    rotated = Image.new("RGB", (30, 20), (0, 0, 255))
    exif = rotated.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    buffer = io.BytesIO()
    rotated.save(buffer, format="JPEG", exif=exif.tobytes())
    assert open_image(buffer.getvalue()).size == (20, 30)


@pytest.mark.parametrize("name, weights", [("koclip-base", 425e6), ("koclip-large", 642e6)])
def test_published_architectures_have_the_published_sizes(name, weights):
    import jax

    from koclip.models.dual_encoder import param_shapes
    from koclip.registry import published_architecture

    shapes = param_shapes(published_architecture(name))
    count = sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(shapes))
    assert abs(count - weights) / weights < 0.01
    assert set(shapes) == {"text_model", "vision_model", "text_projection", "visual_projection", "logit_scale"}


def test_a_random_full_size_model_encodes_like_a_loaded_one():
    model = koclip.random_model("koclip-base")
    assert model.name == "koclip-base (random weights)" and model.dim == 512
    texts = model.encode_text(["빨간 자동차", "파란 바다 위의 배"])
    images = model.encode_image([Image.new("RGB", (300, 200), "red"), Image.new("RGB", (224, 224), "blue")])
    assert texts.shape == images.shape == (2, 512)
    np.testing.assert_allclose(np.linalg.norm(np.concatenate([texts, images]), axis=1), 1.0, atol=1e-5)
    assert not np.allclose(texts[0], texts[1])
    with pytest.raises(koclip.KoCLIPError, match="no published architecture named 'koclip-mini'"):
        koclip.random_model("koclip-mini")


def test_the_flax_backend_gives_back_the_weights_it_was_given(tmp_path):
    from flax.traverse_util import flatten_dict

    from koclip import checkpoint

    tiny.write_hybrid_clip(tmp_path, seed=5, kind="conv")
    given = flatten_dict(checkpoint.read(tmp_path).flax_params)
    held = flatten_dict(koclip.load(tmp_path, backend="flax").backend.flax_params())
    assert held.keys() == given.keys()
    for key, value in given.items():  # text kernels are held transposed, and turned back here
        np.testing.assert_array_equal(held[key], value, err_msg="/".join(key))


def test_auto_runs_full_size_models_on_pytorch_where_it_can_and_small_ones_on_flax(model, monkeypatch):
    from koclip.models import backends

    monkeypatch.setattr(backends, "torch_usable", lambda: True)
    assert backends.resolve("auto", 425_000_000) == "torch"
    assert backends.resolve("auto", 600_000) == "flax"  # koclip-mini's size: PyTorch's import costs more
    assert backends.resolve("flax", 425_000_000) == "flax"
    monkeypatch.setattr(backends, "torch_usable", lambda: False)  # not installed, or USE_TORCH=0
    assert backends.resolve("auto", 425_000_000) == "flax"
    assert model.backend.name == "flax"  # a tiny model loaded with the default


def test_bfloat16_embeddings_agree_with_float32(model_dir):
    torch = pytest.importorskip("torch")
    full = koclip.load(model_dir, backend="torch")
    half = koclip.load(model_dir, backend="torch", precision="bfloat16")
    texts = ["빨간 원", "파란 삼각형과 노란 사각형", "초록 원 " * 20]
    images = [Image.new("RGB", (64, 64), colour) for colour in ("red", "blue", "yellow")]
    for a, b in (
        (full.encode_text(texts), half.encode_text(texts)),
        (full.encode_image(images), half.encode_image(images)),
    ):
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
        assert (a * b).sum(axis=1).min() >= 0.99
    assert {p.dtype for p in half.backend.model.parameters()} == {torch.bfloat16}


@pytest.mark.parametrize(
    "backend, precision, message",
    [
        ("flax", "bfloat16", 'runs on the PyTorch twin only: pass backend="torch"'),
        ("torch", "float16", "unknown precision 'float16'"),
    ],
)
def test_a_precision_the_backend_cannot_run_is_refused(model_dir, backend, precision, message):
    with pytest.raises(koclip.KoCLIPError, match=message):
        koclip.load(model_dir, backend=backend, precision=precision)


def test_the_torch_backend_says_why_it_cannot_run_where_transformers_may_not_use_pytorch(model_dir, monkeypatch):
    from koclip.models import backends

    monkeypatch.setattr(backends, "torch_usable", lambda: False)  # as under USE_TORCH=0
    with pytest.raises(koclip.KoCLIPError, match="USE_TORCH=0"):
        koclip.load(model_dir, backend="torch")


def test_without_transformers_flax_runs_and_the_torch_backend_says_what_to_install(model_dir, monkeypatch):
    import sys

    from koclip.models import backends

    for name in [m for m in sys.modules if m.split(".")[0] == "transformers"] + ["transformers"]:
        monkeypatch.setitem(sys.modules, name, None)  # as where it is not installed (a Space)
    assert koclip.load(model_dir).encode_text(["빨간 원"]).shape[0] == 1  # backend="auto" falls back to Flax
    assert backends.resolve("auto", 10**9) == "flax"
    with pytest.raises(
        koclip.KoCLIPError, match="transformers is not installed: pip install -r requirements-torch.txt"
    ):
        koclip.load(model_dir, backend="torch")


def test_the_torch_backend_refuses_a_checkpoint_that_lacks_a_weight(model_dir):
    # PyTorch's model is built without initialising its weights: every one must come from the checkpoint.
    from koclip import checkpoint
    from koclip.models import backends, convert

    ckpt = checkpoint.read(model_dir)
    state = convert.flax_to_torch(ckpt.flax_params)
    assert backends.TorchBackend(ckpt.config, state).model.text_projection.weight.abs().sum() > 0
    del state["text_projection.weight"]
    with pytest.raises(koclip.KoCLIPError, match="lacks 1 weights, e.g. text_projection.weight"):
        backends.TorchBackend(ckpt.config, state)
