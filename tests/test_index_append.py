"""`index --append`: a gallery grown by the inputs its source has gained is the gallery indexing
everything at once gives; inputs already there are skipped; every refusal comes before any encoding
and leaves the gallery as it was; a crash before the swap leaves the old gallery searchable, and the
next run finishes; the approximate index is rebuilt with its parameters or retuned as the gallery's
growth since its tuning says."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import koclip
from koclip.cli import main as cli
from koclip.data import scenes
from koclip.errors import GalleryError
from koclip.images import open_image
from koclip.search import gallery, index_files, indexes, indexing, jobs, sources, tuning

MODEL = "koclip-mini"
BATCH = 16
THRESHOLD = 1000  # the smallest --ann-threshold that counts: tuning.MIN_ROWS
LARGE = 1000  # rows of the galleries whose index is tuned, at 16 pixels a side


@pytest.fixture(scope="module")
def model():
    return koclip.load(MODEL)


def build(n, out, model, *, seed=0, size=32, **options):
    """Index n scenes into `out` (with append=True, add the ones it lacks); returns the manifest."""
    source = sources.SceneSource(n, seed=seed, size=size)
    return indexing.build(source, model, out, batch_size=options.pop("batch_size", BATCH), progress=False, **options)


def snapshot(root):
    """Every file below `root` (hidden ones too) and its bytes: what a refused append must not change."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def manifest_of(out):
    return json.loads((out / gallery.MANIFEST).read_text())


