"""Collections a visitor can search without a command line: the sample photos that ship with the
installed packages, a Hugging Face dataset built in the background, and search by image."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tiny
from PIL import Image

import koclip
from demo import builds, settings
from koclip.data import samples, scenes
from koclip.errors import KoCLIPError
from koclip.search import gallery, indexing, jobs, sources


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    directory = tmp_path_factory.mktemp("collections-model") / "tiny-clip"
    tiny.write_hybrid_clip(directory, seed=21, kind="clip")
    return koclip.load(directory)


def local_dataset(path, n: int = 40):
    """A Hub-style image dataset with captions, saved where `datasets` loads it offline."""
    import datasets

    pictures = [scene.image for scene in scenes.generate(n, seed=5, size=48)]
    data = datasets.Dataset.from_dict({"image": pictures, "caption": [f"장면 {i}" for i in range(n)]})
    data.cast_column("image", datasets.Image()).save_to_disk(str(path))
    return path


def test_sample_photos_are_real_photos_from_the_installed_packages():
    photos = samples.sample_photos()
    packages = {photo.package for photo in photos}
    assert {"skimage", "sklearn"} <= packages
    assert len(photos) >= 20 and len({p.name for p in photos}) == len(photos)
    for photo in photos:
        image = koclip.open_image(photo.path)
        assert min(image.size) >= 150 and photo.caption


def test_the_sample_gallery_finds_each_photo_by_itself(model, tmp_path):
    manifest = indexing.build(samples.SampleSource(), model, tmp_path / "samples", batch_size=8, progress=False)
    collection = gallery.Gallery.open(tmp_path / "samples")
    assert manifest["count"] == len(samples.sample_photos()) == len(collection)
    for row in (0, 1, len(collection) - 1):
        photo = samples.sample_photos()[row]
        hits = gallery.search_image(model, collection, photo.path, k=3)
        assert hits[0].index == row and hits[0].score == pytest.approx(1.0, abs=1e-4)
        assert collection.item(row)["caption"] == photo.caption


def test_more_like_this_ranks_by_image_similarity_and_leaves_the_row_out(model, tmp_path):
    indexing.build(samples.SampleSource(), model, tmp_path / "g", batch_size=8, progress=False)
    collection = gallery.Gallery.open(tmp_path / "g")
    hits = collection.similar(2, k=5)
    assert len(hits) == 5 and 2 not in [hit.index for hit in hits]
    vectors = np.asarray(collection.vectors, np.float32)
    scores = np.delete(vectors @ vectors[2], 2)
    assert [hit.score for hit in hits] == pytest.approx(sorted(scores, reverse=True)[:5], abs=1e-5)
    with pytest.raises(koclip.InvalidInputError, match="not in this gallery"):
        collection.similar(len(collection))


def test_an_in_memory_gallery_searches_uploaded_photos(model):
    pictures = [scene.image for scene in scenes.generate(6, seed=9, size=40)]
    rows = [{"caption": f"photo {i}.png", "thumbnail": jobs.thumbnail_jpeg(p)} for i, p in enumerate(pictures)]
    collection = gallery.Gallery.in_memory(model, model.encode_image(pictures), rows)
    hits = gallery.search_image(model, collection, pictures[4], k=2)
    assert hits[0].index == 4
    assert isinstance(collection.item(4)["thumbnail"], bytes)
    assert gallery.search(model, collection, "빨간 원", k=10)  # fewer rows than k: all of them


def test_a_dataset_builds_in_the_background_with_progress(model, tmp_path):
    source = sources.DatasetSource(str(local_dataset(tmp_path / "ds")), "train", "image", "caption")
    server = builds.Builds()
    build = server.start(tmp_path / "g", source, model, batch_size=8)
    assert server.start(tmp_path / "g", source, model) is build  # a second visitor watches the same build
    status = build.wait(120)
    assert status.phase == builds.FINISHED, status.error
    assert status.done == status.total == 40 and status.rate > 0 and status.eta == 0
    collection = gallery.Gallery.open(tmp_path / "g")
    assert collection.item(7)["caption"] == "장면 7"


class FailingSource:
    """Wraps a source and fails on one key, as a server restart would stop a build half way."""

    def __init__(self, source, fail_at: int):
        self.source, self.fail_at = source, fail_at

    def describe(self):
        return self.source.describe()

    def keys(self):
        return self.source.keys()

    def read(self, key):
        if key == self.fail_at:
            raise RuntimeError("the server stopped")
        return self.source.read(key)


def test_a_build_stopped_half_way_resumes_after_a_restart(model, tmp_path):
    source = sources.DatasetSource(str(local_dataset(tmp_path / "ds")), "train", "image", "caption")
    stopped = builds.Builds().start(tmp_path / "g", FailingSource(source, fail_at=20), model, batch_size=8).wait(120)
    assert stopped.phase == builds.FAILED and "the server stopped" in stopped.error
    assert (tmp_path / "g" / jobs.PARTIAL).is_dir()
    resumed = builds.Builds().start(tmp_path / "g", source, model, batch_size=8).wait(120)  # a new process
    assert resumed.phase == builds.FINISHED and resumed.resumed_from == 16
    assert len(gallery.Gallery.open(tmp_path / "g")) == 40


def test_a_failed_build_may_be_started_again_a_bounded_number_of_times(model, tmp_path):
    now = [0.0]
    server = builds.Builds(clock=lambda: now[0])
    source = sources.DatasetSource(str(tmp_path / "missing"), "train")
    for _ in range(builds.MAX_TRIES):
        assert server.retry_in(tmp_path / "g") is None
        assert server.start(tmp_path / "g", source, model).wait(60).phase == builds.FAILED
    assert server.retry_in(tmp_path / "g") == builds.RETRY_WINDOW
    failed = server.get(tmp_path / "g")
    assert server.start(tmp_path / "g", source, model) is failed  # not started again: it must wait
    now[0] += builds.RETRY_WINDOW
    good = sources.DatasetSource(str(local_dataset(tmp_path / "ds")), "train", "image", "caption")
    assert server.start(tmp_path / "g", good, model).wait(120).phase == builds.FINISHED


def test_a_hub_dataset_build_fails_at_once_when_the_hub_does_not_answer(model, tmp_path, monkeypatch):
    monkeypatch.setattr("koclip.hub.offline", lambda: False)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")  # a closed port
    start = time.monotonic()
    status = builds.Builds().start(tmp_path / "g", sources.DatasetSource("someone/photos", "train"), model).wait(60)
    assert time.monotonic() - start < builds.HUB_TIMEOUT + 1
    assert status.phase == builds.FAILED and "did not answer" in status.error and "tries" in status.error


def test_a_dataset_that_cannot_be_had_fails_with_where_and_how(model, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    source = sources.DatasetSource("no-such-owner/no-such-dataset", "train")
    status = builds.Builds().start(tmp_path / "g", source, model).wait(60)
    assert status.phase == builds.FAILED
    assert "no-such-owner/no-such-dataset" in status.error and "datasets cache" in status.error


def test_the_gallery_dataset_and_its_folder_come_from_the_space_variables(monkeypatch, tmp_path):
    assert settings.gallery_dataset().name == "detection-datasets/coco"
    assert settings.gallery_dataset().folder_name("koclip-base") == "koclip-base-detection-datasets-coco-val-3000"
    monkeypatch.setenv("KOCLIP_GALLERY_DATASET", "someone/photos")
    monkeypatch.setenv("KOCLIP_GALLERY_SPLIT", "test")
    monkeypatch.setenv("KOCLIP_EMBEDDINGS", str(tmp_path))
    assert settings.gallery_dataset() == settings.GalleryDataset("someone/photos", "test", "image", None)
    assert settings.embeddings_dir() == tmp_path
    assert settings.shipped_gallery("koclip-mini") == settings.SHIPPED_EMBEDDINGS / "koclip-mini-scenes"
    assert settings.shipped_gallery("koclip-base") is None


def test_an_image_query_to_a_gallery_of_another_model_is_refused(model, tmp_path):
    mini = koclip.load("koclip-mini")
    indexing.build(samples.SampleSource(), mini, tmp_path / "mini", batch_size=8, progress=False)
    with pytest.raises(KoCLIPError, match="koclip-mini"):
        gallery.search_image(model, gallery.Gallery.open(tmp_path / "mini"), Image.new("RGB", (32, 32)))
