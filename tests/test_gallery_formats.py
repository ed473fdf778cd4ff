"""Galleries that travel: a gallery exported as a Hugging Face dataset and as a clip-retrieval index, read by
those projects' own code (datasets' load_dataset and add_faiss_index, embedding-reader's EmbeddingReader,
faiss.read_index and search_and_reconstruct, clip-retrieval's own inference writer), and imported back
without encoding, with the same search results; and every damaged or foreign input refused in one line."""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path

import numpy as np
import peers
import pytest
from PIL import Image

import koclip
from koclip.cli import main as cli
from koclip.search import clip_retrieval, gallery, hf_dataset, indexing, sources

QUERIES = ("빨간 원", "파란 사각형", "작은 초록 삼각형", "큰 흰 별", "노란 하트")
K = 10


@pytest.fixture(scope="module", autouse=True)
def datasets_cache(tmp_path_factory):
    """load_dataset's Arrow copies go to a folder of this module's, not the user's datasets cache."""
    import datasets

    before = datasets.config.HF_DATASETS_CACHE
    datasets.config.HF_DATASETS_CACHE = tmp_path_factory.mktemp("datasets-cache")
    yield
    datasets.config.HF_DATASETS_CACHE = before


@pytest.fixture(scope="module")
def mini():
    return koclip.load("koclip-mini")


@pytest.fixture(scope="module")
def scenes_gallery(tmp_path_factory):
    """60 generated scenes indexed by koclip-mini, searched exactly."""
    out = tmp_path_factory.mktemp("galleries") / "scenes"
    indexing.build(sources.SceneSource(60, seed=0, size=64), "koclip-mini", out, progress=False)
    return out


