"""Galleries: indexing (local and Ray), resuming, skipping bad images, refusing unfinished
galleries and other models' galleries, exact and approximate search, and the two commands."""

import json
import shutil
import sys

import numpy as np
import pytest
from PIL import Image

import koclip
from koclip.cli import main as cli
from koclip.data import scenes
from koclip.errors import GalleryError, InvalidInputError, KoCLIPError
from koclip.search import gallery, indexing, jobs, sources

BATCH = 4


@pytest.fixture(scope="module")
def model(model_dir):
    return koclip.load(model_dir)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Twelve images in two folders, one of them wide; and a file that is no image, a truncated
    PNG and one too large to decode."""
    root = tmp_path_factory.mktemp("photos")
    (root / "sub").mkdir()
    for i, scene in enumerate(scenes.generate(11, seed=3, size=32)):
        scene.image.save(root / ("sub" if i % 3 == 0 else ".") / f"img{i:02d}.png")
    (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    whole = (root / "img01.png").read_bytes()
    (root / "cut.png").write_bytes(whole[: len(whole) // 2])
    (root / "notes.txt").write_text("not an image suffix: ignored")
    Image.open(root / "img01.png").resize((600, 300)).save(root / "wide.png")
    Image.new("1", (8000, 6000)).save(root / "huge.png")  # 48 megapixels, a few kilobytes
    return root


@pytest.fixture(scope="module")
def reference(photos, model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("galleries") / "reference"
    indexing.build(sources.FolderSource(photos), str(model_dir), out, batch_size=BATCH, progress=False)
    return out


def contents(path):
    """Everything that makes two galleries the same, the creation time aside."""
    manifest = json.loads((path / gallery.MANIFEST).read_text())
    del manifest["created"]
    thumbs = {p.name: p.read_bytes() for p in sorted((path / gallery.THUMBS).iterdir())}
    return manifest, (path / gallery.METADATA).read_text(), thumbs


def test_folder_gallery_holds_the_model_embeddings_and_lists_unreadable_files(reference, photos, model):
    opened = gallery.Gallery.open(reference)
    manifest = opened.manifest
    assert manifest["model"] == model.name and manifest["dim"] == model.dim and manifest["count"] == 12
    assert {s["source"] for s in manifest["skipped"]} == {"broken.jpg", "cut.png", "huge.png"}
    assert all(s["reason"] for s in manifest["skipped"])
    sources = [opened.item(i)["source"] for i in range(len(opened))]
    assert sources == sorted(sources) and "sub/img00.png" in sources
    np.testing.assert_allclose(opened.vectors, model.encode_image([photos / s for s in sources]), atol=1e-5)
    wide = opened.item(sources.index("wide.png"))
    assert (wide["width"], wide["height"]) == (600, 300)
    with Image.open(wide["thumbnail"]) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (jobs.THUMB_SIDE, jobs.THUMB_SIDE // 2)
    assert not (reference / jobs.PARTIAL).exists()


def test_search_text_returns_the_best_scoring_images(reference, model):
    opened = gallery.Gallery.open(reference)
    hits = gallery.search(model, opened, "빨간 원", k=3)
    scores = opened.vectors @ model.encode_text(["빨간 원"])[0]
    assert [h.index for h in hits] == list(np.argsort(-scores)[:3])
    np.testing.assert_allclose([h.score for h in hits], np.sort(scores)[::-1][:3], atol=1e-6)
    with pytest.raises(InvalidInputError, match="empty query"):
        gallery.search(model, opened, "   ")


def test_exact_search_finds_planted_neighbours_in_float32_and_float16():
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((20_000, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    planted = rng.choice(len(vectors), 50, replace=False)
    queries = vectors[planted] + 0.3 * rng.standard_normal((50, 64)).astype(np.float32) / 8
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    assert [hits[0].index for hits in gallery.exact_search(vectors, queries, 10)] == planted.tolist()
    half = gallery.exact_search(vectors.astype(np.float16), queries, 10)
    assert [hits[0].index for hits in half] == planted.tolist()


def test_resume_after_a_crash_gives_the_same_gallery(reference, photos, model_dir, tmp_path, monkeypatch):
    out = tmp_path / "resumed"
    commits = []
    original = jobs.Job.commit

    def crash_after_two(self, index, batch):
        if len(commits) == 2:
            raise RuntimeError("simulated crash")
        commits.append(index)
        original(self, index, batch)

    monkeypatch.setattr(jobs.Job, "commit", crash_after_two)
    with pytest.raises(RuntimeError, match="simulated crash"):
        indexing.build(sources.FolderSource(photos), str(model_dir), out, batch_size=BATCH, progress=False)
    with pytest.raises(GalleryError, match="has not finished"):
        gallery.Gallery.open(out)
    assert gallery.list_galleries(tmp_path) == []

    monkeypatch.setattr(
        jobs.Job, "commit", lambda self, index, batch: commits.append(index) or original(self, index, batch)
    )
    indexing.build(sources.FolderSource(photos), str(model_dir), out, batch_size=BATCH, progress=False)
    assert commits == [0, 1, 2, 3]  # the two finished chunks were not redone
    assert contents(out) == contents(reference)
    assert np.array_equal(np.load(out / gallery.VECTORS), np.load(reference / gallery.VECTORS))


@pytest.mark.parametrize("damage", ["no manifest", "bad manifest", "old format", "short vectors", "count"])
def test_damaged_or_unfinished_galleries_are_refused(reference, tmp_path, damage):
    broken = tmp_path / "broken"
    shutil.copytree(reference, broken)
    manifest = json.loads((broken / gallery.MANIFEST).read_text())
    if damage == "no manifest":
        (broken / gallery.MANIFEST).unlink()
    elif damage == "bad manifest":
        (broken / gallery.MANIFEST).write_text('{"model": ')
    elif damage == "old format":
        (broken / gallery.MANIFEST).write_text(json.dumps({**manifest, "format_version": 0}))
    elif damage == "short vectors":
        data = (broken / gallery.VECTORS).read_bytes()
        (broken / gallery.VECTORS).write_bytes(data[: len(data) - 100])
    else:
        (broken / gallery.MANIFEST).write_text(json.dumps({**manifest, "count": manifest["count"] + 1}))
    with pytest.raises(GalleryError, match="re-index|has not finished|format"):
        gallery.Gallery.open(broken)


def test_a_finished_gallery_is_not_overwritten_by_accident(reference, photos, model_dir, tmp_path):
    with pytest.raises(GalleryError, match="--overwrite"):
        indexing.build(sources.FolderSource(photos), str(model_dir), reference, progress=False)
    (tmp_path / "stuff.txt").write_text("mine")
    with pytest.raises(GalleryError, match="not empty"):
        indexing.build(sources.FolderSource(photos), str(model_dir), tmp_path, progress=False)


@pytest.mark.filterwarnings("ignore:os.fork:RuntimeWarning")  # Ray forks and execs its processes
def test_ray_engine_writes_the_same_gallery(reference, photos, model_dir, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        out = tmp_path / "ray"
        indexing.build(
            sources.FolderSource(photos), str(model_dir), out, batch_size=BATCH, engine="ray", progress=False
        )
    finally:
        ray.shutdown()
    assert contents(out) == contents(reference)
    np.testing.assert_allclose(np.load(out / gallery.VECTORS), np.load(reference / gallery.VECTORS), atol=1e-5)


def test_index_and_search_commands(model_dir, tmp_path, capsys):
    out = tmp_path / "galleries" / "scenes"
    argv = [
        "index",
        "scenes",
        "--n",
        "24",
        "--size",
        "32",
        "--model",
        str(model_dir),
        "--out",
        str(out),
        "--batch-size",
        "8",
        "--dtype",
        "float16",
    ]
    assert cli(argv) == 0
    manifest = json.loads((out / gallery.MANIFEST).read_text())
    assert manifest["index"] == gallery.EXACT and manifest["dtype"] == "float16"
    opened = gallery.Gallery.open(out)
    assert [hits[0].index for hits in opened.search_vectors(opened.vectors[[3, 17]], k=2)] == [3, 17]
    assert gallery.list_galleries(out.parent, model_dir.name) == [out]
    assert gallery.list_galleries(out.parent, "koclip-base") == []
    capsys.readouterr()

    assert cli(["search", "빨간 원", "--gallery", str(out), "--top-k", "5", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in printed["results"]] == [1, 2, 3, 4, 5]
    assert all(r["caption"] == scenes.scene(0, r["source"], size=32).captions_ko[0] for r in printed["results"])
    scores = [r["score"] for r in printed["results"]]
    assert scores == sorted(scores, reverse=True)

    assert cli(["search", "빨간 원 " * 2000, "--gallery", str(out)]) == 0
    captured = capsys.readouterr()
    assert "only its beginning is used" in captured.err and captured.out.count("\n") == 11
    assert cli(["search", "", "--gallery", str(out)]) == 2
    assert "empty query" in capsys.readouterr().err


def test_search_with_another_model_is_refused(model_dir, reference, tmp_path, capsys):
    other = tmp_path / "other-model"
    shutil.copytree(model_dir, other)
    assert cli(["search", "빨간 원", "--gallery", str(reference), "--model", str(other)]) == 2
    err = capsys.readouterr().err
    assert f"was made with model {model_dir.name}, not other-model" in err and "re-index" in err


def test_dataset_source_keeps_row_numbers_and_captions(model_dir, tmp_path):
    data_dir = tmp_path / "data"
    scenes.to_dataset(scenes.generate(5, seed=1, size=32)).save_to_disk(str(data_dir))
    source = sources.DatasetSource(str(data_dir), caption_column="caption_ko")
    manifest = indexing.build(source, str(model_dir), tmp_path / "g", batch_size=BATCH, progress=False)
    opened = gallery.Gallery.open(tmp_path / "g")
    assert manifest["source"]["kind"] == "dataset" and len(opened) == 5
    assert [opened.item(i)["source"] for i in range(5)] == [0, 1, 2, 3, 4]
    assert opened.item(2)["caption"] == scenes.scene(1, 2, size=32).captions_ko[0]


def test_ray_engine_without_ray_says_how_to_install_it(monkeypatch):
    from koclip.search import ray_engine

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(KoCLIPError, match="pip install -r requirements-ray.txt"):
        ray_engine._import_ray()


def test_a_folder_of_generated_scenes_is_indexed_with_its_captions(model_dir, tmp_path, capsys):
    folder, out = tmp_path / "scenes", tmp_path / "g"
    assert cli(["scenes", "--n", "6", "--size", "32", "--seed", "4", "--out", str(folder)]) == 0
    assert cli(["index", str(folder), "--model", str(model_dir), "--out", str(out)]) == 0
    opened = gallery.Gallery.open(out)
    assert opened.manifest["source"]["captions"].startswith("metadata.jsonl sha256:")
    for i in range(6):
        row = opened.item(i)
        assert row["source"] == f"{i:06d}.png" and row["caption"] == scenes.scene(4, i, size=32).captions_ko[0]
    capsys.readouterr()
    assert cli(["search", "빨간 원", "--gallery", str(out), "--top-k", "6", "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)["results"]
    assert {r["caption"] for r in printed} == {scenes.scene(4, i, size=32).captions_ko[0] for i in range(6)}


def test_folder_captions_follow_the_imagefolder_columns(tmp_path):
    rows = [
        {"file_name": "./a.png", "text": "텍스트", "caption": "캡션"},
        {"file_name": "sub/b.png", "caption_ko": "한국어", "text": "텍스트"},
        {"file_name": "c.png", "caption": "캡션"},
        {"file_name": "d.png", "caption_ko": None, "score": 3},
        {"file_name": "e.png", "caption_ko": None, "caption": "다른 캡션"},
    ]
    (tmp_path / "metadata.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    source = sources.FolderSource(tmp_path)
    assert source.captions == {"a.png": "텍스트", "sub/b.png": "한국어", "c.png": "캡션", "e.png": "다른 캡션"}
    assert source.read("sub/b.png") == (tmp_path / "sub/b.png", {"caption": "한국어"})
    assert source.read("d.png") == (tmp_path / "d.png", {})
    assert sources.FolderSource(tmp_path / "sub").captions == {}  # no metadata.jsonl there


@pytest.mark.parametrize(
    "damage, line",
    [
        (b'{"file_name": "img01.png", "text": "ok"}\n{"file_name": "img02.png", "text": \n', 2),
        (b'{"file_name": "img01.png", "text": "\xff\xfe"}\n', 1),
        (b'["img01.png", "caption"]\n', 1),
        (b'{"text": "no file name"}\n', 1),
        (b'{"file_name": "img01.png", "caption_ko": ["a", "list"]}\n', 1),
        (b"[" * 200_000 + b"\n", 1),  # nested deeper than the JSON parser recurses
        (b'{"file_name": "img01.png", "text": "' + b"x" * (2 << 20) + b'"}\n', 1),  # one line over the limit
    ],
)
def test_damaged_folder_metadata_is_refused_before_any_work(photos, model_dir, tmp_path, capsys, damage, line):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    (folder / "metadata.jsonl").write_bytes(damage)
    out = tmp_path / "g"
    assert cli(["index", str(folder), "--model", str(model_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {folder / 'metadata.jsonl'} line {line} ") and "move the file away" in err
    assert "Traceback" not in err and not out.exists()


def test_oversized_folder_metadata_is_ignored_with_a_warning(photos, model_dir, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    (folder / "metadata.jsonl").write_text('{"file_name": "img01.png", "text": "빨간 원"}\n' * 20)
    monkeypatch.setattr(sources, "MAX_METADATA_BYTES", 500)
    assert cli(["index", str(folder), "--model", str(model_dir), "--out", str(tmp_path / "g")]) == 0
    assert "warning:" in capsys.readouterr().err
    opened = gallery.Gallery.open(tmp_path / "g")
    assert len(opened) == 12 and not any("caption" in opened.item(i) for i in range(12))
    assert "captions" not in opened.manifest["source"]
