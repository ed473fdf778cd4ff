"""How well koclip.domain tells generated scenes from photos, measured on scenes the shipped model
never saw (seed 777; it was trained on seed 0) and on the photos that ship with installed packages."""

from __future__ import annotations

import io

import pytest
from PIL import Image

import koclip
from koclip import domain
from koclip.data import samples, scenes
from koclip.search import gallery

HELD_OUT_SEED = 777


def flagged(images) -> list[bool]:
    return [domain.scene_likeness(image) < domain.THRESHOLD for image in images]


def jpeg(image: Image.Image, quality: int = 75) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return Image.open(buffer)


@pytest.fixture(scope="module")
def photos() -> list[Image.Image]:
    return [koclip.open_image(photo.path) for photo in samples.sample_photos()]


def test_held_out_scenes_and_boards_are_not_flagged():
    held_out = [scene.image for scene in scenes.generate(1000, seed=HELD_OUT_SEED)]
    boards = [scenes.composite(seed).image for seed in range(100, 150)]
    false_positives = sum(flagged(held_out)) + sum(flagged(boards))
    print(f"false positive rate: {false_positives} of {len(held_out) + len(boards)}")
    assert false_positives == 0


def test_enlarged_scenes_are_not_flagged_and_few_saved_as_jpeg_are():
    sample = [scene.image for scene in scenes.generate(200, seed=HELD_OUT_SEED)]
    assert not any(flagged(image.resize((512, 512), Image.Resampling.BICUBIC) for image in sample))
    as_jpeg = sum(flagged(jpeg(image, quality=90) for image in sample))
    print(f"scenes saved as JPEG (quality 90) flagged: {as_jpeg} of {len(sample)}")
    assert as_jpeg <= 0.06 * len(sample)


def test_most_packaged_photos_are_flagged(photos):
    hits = flagged(photos)
    print(f"true positive rate: {sum(hits)} of {len(photos)}")
    assert len(photos) >= 20
    assert sum(hits) / len(photos) >= 0.85


def test_models_trained_on_photos_are_never_warned(photos, space):
    base = koclip.load("koclip-base")
    mini = koclip.load("koclip-mini")
    astronaut = photos[0]
    assert domain.knows_images_like(base, astronaut)
    assert not domain.knows_images_like(mini, astronaut)
    assert domain.knows_images_like(mini, scenes.scene(HELD_OUT_SEED, 0).image)


def test_index_counts_and_names_the_photos_koclip_mini_cannot_see(tmp_path, capsys, photos):
    from koclip.cli import main as cli

    assert cli(["index", "samples", "--model", "koclip-mini", "--out", str(tmp_path / "photos")]) == 0
    expected = sum(flagged(photos))
    assert (
        f"warning: {expected} of the {len(photos)} images in this gallery do not look like" in capsys.readouterr().err
    )
    assert gallery.read_manifest(tmp_path / "photos")["unlike_training"] == expected

    assert cli(["index", "scenes", "--n", "40", "--model", "koclip-mini", "--out", str(tmp_path / "scenes")]) == 0
    assert "do not look like" not in capsys.readouterr().err
    assert gallery.read_manifest(tmp_path / "scenes")["unlike_training"] == 0


def test_galleries_of_models_trained_on_photos_are_not_checked(tmp_path, space):
    from koclip.search import indexing

    manifest = indexing.build(
        samples.SampleSource(), koclip.load("koclip-base"), tmp_path / "g", batch_size=8, progress=False
    )
    assert "unlike_training" not in manifest