@pytest.fixture(scope="module")
def hf_export(scenes_gallery, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "scenes-hf"
    assert cli(["gallery", "export", str(scenes_gallery), str(out), "--format", "hf"]) == 0
    return out


@pytest.fixture(scope="module")
def cr_export(scenes_gallery, tmp_path_factory):
    out = tmp_path_factory.mktemp("exports") / "scenes-index"
    assert cli(["gallery", "export", str(scenes_gallery), str(out), "--format", "clip-retrieval"]) == 0
    return out


def results(model, photos, queries=QUERIES, k=K):
    return [gallery.search(model, photos, query, k) for query in queries]


def one_line_error(capsys, argv) -> str:
    """The error `python -m koclip ARGV` prints: status 2, one line (after any progress bars), no traceback."""
    assert cli(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err and lines[-1].startswith("error: ") and err.count("error: ") == 1, err
    return lines[-1]


def nothing_left(out: Path) -> None:
    """A refused or failed run leaves neither OUT nor its hidden build folder."""
    assert not out.exists()
    assert not (out.parent / f".{out.name}.new").exists()


def load_dataset(folder: Path):
    import datasets

    return datasets.load_dataset(str(folder), split="train")


# --- the Hugging Face form ---


def test_hf_round_trip_gives_the_same_search_results(scenes_gallery, hf_export, mini, tmp_path, capsys):
    out = tmp_path / "back"
    capsys.readouterr()
    assert cli(["gallery", "import", str(hf_export), str(out)]) == 0
    assert "nothing was encoded" in capsys.readouterr().out
    before, after = gallery.Gallery.open(scenes_gallery), gallery.Gallery.open(out)
    assert results(mini, after) == results(mini, before)  # the same rows with the same scores, bit for bit
    np.testing.assert_array_equal(after.vectors, before.vectors)
    assert [row.get("caption") for row in after.metadata] == [row.get("caption") for row in before.metadata]
    assert [row["source"] for row in after.metadata] == [row["source"] for row in before.metadata]
    assert after.manifest["model_revision"] == mini.revision and after.manifest["source"]["kind"] == "hf-dataset"
    for i in (0, 17, 59):  # thumbnails made anew from the image column: the same picture
        old = np.asarray(Image.open(io.BytesIO(before.thumbnail(i))), np.float32)
        new = np.asarray(Image.open(io.BytesIO(after.thumbnail(i))), np.float32)
        assert old.shape == new.shape and np.abs(old - new).mean() < 4


def test_hf_export_loads_with_datasets_and_its_faiss_index_finds_the_gallery_rows(scenes_gallery, hf_export, mini):
    import datasets
    import faiss

    assert sorted(p.name for p in (hf_export / "data").iterdir()) == ["train-00000-of-00001.parquet"]
    ds = load_dataset(hf_export)
    assert len(ds) == 60
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds.features["embeddings"].length == mini.dim and ds.features["embeddings"].feature.dtype == "float32"
    photos = gallery.Gallery.open(scenes_gallery)
    assert ds[5]["image"].size == Image.open(io.BytesIO(photos.thumbnail(5))).size
    ds.add_faiss_index("embeddings", metric_type=faiss.METRIC_INNER_PRODUCT)
    for query, hits in zip(QUERIES, results(mini, photos)):
        vector = mini.encode_text([query])[0]
        scores, found = ds.get_nearest_examples("embeddings", vector, k=K)
        assert found["caption"] == [photos.metadata[hit.index].get("caption") for hit in hits]
        _, rows = ds.search("embeddings", vector, k=K)
        assert rows.tolist() == [hit.index for hit in hits]
        np.testing.assert_allclose(scores, [hit.score for hit in hits], atol=1e-5)


def test_hf_card_names_the_model_and_says_how_to_load_it(hf_export, mini):
    from koclip.data.datasets import dataset_card

    card = dataset_card(str(hf_export))
    assert card["koclip"] == {
        "format_version": 1,
        "model": "koclip-mini",
        "model_revision": mini.revision,
        "dim": mini.dim,
        "count": 60,
        "dtype": "float32",
        "unlike_training": 0,
    }
    assert card["configs"][0]["data_files"][0] == {"split": "train", "path": "data/train-*"}
    text = (hf_export / "README.md").read_text()
    assert mini.revision in text and "add_faiss_index" in text and "gallery import" in text


def rewrite(export: Path, out: Path, change=None, card=None) -> Path:
    """A copy of the dataset folder `export` with its table changed by `change(table)` and its card by `card`."""
    import pyarrow.parquet as pq

    shutil.copytree(export, out)
    if change is not None:
        for file in (out / "data").glob("*.parquet"):
            pq.write_table(change(pq.read_table(file)), file)
    if card is not None:
        readme = out / "README.md"
        readme.write_text(card(readme.read_text()))
    return out


def with_embeddings(table, vectors):
    import pyarrow as pa

    column = pa.FixedSizeListArray.from_arrays(
        pa.array(np.ascontiguousarray(vectors, np.float32).ravel()), vectors.shape[1]
    )
    return table.set_column(table.schema.get_field_index("embeddings"), "embeddings", column)


def embeddings_of(table) -> np.ndarray:
    return np.asarray(table.column("embeddings").to_pylist(), np.float32)


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda t: t.drop_columns(["embeddings"]), "no 'embeddings' column"),
        (lambda t: with_embeddings(t, embeddings_of(t) * 2), "not a valid vector"),
        (lambda t: with_embeddings(t, np.where(np.arange(64) == 3, np.nan, embeddings_of(t))), "not a valid vector"),
        (
            lambda t: with_embeddings(t, (e := embeddings_of(t)[:, :32]) / np.linalg.norm(e, axis=1, keepdims=True)),
            "32 numbers, not the 64",
        ),
        (lambda t: t.slice(0, 59), "card says 60"),
    ],
    ids=["no embeddings", "not unit length", "NaN", "wrong width", "rows missing"],
)
def test_a_damaged_dataset_is_refused_in_one_line(hf_export, tmp_path, capsys, damage, says):
    src = rewrite(hf_export, tmp_path / "src", damage)
    out = tmp_path / "out"
    message = one_line_error(capsys, ["gallery", "import", str(src), str(out)])
    assert says in message
    if "no 'embeddings'" in says or "valid vector" in says:
        assert "python -m koclip index" in message  # how to get embeddings instead
    nothing_left(out)


def test_a_dataset_of_another_model_is_refused_and_reencoding_is_named(hf_export, model_dir, tmp_path, capsys):
    out = tmp_path / "out"
    message = one_line_error(capsys, ["gallery", "import", str(hf_export), str(out), "--model", str(model_dir)])
    assert "made with koclip-mini" in message and "python -m koclip index" in message and "--dataset" in message
    nothing_left(out)
    other = rewrite(hf_export, tmp_path / "other", card=lambda text: text.replace("sha256:", "sha256:0"))
    message = one_line_error(capsys, ["gallery", "import", str(other), str(out)])
    assert "other weights" in message
    nothing_left(out)


