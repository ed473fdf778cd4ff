"""koclip-mini, the model that ships with the package, loads offline and knows its scenes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import koclip
from koclip.data import scenes
from koclip.patches import rank_patches
from koclip.training import evaluate


@pytest.fixture(scope="module")
def mini():
    return koclip.load("koclip-mini")


def test_loads_offline_from_the_package(mini):
    assert mini.name == "koclip-mini" and mini.directory.is_dir()
    assert mini.config.vision_type == "koclip_conv"


def test_loading_and_classifying_imports_neither_transformers_nor_pytorch():
    # Both are installed here; a Flax load reads its own towers, tokenizer and image transform.
    script = (
        "import sys, koclip, PIL.Image\n"
        "model = koclip.load('koclip-mini')\n"
        "print(model.classify(PIL.Image.new('RGB', (64, 64), 'red'), ['빨간 원', '파란 삼각형'])[0][0])\n"
        "print(sorted(m for m in ('transformers', 'torch') if m in sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "USE_TORCH"}
    out = subprocess.run(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[1],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    assert out.stdout.splitlines() == ["빨간 원", "[]"]


def test_a_blue_triangle_is_called_a_blue_triangle(mini):
    image = scenes.single_object("삼각형", "파란", seed=3)
    labels = ["빨간 원", "파란 사각형", "파란 삼각형", "초록 삼각형", "노란 별"]
    assert mini.classify(image, labels)[0][0] == "파란 삼각형"


def test_shape_and_colour_of_unseen_scenes(mini):
    result = evaluate.zero_shot_on_scenes(mini, evaluate.single_objects(200, seed=424_242, size=64))
    assert result["shape"] >= 0.95 and result["color"] >= 0.95


def test_the_yellow_star_patch_wins(mini):
    for index in range(5):
        board = scenes.composite(seed=9, index=index)
        star = next((o for o in board.objects if (o["color"], o["shape"]) == ("노란", "별")), None)
        if star is None:
            continue
        ranking = rank_patches(mini, board.image, "노란 별", 3, 3)
        assert ranking.cell(ranking.order[0]) == tuple(star["cell"])
        assert ranking.probs[ranking.order[0]] > 0.5
        return
    pytest.fail("no composite with a yellow star among the first five")


def test_text_retrieval_finds_red_circles(mini):
    gallery = scenes.generate(300, seed=515)
    images = mini.encode_image([s.image for s in gallery])
    top = np.argsort(-(images @ mini.encode_text(["빨간 원"])[0]))[:5]
    query = scenes.Query((scenes.ObjectSpec(shape="원", color="빨간"),))
    assert all(scenes.matches(query, gallery[i].objects) for i in top)


def test_colour_is_bound_to_shape(mini):
    # Each pair holds the same shapes and colours; only which colour goes with which shape differs.
    preferred = evaluate.binding(mini, [scenes.swapped_pair(seed=31, index=i) for i in range(60)])
    assert preferred >= 0.9, f"the described scene wins {preferred:.2f} of the time; a bag of words wins half"


def test_flax_and_torch_agree_on_the_shipped_weights(mini):
    torch_mini = koclip.load("koclip-mini", backend="torch")
    image = scenes.single_object("별", "노란")
    np.testing.assert_allclose(mini.encode_image([image]), torch_mini.encode_image([image]), atol=1e-4)
    np.testing.assert_allclose(mini.encode_text(["노란 별"]), torch_mini.encode_text(["노란 별"]), atol=1e-4)