def rows_of(out):
    return [json.loads(line) for line in (out / gallery.METADATA).read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def small(model, tmp_path_factory):
    """A gallery of 40 scenes, and one of the same 60 scenes indexed at once."""
    root = tmp_path_factory.mktemp("small")
    build(40, root / "forty", model)
    build(60, root / "sixty", model)
    return root / "forty", root / "sixty"


@pytest.fixture
def forty(small, tmp_path):
    """A copy of the 40-scene gallery, alone in a folder, to append to."""
    out = tmp_path / "galleries" / "g"
    shutil.copytree(small[0], out)
    return out


def test_an_append_gives_the_gallery_indexing_everything_at_once_gives(forty, small, model, capsys):
    before = snapshot(forty)
    opened = gallery.Gallery.open(forty)
    argv = ["index", "scenes", "--n", "60", "--size", "32", "--model", MODEL, "--out", str(forty)]
    assert cli([*argv, "--batch-size", str(BATCH), "--append"]) == 0
    out, err = capsys.readouterr()
    assert f"40 of the 60 images are in {forty} already: skipped" in err
    assert f"appended 20 images with {MODEL} to {forty}, 60 in all; 40 were there already and skipped" in out

    whole = small[1]
    assert rows_of(forty) == rows_of(whole)  # old rows first, in order; thumbnails numbered as at once
    grown, at_once = np.load(forty / gallery.VECTORS), np.load(whole / gallery.VECTORS)
    old = {name: data for name, data in before.items() if name != gallery.MANIFEST}
    assert grown[:40].tobytes() == old[gallery.VECTORS][-40 * model.dim * 4 :]  # the old rows' bytes, unchanged
    np.testing.assert_allclose(grown, at_once, atol=1e-5)
    for name, data in snapshot(whole).items():
        if name.startswith(gallery.THUMBS):
            assert (forty / name).read_bytes() == data, name
    manifest, reference = manifest_of(forty), manifest_of(whole)
    appended = manifest.pop("appended")
    assert {k: appended[k] for k in ("added", "already_held", "index")} == {
        "added": 20,
        "already_held": 40,
        "index": tuning.EXACT_SEARCH,
    }
    for fields in (manifest, reference):
        fields.pop("created")
    assert manifest == reference  # source now scenes n 60, count 60, nothing skipped
    assert not any(p.name.startswith(".") for p in forty.parent.iterdir())  # nothing left beside it

    queries = model.encode_text(["빨간 원", "파란 네모", "작은 초록 세모"])
    grown_hits = gallery.Gallery.open(forty).search_vectors(queries, k=10)
    assert [[h.index for h in row] for row in grown_hits] == [
        [h.index for h in row] for row in gallery.Gallery.open(whole).search_vectors(queries, k=10)
    ]
    with pytest.raises(GalleryError, match="re-indexed since it was opened"):
        opened.search_vectors(queries[0])


def test_the_manifest_records_what_was_added_and_what_was_there(forty, model):
    manifest = build(60, forty, model, append=True)
    assert manifest["count"] == 60 and manifest["skipped"] == [] and manifest["skipped_count"] == 0
    appended = manifest["appended"]
    assert {k: appended[k] for k in ("added", "already_held", "index")} == {
        "added": 20,
        "already_held": 40,
        "index": tuning.EXACT_SEARCH,
    }
    assert manifest == manifest_of(forty) and manifest["source"] == {"kind": "scenes", "n": 60, "seed": 0, "size": 32}


def test_an_append_with_nothing_new_leaves_the_gallery_as_it_was(forty, model, capsys):
    before = snapshot(forty.parent)
    assert cli(["index", "scenes", "--n", "30", "--size", "32", "--model", MODEL, "--out", str(forty), "--append"]) == 0
    out, err = capsys.readouterr()
    assert "30 of the 30 images are in" in err and "nothing to add" in out
    assert snapshot(forty.parent) == before


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Six scenes as PNG files, one file that is no image, and four more scenes to add later."""
    root = tmp_path_factory.mktemp("photos")
    folder, extra = root / "folder", root / "extra"
    (folder / "sub").mkdir(parents=True)
    (extra / "sub").mkdir(parents=True)
    for i, scene in enumerate(scenes.generate(10, seed=3, size=32)):
        name = ["b1.png", "b2.png", "sub/c.png", "d.png", "e.png", "f.png", "a0.png", "c5.png", "sub/a.png", "z.png"][i]
        scene.image.save((folder if i < 6 else extra) / name)
    (folder / "broken.png").write_bytes(b"not a png")
    return folder, extra


def test_a_folder_gains_files_anywhere_and_the_old_rows_keep_their_numbers(photos, model, tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(photos[0], folder)
    out = tmp_path / "g"
    first = indexing.build(sources.FolderSource(folder), model, out, batch_size=4, progress=False)
    old_rows = rows_of(out)
    assert first["count"] == 6 and first["skipped_count"] == 1
    shutil.copytree(photos[1], folder, dirs_exist_ok=True)  # new names sort before, between and after the old

    manifest = indexing.build(sources.FolderSource(folder), model, out, batch_size=4, append=True, progress=False)
    rows = rows_of(out)
    assert rows[:6] == old_rows and [r["source"] for r in rows[6:]] == ["a0.png", "c5.png", "sub/a.png", "z.png"]
    assert manifest["appended"]["already_held"] == 6 and manifest["appended"]["added"] == 4
    # The unreadable file was tried again, and is listed once.
    assert manifest["skipped_count"] == 1 and [s["source"] for s in manifest["skipped"]] == ["broken.png"]
    names = [r["thumbnail"] for r in rows]
    assert len(set(names)) == 10
    opened = gallery.Gallery.open(out)
    for i, row in enumerate(rows):
        assert opened.thumbnail(i) == jobs.thumbnail_jpeg(open_image(folder / row["source"])), row
    np.testing.assert_allclose(opened.vectors, model.encode_image([folder / r["source"] for r in rows]), atol=1e-5)
    assert manifest["source"] == sources.FolderSource(folder).describe()


def test_thumbnails_that_lead_out_of_the_gallery_are_not_carried(forty, model, tmp_path):
    secret = tmp_path / "secret.jpg"
    Image.new("RGB", (8, 8), "red").save(secret)
    rows = rows_of(forty)
    (forty / rows[0]["thumbnail"]).unlink()
    (forty / rows[0]["thumbnail"]).symlink_to(secret)
    rows[1]["thumbnail"] = gallery.MANIFEST  # a row naming one of the gallery's own files
    (forty / gallery.METADATA).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    build(60, forty, model, append=True)
    grown = gallery.Gallery.open(forty)
    assert not (forty / rows[0]["thumbnail"]).exists() and grown.thumbnail(0) is None
    assert grown.thumbnail(1) is None and grown.metadata[1]["thumbnail"] == gallery.MANIFEST
    assert grown.thumbnail(2) is not None and grown.thumbnail(59) is not None


def other_revision(out):
    manifest = manifest_of(out)
    (out / gallery.MANIFEST).write_text(json.dumps({**manifest, "model_revision": "sha256:0000000000000000"}))


def truncated_vectors(out):
    data = (out / gallery.VECTORS).read_bytes()
    (out / gallery.VECTORS).write_bytes(data[:-64])


def a_row_short(out):
    lines = (out / gallery.METADATA).read_text(encoding="utf-8").splitlines(keepends=True)
    (out / gallery.METADATA).write_text("".join(lines[:-1]), encoding="utf-8")


def tuned_at_nonsense(out):
    manifest = manifest_of(out)
    manifest["index_tuning"] = {"kind": indexes.EXACT, "params": {}, "rerank": 0, "tuned_count": "many"}
    (out / gallery.MANIFEST).write_text(json.dumps(manifest))


def unfinished(out):
    (out / gallery.MANIFEST).unlink()
    (out / jobs.PARTIAL).mkdir()


REFUSALS = {
    "no gallery": (None, [], "holds no gallery to append to; run `python -m koclip index` without --append"),
    "an unfinished gallery": (unfinished, [], "holds no gallery to append to (its indexing has not finished)"),
    "another model": (None, ["--model", "{other}"], f"was made with model {MODEL}, not tiny-conv"),
    "another revision": (other_revision, [], "revision sha256:0000000000000000"),
    "another dtype": (None, ["--dtype", "float16"], "stores float32 vectors, not float16; append with --dtype float32"),
    "with --overwrite": (None, ["--overwrite"], "--append adds to the gallery and --overwrite replaces it"),
    "truncated vectors": (truncated_vectors, [], "cannot append: "),
    "a metadata row short": (a_row_short, [], "has 39 rows for 40 vectors"),
    "another source": (None, ["--seed", "5"], "so --append takes only the gallery's own source"),
    "a tuned_count that is no count": (tuned_at_nonsense, [], "gives tuned_count 'many', not a whole number"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_append_says_why_before_encoding_and_changes_nothing(
    case, forty, model_dir, monkeypatch, capsys, tmp_path
):
    damage, extra, message = REFUSALS[case]
    if case == "no gallery":
        shutil.rmtree(forty)
        forty.mkdir()
    elif damage is not None:
        damage(forty)
    before = snapshot(forty.parent)

    def no_encoding(*args, **kwargs):
        raise AssertionError("an image was encoded before the append was refused")

    monkeypatch.setattr(indexing, "encode", no_encoding)
    extra = [arg.format(other=model_dir) for arg in extra]
    argv = ["index", "scenes", "--n", "60", "--size", "32", "--model", MODEL, "--out", str(forty), "--append", *extra]
    assert cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert snapshot(forty.parent) == before


def test_a_crash_before_the_swap_leaves_the_old_gallery_and_the_next_run_finishes(forty, small, model, monkeypatch):
    before = snapshot(forty)

    def crash(new, target):
        raise OSError("simulated crash before the swap")

    monkeypatch.setattr(indexing, "replace_folder", crash)
    with pytest.raises(OSError, match="simulated crash"):
        build(60, forty, model, append=True)
    assert snapshot(forty) == before
    assert gallery.list_galleries(forty.parent) == [forty]
    old = gallery.Gallery.open(forty)
    assert len(old) == 40 and [h[0].index for h in old.search_vectors(np.asarray(old.vectors[[0, 39]]), k=1)] == [0, 39]

    monkeypatch.undo()
    build(60, forty, model, append=True)
    assert rows_of(forty) == rows_of(small[1]) and [p.name for p in forty.parent.iterdir()] == ["g"]
    with pytest.raises(GalleryError, match="re-indexed"):
        old.item(0)


def test_an_interrupted_append_resumes_from_its_finished_chunks(forty, small, model, monkeypatch):
    before = snapshot(forty)
    commits, original = [], jobs.Job.commit

    def crash_after_one(self, index, batch):
        if commits:
            raise RuntimeError("simulated crash")
        commits.append(index)
        original(self, index, batch)

    monkeypatch.setattr(jobs.Job, "commit", crash_after_one)
    with pytest.raises(RuntimeError, match="simulated crash"):
        build(60, forty, model, append=True, batch_size=8)  # 20 new scenes: chunks of 8, 8 and 4
    assert snapshot(forty) == before and len(gallery.Gallery.open(forty)) == 40

    monkeypatch.setattr(jobs.Job, "commit", lambda self, i, batch: commits.append(i) or original(self, i, batch))
    build(60, forty, model, append=True, batch_size=8)
    assert commits == [0, 1, 2]  # the first chunk was not encoded again
    assert rows_of(forty) == rows_of(small[1])
    np.testing.assert_allclose(np.load(forty / gallery.VECTORS), np.load(small[1] / gallery.VECTORS), atol=1e-5)


def test_job_positions_start_where_the_append_numbers_from():
    job = jobs.Job(Path("unused"), list(range(10)), 4, {}, first=40)
    assert [job.chunk(i)["position"].tolist() for i in range(3)] == [[40, 41, 42, 43], [44, 45, 46, 47], [48, 49]]
    assert job.chunk_of(np.array([40, 43, 44, 49])).tolist() == [0, 0, 1, 2]


# ------------------------------------------------------------------ the approximate index


@pytest.fixture(scope="module")
def tuned(model, tmp_path_factory):
    """A gallery of LARGE scenes whose index was tuned; and a copy of it given an IVF-PQ index, as a
    gallery whose tuning chose one records it."""
    root = tmp_path_factory.mktemp("tuned")
    build(LARGE, root / "exact", model, size=16, batch_size=250, ann_threshold=THRESHOLD)
    ivf = root / "ivf"
    shutil.copytree(root / "exact", ivf)
    manifest = manifest_of(ivf)
    params = {"m": 16, "nlist": 8, "nprobe": 4}
    index = tuning.rebuild(np.load(ivf / gallery.VECTORS), indexes.IVF_PQ, params)
    index_files.save(index, ivf)
    manifest["index"] = indexes.IVF_PQ
    manifest["index_tuning"] = {
        **manifest["index_tuning"],
        "kind": indexes.IVF_PQ,
        "params": index.params(),
        "rerank": 50,
        "memory_bytes": index.memory(),
    }
    (ivf / gallery.MANIFEST).write_text(json.dumps(manifest))
    gallery.Gallery.open(ivf)  # a gallery like any other
    return root / "exact", ivf


def grow(base, tmp_path, model, n, **options):
    """A copy of the gallery `base`, grown to n scenes; its folder and manifest."""
    out = tmp_path / "g"
    shutil.copytree(base, out)
    return out, build(n, out, model, size=16, batch_size=250, append=True, **options)


def test_a_tuned_gallery_records_the_row_count_of_its_tuning(tuned):
    manifest = manifest_of(tuned[0])
    assert manifest["count"] == LARGE and manifest["index_tuning"]["tuned_count"] == LARGE


def test_a_gallery_reaching_the_threshold_is_tuned_as_a_fresh_one_would_be(model, tmp_path):
    out = tmp_path / "g"
    assert build(900, out, model, size=16, batch_size=250, ann_threshold=THRESHOLD)["index_tuning"] is None
    manifest = build(1100, out, model, size=16, batch_size=250, append=True, ann_threshold=THRESHOLD)
    assert manifest["appended"]["index"] == tuning.TUNED
    assert manifest["index_tuning"]["tuned_count"] == 1100 and manifest["index_tuning"]["held_out"] == 110


def test_an_index_within_the_growth_factor_is_rebuilt_with_its_parameters(tuned, model, tmp_path, capsys):
    base = manifest_of(tuned[1])
    n = int(LARGE * tuning.RETUNE_GROWTH)  # at the factor: still within it
    out = tmp_path / "g"
    shutil.copytree(tuned[1], out)
    argv = ["index", "scenes", "--n", str(n), "--size", "16", "--model", MODEL, "--out", str(out)]
    assert cli([*argv, "--batch-size", "250", "--ann-threshold", str(THRESHOLD), "--append"]) == 0
    printed, err = capsys.readouterr()
    assert f"within {tuning.RETUNE_GROWTH} times the {LARGE:,} its index was tuned at: rebuilding its ivf-pq" in err
    assert f"(ivf-pq search, rebuilt with the parameters tuned at {LARGE:,} rows: recall@10" in printed
    manifest = manifest_of(out)
    assert manifest["appended"]["index"] == tuning.REBUILT and manifest["index"] == indexes.IVF_PQ
    recorded, before = manifest["index_tuning"], base["index_tuning"]
    assert recorded["params"] == before["params"] and recorded["rerank"] == before["rerank"]
    assert recorded["tuned_count"] == LARGE and recorded["recall@10"] == before["recall@10"]  # nothing re-measured
    grown = gallery.Gallery.open(out)
    assert len(grown) == n and grown.index.candidates(np.zeros((1, model.dim), np.float32), 5).shape == (1, 5)
    assert np.asarray(grown.index.arrays["lists"]).shape == (n,)
    rows = [0, LARGE - 1, LARGE, n - 1]
    assert [hits[0].index for hits in grown.search_vectors(np.asarray(grown.vectors[rows]), k=3)] == rows


def test_an_index_grown_past_the_factor_is_retuned(tuned, model, tmp_path):
    n = int(LARGE * tuning.RETUNE_GROWTH) + 1
    _, manifest = grow(tuned[1], tmp_path, model, n, ann_threshold=THRESHOLD)
    assert manifest["appended"]["index"] == tuning.RETUNED
    assert manifest["index_tuning"]["tuned_count"] == n and manifest["index_tuning"]["held_out"] == n // 10


def test_an_index_that_would_outgrow_the_budget_is_retuned(tuned, model, tmp_path):
    _, manifest = grow(tuned[1], tmp_path, model, LARGE + 50, ann_threshold=THRESHOLD, memory_budget=20_000)
    assert manifest["appended"]["index"] == tuning.RETUNED and manifest["index_tuning"]["memory_bytes"] <= 20_000


def test_a_gallery_tuned_before_tuned_count_was_recorded_counts_as_tuned_at_its_size(tuned, model, tmp_path):
    older = tmp_path / "older"
    shutil.copytree(tuned[0], older)
    manifest = manifest_of(older)
    del manifest["index_tuning"]["tuned_count"]
    (older / gallery.MANIFEST).write_text(json.dumps(manifest))
    _, rebuilt = grow(older, tmp_path, model, LARGE + 100, ann_threshold=THRESHOLD)
    assert rebuilt["appended"]["index"] == tuning.REBUILT and rebuilt["index_tuning"]["tuned_count"] == LARGE
    assert rebuilt["index"] == manifest["index"]


def test_a_grown_gallery_under_the_threshold_is_searched_exactly(tuned, model, tmp_path):
    _, manifest = grow(tuned[1], tmp_path, model, LARGE + 10, ann_threshold=5_000)
    assert manifest["appended"]["index"] == tuning.EXACT_SEARCH and manifest["index"] == indexes.EXACT
    assert manifest["index_tuning"] is None and not (tmp_path / "g" / gallery.INDEX_DIR).exists()


@pytest.mark.parametrize("kind", [indexes.PQ_SCAN, indexes.IVF_PQ, indexes.HNSW])
def test_an_index_rebuilt_from_its_parameters_has_them_and_finds_the_neighbours(kind):
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2_000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    _, train = tuning._builders(1_500, 32, tuning.DEFAULT_BUDGET)[kind]
    chosen = train(vectors[:1_500])
    chosen.candidates(vectors[:1], 1, chosen.settings()[-1])  # the widest search, as a tuning might pick
    params = chosen.params()
    index = tuning.rebuild(vectors, kind, params)
    kept = tuning.BUILT_WITH[kind] + tuple(name for name in tuning.SETTINGS if name in params)
    assert {k: index.params()[k] for k in kept} == {k: params[k] for k in kept}
    assert index.memory() == tuning.estimate(kind, 2_000, 32, params) or kind == indexes.HNSW
    found = index.candidates(vectors[1_900:], 100)
    assert all(row in candidates for row, candidates in zip(range(1_900, 2_000), found))  # the new rows too