def test_a_dataset_card_without_a_koclip_block_needs_model(hf_export, mini, tmp_path, capsys):
    def strip(text: str) -> str:
        head, rest = text.split("koclip:\n  format_version", 1)
        return head + "---" + rest.split("---", 1)[1]

    src = rewrite(hf_export, tmp_path / "src", card=strip)
    out = tmp_path / "out"
    assert "does not say which model" in one_line_error(capsys, ["gallery", "import", str(src), str(out)])
    assert cli(["gallery", "import", str(src), str(out), "--model", "koclip-mini"]) == 0
    assert gallery.Gallery.open(out).manifest["model"] == "koclip-mini"


# --- clip-retrieval's layout ---


def test_clip_retrieval_layout_read_by_embedding_reader_and_faiss(scenes_gallery, cr_export, mini):
    import faiss
    from embedding_reader import EmbeddingReader

    photos = gallery.Gallery.open(scenes_gallery)
    reader = EmbeddingReader(
        str(cr_export / "img_emb"),
        file_format="parquet_npy",
        metadata_folder=str(cr_export / "metadata"),
        meta_columns=["image_path", "caption"],
    )
    assert (reader.count, reader.dimension) == (60, mini.dim)
    batches = list(reader(batch_size=25, show_progress=False))
    vectors = np.concatenate([embeddings for embeddings, _ in batches])
    meta = [row for _, frame in batches for row in frame.to_dict("records")]
    np.testing.assert_array_equal(vectors, photos.vectors)
    assert [row["caption"] for row in meta] == [row.get("caption") for row in photos.metadata]
    for i, row in enumerate(meta):  # image_path is absolute and holds the gallery's thumbnail
        assert Path(row["image_path"]).is_absolute() and Path(row["image_path"]).read_bytes() == photos.thumbnail(i)
    index = faiss.read_index(str(cr_export / "image.index"))
    assert index.ntotal == 60
    queries = mini.encode_text(list(QUERIES))
    distances, rows, reconstructed = index.search_and_reconstruct(queries, K)
    for query, hits, found, scores, again in zip(QUERIES, results(mini, photos), rows, distances, reconstructed):
        assert found.tolist() == [hit.index for hit in hits], query
        np.testing.assert_allclose(scores, [hit.score for hit in hits], atol=1e-5)
        np.testing.assert_allclose(again, photos.vectors[found], atol=1e-6)
    identity = json.loads((cr_export / "koclip_gallery.json").read_text())
    assert (identity["model"], identity["model_revision"], identity["dim"]) == ("koclip-mini", mini.revision, mini.dim)


def test_clip_retrieval_round_trip_gives_the_same_search_results(scenes_gallery, cr_export, mini, tmp_path):
    out = tmp_path / "back"
    assert cli(["gallery", "import", str(cr_export), str(out)]) == 0
    before, after = gallery.Gallery.open(scenes_gallery), gallery.Gallery.open(out)
    assert results(mini, after) == results(mini, before)
    assert [row["source"] for row in after.metadata] == [row["source"] for row in before.metadata]
    assert all(after.thumbnail(i) is not None for i in range(len(after)))
    assert after.manifest["source"]["kind"] == "clip-retrieval" and after.manifest["without_thumbnail"] == 0


