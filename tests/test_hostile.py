"""Hostile input and damaged data: each gets a clear error, costs bounded memory, loses nothing.

Threads sharing one model, images built to cost the most the limits allow, templates and labels
of the wrong shape, galleries damaged on disk or changed under an open reader, and an overwrite
that crashes half way.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import hostile_images
import numpy as np
import pytest
import tiny
from PIL import Image

import koclip
from koclip.cli import main as cli
from koclip.data import scenes
from koclip.errors import GalleryError, InvalidImageError, InvalidInputError, KoCLIPError
from koclip.patches import rank_patches
from koclip.search import gallery, indexing, jobs, sources

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def mini():
    return koclip.load("koclip-mini")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile-photos")
    for i, scene in enumerate(scenes.generate(6, seed=4, size=32)):
        scene.image.save(root / f"img{i}.png")
    return root


@pytest.fixture
def built(photos, model_dir, tmp_path):
    out = tmp_path / "g"
    indexing.build(sources.FolderSource(photos), str(model_dir), out, batch_size=4, progress=False)
    return out


# ---------------------------------------------------------------- threads


def test_the_shared_tokenizer_survives_concurrent_use(mini):
    errors, stop = [], time.monotonic() + 3

    def hammer(work):
        try:
            while time.monotonic() < stop:
                work()
        except Exception as exc:  # what a Streamlit session would have shown as a traceback
            errors.append(exc)

    long_ids, _ = mini.text_processor(["빨간 원 " * 50])

    def same_answers():  # truncation is per call: one thread's long text never cuts another's
        assert mini.unknown_words("고양이 빨간 원") == ["고양이"]
        assert (mini.text_processor(["빨간 원 " * 50])[0] == long_ids).all()
        assert mini.text_processor(["빨간 원"])[1].sum() == len(mini.text_processor.tokenizer.encode(["빨간 원"])[0])

    threads = [
        threading.Thread(target=hammer, args=(lambda: mini.is_truncated("빨간 원 " * 50),)),
        threading.Thread(target=hammer, args=(same_answers,)),
        threading.Thread(target=hammer, args=(lambda: mini.encode_text(["파란 삼각형", "노란 별이 있다"]),)),
        threading.Thread(
            target=hammer, args=(lambda: mini.classify(scenes.single_object("원", "빨간"), ["빨간 원", "파란 별"]),)
        ),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:1]


# ---------------------------------------------------------------- images


@pytest.mark.parametrize(
    "size, message",
    [
        ((40000, 10), "strip rather than a picture"),
        ((10000, 2), "too small"),
        ((300, 1), "too small"),
        ((1, 1), "too small"),
        ((224, 3), "too small"),
    ],
)
def test_degenerate_shapes_are_refused_from_the_header(size, message):
    data = hostile_images.png(*size, colour_type=2, bit_depth=8)
    with pytest.raises(InvalidImageError, match=message):
        koclip.open_image(data)


def test_the_worst_image_under_the_limits_stays_within_a_memory_budget():
    # In a fresh process, so that the peak is this image's alone.
    script = (
        "import resource, sys; sys.path[:0] = ['tests', '.']\n"
        "import hostile_images, koclip\n"
        "from koclip.transform import ImageTransform\n"
        "data = hostile_images.worst_under_the_limits()\n"
        "transform = ImageTransform.clip(224)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "pixels = transform([koclip.open_image(data)])\n"
        "print(pixels.shape, (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True
    )
    shape, peak_mib = out.stdout.rsplit(" ", 1)
    assert shape == "(1, 224, 224, 3)"
    assert int(peak_mib) < 450, f"decoding and preprocessing took {peak_mib} MiB"


@pytest.mark.parametrize("image", [None, 123, 4.5, ["a.png"], {"image": 1}])
def test_things_that_are_not_images_are_refused(mini, image):
    with pytest.raises(InvalidImageError, match="expected an image"):
        mini.encode_image([image])
    with pytest.raises(InvalidImageError):
        mini.classify(image, ["빨간 원"])


def test_a_grid_finer_than_the_image_is_refused(mini):
    with pytest.raises(InvalidInputError, match="cells under 8 pixels"):
        rank_patches(mini, Image.new("RGB", (40, 40)), "빨간 원", rows=8, cols=8)
    with pytest.raises(InvalidImageError, match="too small"):
        rank_patches(mini, Image.new("RGB", (1, 1)), "빨간 원", rows=1, cols=1)


# ---------------------------------------------------------------- labels, templates, texts


@pytest.mark.parametrize("template", ["{} {name}", "{}{}", "{{}}", "{0}", "{", "no placeholder", 123, [], ["{}", 5]])
def test_templates_without_exactly_one_placeholder_are_refused(mini, template):
    with pytest.raises(InvalidInputError, match="template"):
        mini.classify(scenes.single_object("원", "빨간"), ["빨간 원", "파란 별"], template=template)


def test_literal_braces_in_a_template_are_kept(mini):
    assert mini.prompts(["원"], "{{이것}}은 {}") == [["{이것}은 원"]]


@pytest.mark.parametrize("labels", [None, [None], ["원", 3], 42])
def test_labels_that_are_not_text_are_refused(mini, labels):
    with pytest.raises(InvalidInputError, match="labels"):
        mini.classify(scenes.single_object("원", "빨간"), labels)


def test_one_string_of_labels_is_one_label_not_its_characters(mini):
    assert mini.prompts("빨간 원", None) == [["빨간 원"]]


@pytest.mark.parametrize("texts", [[None], [1, 2], None, 7])
def test_texts_that_are_not_text_are_refused(mini, texts):
    with pytest.raises(InvalidInputError, match="text"):
        mini.encode_text(texts)


# ---------------------------------------------------------------- galleries on disk


def test_queries_that_are_not_text_are_refused(mini):
    collection = gallery.Gallery.open(ROOT / "embeddings" / "koclip-mini-scenes")
    with pytest.raises(InvalidInputError, match="must be text"):
        gallery.search(mini, collection, None)
    with pytest.raises(InvalidInputError, match="whole number"):
        collection.search_vectors(np.ones(collection.vectors.shape[1], np.float32), k=2.5)


def damage(out: Path, what: str) -> None:
    manifest = json.loads((out / gallery.MANIFEST).read_text())
    rows = [json.loads(line) for line in (out / gallery.METADATA).read_text().splitlines()]
    if what == "empty vectors":
        (out / gallery.VECTORS).write_bytes(b"")
    elif what == "count as text":
        (out / gallery.MANIFEST).write_text(json.dumps({**manifest, "count": str(manifest["count"])}))
    elif what == "rows not objects":
        (out / gallery.METADATA).write_text("".join(json.dumps([r]) + "\n" for r in rows))
    elif what == "no thumbnail":
        (out / gallery.METADATA).write_text("".join(json.dumps({"source": r["source"]}) + "\n" for r in rows))
    elif what == "absolute thumbnail":
        (out / gallery.METADATA).write_text("".join(json.dumps({**r, "thumbnail": "/etc/passwd"}) + "\n" for r in rows))
    elif what == "escaping thumbnail":
        (out / gallery.METADATA).write_text("".join(json.dumps({**r, "thumbnail": "../../x.jpg"}) + "\n" for r in rows))


@pytest.mark.parametrize(
    "what, message",
    [
        ("empty vectors", "damaged"),
        ("count as text", "'6', not a whole number"),
        ("rows not objects", "not an object"),
        ("no thumbnail", "thumbnail inside the gallery"),
        ("absolute thumbnail", "thumbnail inside the gallery"),
        ("escaping thumbnail", "thumbnail inside the gallery"),
    ],
)
def test_damaged_galleries_are_refused_with_what_is_wrong(built, what, message):
    damage(built, what)
    with pytest.raises(GalleryError, match=message):
        collection = gallery.Gallery.open(built)
        collection.item(0)


def test_a_vector_that_is_not_a_number_is_refused_not_printed(built, model_dir, capsys):
    vectors = np.load(built / gallery.VECTORS)
    vectors[:] = np.nan
    np.save(built / gallery.VECTORS, vectors)
    with pytest.raises(GalleryError, match="not a valid vector"):
        gallery.search(koclip.load(model_dir), gallery.Gallery.open(built), "빨간 원", k=3)
    assert cli(["search", "빨간 원", "--gallery", str(built), "--json"]) == 2
    assert "NaN" not in capsys.readouterr().out


def test_a_gallery_re_indexed_under_an_open_reader_is_not_mixed(built, photos, model_dir):
    collection = gallery.Gallery.open(built)
    assert collection.item(0)["thumbnail"].is_file()
    indexing.build(sources.FolderSource(photos), str(model_dir), built, batch_size=2, overwrite=True, progress=False)
    with pytest.raises(GalleryError, match="re-indexed since it was opened"):
        collection.search_vectors(np.asarray(collection.vectors[0]), k=2)
    assert len(gallery.Gallery.open(built).search_vectors(np.asarray(collection.vectors[0]), k=2)) == 2


def test_a_model_with_other_weights_under_the_same_name_is_refused(built, model_dir, tmp_path):
    retrained = tmp_path / model_dir.name  # a folder of the same name, other weights
    tiny.write_hybrid_clip(retrained, seed=32, kind="conv")
    with pytest.raises(GalleryError, match="revision"):
        gallery.search(koclip.load(retrained), gallery.Gallery.open(built), "빨간 원")


# ---------------------------------------------------------------- indexing


def test_an_overwrite_that_crashes_leaves_the_old_gallery_searchable(built, photos, model_dir, monkeypatch):
    before = np.load(built / gallery.VECTORS)

    def crash(self, index, batch):
        raise RuntimeError("power cut")

    monkeypatch.setattr(jobs.Job, "commit", crash)
    with pytest.raises(RuntimeError, match="power cut"):
        indexing.build(sources.FolderSource(photos), str(model_dir), built, overwrite=True, progress=False)
    assert np.array_equal(gallery.Gallery.open(built).vectors, before)
    monkeypatch.undo()
    indexing.build(sources.FolderSource(photos), str(model_dir), built, batch_size=3, overwrite=True, progress=False)
    assert json.loads((built / gallery.MANIFEST).read_text())["count"] == 6
    assert not [p.name for p in built.parent.iterdir() if p.name.startswith(".")]


def test_indexing_an_empty_folder_fails(model_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code = cli(["index", str(tmp_path / "empty"), "--model", str(model_dir), "--out", str(tmp_path / "g")])
    assert code == 2 and "holds no images" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_a_folder_of_nothing_but_broken_images_writes_no_gallery(model_dir, tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(KoCLIPError, match="none of the 1 inputs"):
        indexing.build(sources.FolderSource(tmp_path / "bad"), str(model_dir), tmp_path / "g", progress=False)
    assert not (tmp_path / "g" / gallery.MANIFEST).exists()


def test_control_characters_in_file_names_do_not_reach_the_terminal(model_dir, tmp_path, capsys):
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (32, 32), (200, 0, 0)).save(tmp_path / "photos" / "\x1b[2Jred\x1b[31m.png")
    indexing.build(sources.FolderSource(tmp_path / "photos"), str(model_dir), tmp_path / "g", progress=False)
    assert cli(["search", "빨간 원", "--gallery", str(tmp_path / "g")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\\x1b[2Jred" in out