def test_a_layout_written_by_clip_retrieval_itself_imports_with_model(scenes_gallery, mini, tmp_path, capsys):
    """clip-retrieval inference's own writer (float16 vectors, image_path as its reader gives it, no
    koclip_gallery.json); the images are PNG files beside it."""
    writer = peers.clip_retrieval_module("clip_retrieval.clip_inference.writer")
    photos = gallery.Gallery.open(scenes_gallery)
    folder = tmp_path / "images"
    folder.mkdir()
    names = []
    for i in range(len(photos)):
        Image.open(io.BytesIO(photos.thumbnail(i))).save(folder / f"{i:03d}.png")
        names.append(str(folder / f"{i:03d}.png"))
    layout = tmp_path / "inference"
    for part, rows in enumerate((slice(0, 35), slice(35, 60))):  # two partitions, as two workers write them
        sink = writer.NumpyWriter(part, str(layout), False, True, False, 2)
        sink({"image_embs": np.asarray(photos.vectors[rows], np.float16), "image_filename": names[rows]})
        sink.flush()
    out = tmp_path / "out"
    message = one_line_error(capsys, ["gallery", "import", str(layout), str(out)])
    assert "--model" in message and "does not say which model" in message
    nothing_left(out)
    assert cli(["gallery", "import", str(layout), str(out), "--model", "koclip-mini"]) == 0
    imported = gallery.Gallery.open(out)
    assert imported.manifest["dtype"] == "float16" and len(imported) == 60
    half = gallery.Gallery.in_memory(mini, np.asarray(photos.vectors, np.float16).astype(np.float32), photos.metadata)
    for query in QUERIES:
        vector = mini.encode_text([query])[0]
        assert imported.search_vectors(vector, K) == half.search_vectors(vector, K)
    assert [row["source"] for row in imported.metadata] == names
    assert imported.thumbnail(7) is not None


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda d: shutil.rmtree(d / "metadata"), "no metadata/"),
        (lambda d: (d / "img_emb" / "img_emb_0.npy").unlink(), "holds no .npy files"),
        (lambda d: np.save(d / "img_emb" / "img_emb_0.npy", np.zeros((59, 64), np.float32)), "59 vectors"),
        (lambda d: np.save(d / "img_emb" / "img_emb_0.npy", np.ones((60, 64), np.int32)), "not (rows, dim) float16"),
        (lambda d: np.save(d / "img_emb" / "img_emb_0.npy", np.ones((60, 64), np.float32)), "not a valid vector"),
        (lambda d: (d / "img_emb" / "img_emb_0.npy").write_bytes(b"\x93NUMPY garbage"), "not a readable .npy"),
        (lambda d: (d / "metadata" / "metadata_0.parquet").write_bytes(b"PAR1"), "not a readable parquet"),
        (lambda d: (d / "koclip_gallery.json").write_text("{"), "is unreadable"),
        (lambda d: (d / "koclip_gallery.json").write_text('{"model": "koclip-mini", "dim": 32}'), "makes 64"),
    ],
    ids=["no metadata", "no vectors", "count", "ints", "not unit", "bad npy", "bad parquet", "bad json", "dim"],
)
def test_a_damaged_clip_retrieval_layout_is_refused_in_one_line(cr_export, tmp_path, capsys, damage, says):
    src = tmp_path / "src"
    shutil.copytree(cr_export, src)
    damage(src)
    out = tmp_path / "out"
    assert says in one_line_error(capsys, ["gallery", "import", str(src), str(out)])
    nothing_left(out)


def test_hostile_image_paths_give_rows_without_thumbnails_and_no_hang(cr_export, tmp_path, mini):
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = tmp_path / "src"
    shutil.copytree(cr_export, src)
    fifo = tmp_path / "fifo.jpg"
    os.mkfifo(fifo)
    file = src / "metadata" / "metadata_0.parquet"
    table = pq.read_table(file)
    paths = table.column("image_path").to_pylist()
    paths[:4] = [str(fifo), "/etc/passwd", "/no/such/file.jpg", "../../../../etc/hostname"]
    pq.write_table(table.set_column(0, "image_path", pa.array(paths)), file)
    out = tmp_path / "out"
    manifest = clip_retrieval.import_layout(src, out, progress=False)
    imported = gallery.Gallery.open(out)
    assert manifest["without_thumbnail"] == 4
    assert [imported.thumbnail(i) for i in range(4)] == [None] * 4 and imported.thumbnail(4) is not None
    assert len(gallery.search(mini, imported, "빨간 원", K)) == K


def test_float16_galleries_and_web_sources_travel_both_ways(mini, tmp_path):
    source = tmp_path / "half"
    indexing.build(sources.SceneSource(20, seed=5, size=64), mini, source, dtype="float16", progress=False)
    photos = gallery.Gallery.open(source)
    for form, export, load in (
        ("hf", hf_dataset.export, lambda src, out: hf_dataset.import_dataset(str(src), out, progress=False)),
        ("cr", clip_retrieval.export, lambda src, out: clip_retrieval.import_layout(src, out, progress=False)),
    ):
        export(source, tmp_path / form, progress=False)
        assert load(tmp_path / form, tmp_path / f"{form}-back")["dtype"] == "float16"
        back = gallery.Gallery.open(tmp_path / f"{form}-back")
        np.testing.assert_array_equal(back.vectors, photos.vectors)
        assert results(mini, back) == results(mini, photos)

    urls = [f"https://example.org/{i}.jpg" for i in range(20)]
    web = tmp_path / "web"
    shutil.copytree(source, web)
    rows = [{**row, "source": url} for row, url in zip(photos.metadata, urls)]
    (web / "metadata.jsonl").write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    clip_retrieval.export(web, tmp_path / "web-index", progress=False)
    import pyarrow.parquet as pq

    assert pq.read_table(tmp_path / "web-index" / "metadata" / "metadata_0.parquet").column("url").to_pylist() == urls
    clip_retrieval.import_layout(tmp_path / "web-index", tmp_path / "web-back", progress=False)
    assert [row["source"] for row in gallery.Gallery.open(tmp_path / "web-back").metadata] == urls


# --- the command ---


def test_missing_or_damaged_galleries_are_refused_in_one_line(scenes_gallery, tmp_path, capsys):
    out = tmp_path / "out"
    assert "does not exist" in one_line_error(capsys, ["gallery", "export", str(tmp_path / "none"), str(out)])
    damaged = tmp_path / "damaged"
    shutil.copytree(scenes_gallery, damaged)
    (damaged / "vectors.npy").write_bytes(b"\x93NUMPY")
    for form in ("hf", "clip-retrieval"):
        message = one_line_error(capsys, ["gallery", "export", str(damaged), str(out), "--format", form])
        assert "vectors.npy" in message and "damaged" in message
        nothing_left(out)
    (damaged / "manifest.json").unlink()
    assert "no manifest.json" in one_line_error(capsys, ["gallery", "export", str(damaged), str(out)])
    assert "does not exist" in one_line_error(
        capsys, ["gallery", "import", str(tmp_path / "none"), str(out), "--format", "clip-retrieval"]
    )


def test_a_hub_dataset_that_cannot_be_had_is_refused_at_once(tmp_path, capsys):
    out = tmp_path / "out"
    message = one_line_error(capsys, ["gallery", "import", "someone/photos", str(out)])  # the tests run offline
    assert "someone/photos" in message and "HF_HUB_OFFLINE" in message and "folder" in message
    nothing_left(out)


def test_an_existing_out_is_replaced_only_with_overwrite_and_only_when_it_is_one(
    scenes_gallery, hf_export, tmp_path, capsys
):
    out = tmp_path / "hf"
    assert cli(["gallery", "export", str(scenes_gallery), str(out)]) == 0
    assert "--overwrite" in one_line_error(capsys, ["gallery", "export", str(scenes_gallery), str(out)])
    assert cli(["gallery", "export", str(scenes_gallery), str(out), "--overwrite"]) == 0
    assert len(load_dataset(out)) == 60
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    message = one_line_error(capsys, ["gallery", "export", str(scenes_gallery), str(other), "--overwrite"])
    assert "not a Hugging Face dataset" in message and (other / "notes.txt").read_text() == "mine"
    assert "is the gallery itself" in one_line_error(
        capsys, ["gallery", "export", str(scenes_gallery), str(scenes_gallery), "--overwrite"]
    )
    imported = tmp_path / "imported"
    assert cli(["gallery", "import", str(hf_export), str(imported)]) == 0
    assert "is a gallery" in one_line_error(
        capsys, ["gallery", "export", str(scenes_gallery), str(imported), "--overwrite", "--format", "clip-retrieval"]
    )
    assert "already holds a gallery" in one_line_error(capsys, ["gallery", "import", str(hf_export), str(imported)])
    assert cli(["gallery", "import", str(hf_export), str(imported), "--overwrite"]) == 0
    assert "is not empty and is not a gallery" in one_line_error(
        capsys, ["gallery", "import", str(hf_export), str(other), "--overwrite"]
    )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no build folder left behind


def test_help_explains_each_option(capsys):
    for action in ("export", "import"):
        with pytest.raises(SystemExit):
            cli(["gallery", action, "--help"])
        text = capsys.readouterr().out
        assert "--format" in text and "--overwrite" in text and "clip-retrieval" in text
    assert "--model" in text and "--ann-threshold" in text


# --- large galleries ---


def synthetic_gallery(model, out: Path, count: int) -> Path:
    """A gallery of `count` clustered unit vectors of `model`'s width, captioned, without images: written quickly,
    large enough for tuning to choose an approximate index."""
    from koclip.search import portable

    rng = np.random.default_rng(0)
    centres = rng.standard_normal((64, model.dim))
    vectors = centres[rng.integers(0, 64, count)] + 0.5 * rng.standard_normal((count, model.dim))
    with portable.building(out) as stage:
        writer = portable.GalleryWriter(stage, model, count, "float32", "")
        writer.put(0, (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32))
        writer.check("the synthetic vectors")
        for i in range(count):
            writer.add({"source": i, "caption": QUERIES[i % len(QUERIES)]}, None)
        writer.finish({"kind": "synthetic"}, None, ann_threshold=count + 1, progress=False)
    return out


@pytest.mark.slow
def test_a_large_gallery_travels_with_its_index_chosen_by_tuning(mini, tmp_path):
    """30,000 rows: the imports choose their index by the tuning indexing uses (held-out rows and their captions),
    and the clip-retrieval export of a gallery with an approximate index holds a graph that finds its rows."""
    import faiss

    from koclip.search import exact, tuning

    source = synthetic_gallery(mini, tmp_path / "big", 30_000)
    photos = gallery.Gallery.open(source)
    queries = np.concatenate([mini.encode_text(list(QUERIES)), np.asarray(photos.vectors[::1500], np.float32)])
    truth = exact.exact_search(np.asarray(photos.vectors, np.float32), queries, K)

    hf_dataset.export(source, tmp_path / "hf", progress=False)
    manifest = hf_dataset.import_dataset(str(tmp_path / "hf"), tmp_path / "back", ann_threshold=1000, progress=False)
    chosen = manifest["index_tuning"]
    assert chosen["tuned_count"] == 30_000 and chosen["held_out"] == 500 and chosen["caption_queries"] == 500
    assert {trial["kind"] for trial in chosen["measured"]} >= {"exact", "ivf-pq", "hnsw"}
    imported = gallery.Gallery.open(tmp_path / "back")
    assert manifest["index"] == chosen["kind"] and (imported.index is None) == (chosen["kind"] == gallery.EXACT)
    np.testing.assert_array_equal(imported.vectors, photos.vectors)
    assert tuning.recall(imported.search_vectors(queries, K), truth) >= 0.95  # ann-benchmarks' recall@10

    approximate = tmp_path / "back" if imported.index is not None else None
    if approximate is None:  # tuning chose exact search on this machine: give the gallery an index as indexing would
        approximate = tmp_path / "approximate"
        indexing_manifest = hf_dataset.import_dataset(
            str(tmp_path / "hf"), approximate, ann_threshold=1000, target_recall=0.5, progress=False
        )
        assert indexing_manifest["index"] != gallery.EXACT
    layout = tmp_path / "index"
    clip_retrieval.export(approximate, layout, progress=False)
    index = faiss.read_index(str(layout / "image.index"))  # read_index gives the concrete class
    assert isinstance(index, faiss.IndexHNSWFlat) and index.ntotal == 30_000
    distances, rows, reconstructed = index.search_and_reconstruct(queries, K)
    found = [[exact.Hit(int(r), float(d)) for r, d in zip(row, scores)] for row, scores in zip(rows, distances)]
    assert tuning.recall(found, truth) >= 0.95
    np.testing.assert_allclose(reconstructed[0], np.asarray(photos.vectors, np.float32)[rows[0]], atol=1e-6)
    manifest = clip_retrieval.import_layout(layout, tmp_path / "again", ann_threshold=1000, progress=False)
    assert manifest["index_tuning"]["tuned_count"] == 30_000
    np.testing.assert_array_equal(gallery.Gallery.open(tmp_path / "again").vectors, photos.vectors)
