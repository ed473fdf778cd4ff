"""Galleries from anywhere, and crashes at any moment: a crafted graph index, FIFOs and devices in
place of files, thumbnails that lead out of the gallery, JSON nested too deep, damaged vectors and
metadata, files too large to read, an image that cannot be decoded in a folder being indexed, and
an overwrite killed (SIGKILL) at each of its moments.

Where older code crashed or hung (a crafted graph, a FIFO, the kills), the work runs in a child
process with a timeout, so that the test fails instead of taking pytest down with it.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import koclip
from koclip import atomic
from koclip.cli import main as cli
from koclip.data import scenes
from koclip.errors import GalleryError
from koclip.search import gallery, indexes, indexing, jobs, sources

ROOT = Path(__file__).resolve().parent.parent
TESTS = Path(__file__).resolve().parent
KILLS = 10  # kills at each moment of an overwrite
MOMENTS = ("encoding", "vectors written", "manifest written", "exchanged", "between the renames", "deleting the old")
AFTER_THE_SWAP = ("exchanged", "between the renames", "deleting the old")  # the new gallery is the one at the name


def run_child(code: str, timeout: int = 120) -> subprocess.CompletedProcess:
    """`code` run in a fresh Python that has this module imported as `t`."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}
    return subprocess.run(
        [sys.executable, "-c", f"import test_gallery_hardening as t\n{code}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def scene_source(seed: int) -> sources.SceneSource:
    return sources.SceneSource(8, seed=seed, size=32)


@pytest.fixture(scope="module")
def reference(model_dir, tmp_path_factory):
    """A gallery of 40 scenes."""
    out = tmp_path_factory.mktemp("hardening") / "reference"
    indexing.build(sources.SceneSource(40, seed=5, size=32), str(model_dir), out, batch_size=20, progress=False)
    return out


@pytest.fixture
def built(reference, tmp_path):
    """A copy of the reference gallery, to damage."""
    return Path(shutil.copytree(reference, tmp_path / "g"))


def rows_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / gallery.METADATA).read_text(encoding="utf-8").splitlines()]


def write_rows(out: Path, rows: list) -> None:
    (out / gallery.METADATA).write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )


# ---------------------------------------------------------------- crafted graph indexes


def attach_graph(out: Path, craft=None) -> None:
    """Give the gallery at `out` an HNSW index over its own vectors (four links a row, so that a few
    rows are on several levels), its arrays and parameters first changed by `craft`."""
    vectors = np.load(out / gallery.VECTORS)
    graph = indexes.HNSWGraph.train(vectors, neighbours=4)
    arrays, params = {name: np.array(a) for name, a in graph.arrays.items()}, graph.params()
    assert params["max_level"] >= 1
    if craft is not None:
        craft(arrays, params)
    (out / gallery.INDEX_DIR).mkdir(exist_ok=True)
    for name, array in arrays.items():
        np.save(out / gallery.INDEX_DIR / f"{name}.npy", array)
    manifest = json.loads((out / gallery.MANIFEST).read_text())
    manifest["index"] = indexes.HNSW
    manifest["index_tuning"] = {"kind": indexes.HNSW, "params": params, "rerank": indexes.K}
    (out / gallery.MANIFEST).write_text(json.dumps(manifest))


def lowest_last_row(arrays) -> int:
    """The last row on level 0 alone: faiss reading its links of a higher level reads past the array."""
    return int(np.flatnonzero(arrays["levels"] == 1)[-1])


def entry_point_on_level_0(arrays, params):
    params["entry_point"] = lowest_last_row(arrays)


def top_link_to_a_row_on_level_0(arrays, params):
    top, entry = params["max_level"], params["entry_point"]
    first_on_top = int(arrays["offsets"][entry]) + int(arrays["cum_nneighbor_per_level"][top])
    arrays["neighbors"][first_on_top] = lowest_last_row(arrays)


@pytest.mark.parametrize(
    "craft, message",
    [
        (None, None),
        (entry_point_on_level_0, "its entry point .* is not a row on max_level"),
        (top_link_to_a_row_on_level_0, "a link of row .* leads to a row that is not on the link's level"),
    ],
)
def test_a_crafted_graph_is_refused_by_the_search_command_not_a_crash(built, craft, message):
    attach_graph(built, craft)
    result = subprocess.run(
        [sys.executable, "-m", "koclip", "search", "빨간 원", "--gallery", str(built), "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if message is None:  # the graph as faiss built it: searched
        assert result.returncode == 0, result.stderr
        assert len(json.loads(result.stdout)["results"]) == 10
        return
    assert result.returncode == 2, f"exit status {result.returncode}: {result.stderr[-2000:]}"
    assert result.stderr.startswith("error: the index's graph does not fit the gallery: ")
    assert re.search(message, result.stderr) and "re-index" in result.stderr and "Traceback" not in result.stderr


def entry_links_far_out(arrays, params):
    """The entry point's links said to start a terabyte past the array: a read there always faults."""
    arrays["offsets"][params["entry_point"]] = 1 << 40


def test_a_graph_that_crashes_its_search_crashes_only_the_probe(built, tmp_path, monkeypatch):
    attach_graph(built)
    assert gallery.probe(built) is None  # the graph as faiss built it
    attach_graph(built, entry_links_far_out)
    # In the probe's process alone, the checks are switched off: the second line of defence is tried.
    (tmp_path / "sitecustomize.py").write_text(
        "import koclip.search.indexes\nkoclip.search.indexes.graph_problem = lambda *a, **k: None\n"
    )
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    problem = gallery.probe(built, timeout=120)
    assert problem is not None and "re-index" in problem
    assert "crashed a process (signal" in problem or "did not finish" in problem, problem


def unit_rows(count: int, seed: int, dim: int = 16) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def _some_row(arrays, rng, level: int) -> int:
    """-1 (no link), a row on `level` or above, or any row."""
    pick = rng.random()
    if pick < 0.1:
        return -1
    above = np.flatnonzero(arrays["levels"] > level)
    return int(rng.choice(above)) if pick < 0.6 and len(above) else int(rng.integers(-1, len(arrays["levels"])))


def relink(arrays, params, rng):
    """Links anywhere pointed at other rows."""
    for _ in range(rng.integers(1, 20)):
        arrays["neighbors"][rng.integers(len(arrays["neighbors"]))] = _some_row(arrays, rng, int(rng.integers(0, 4)))
    return arrays


def move_entry(arrays, params, rng):
    """Another max_level, and an entry point on it (mostly) or anywhere."""
    params["max_level"] = int(rng.integers(0, len(arrays["cum_nneighbor_per_level"]) - 1))
    on_top = np.flatnonzero(arrays["levels"] == params["max_level"] + 1)
    anywhere = rng.random() < 0.3 or not len(on_top)
    params["entry_point"] = int(rng.integers(len(arrays["levels"])) if anywhere else rng.choice(on_top))
    return arrays


def relevel(arrays, params, rng):
    """A row moved to another level, every row's links laid out again where faiss looks for them."""
    cumulative, offsets = arrays["cum_nneighbor_per_level"].astype(np.int64), arrays["offsets"].astype(np.int64)
    levels, row = arrays["levels"].copy(), int(rng.integers(len(arrays["levels"])))
    levels[row] = rng.integers(1, len(cumulative))
    width = cumulative[levels[row]]
    own = arrays["neighbors"][offsets[row] : offsets[row + 1]][:width]
    added = [
        _some_row(arrays, rng, 1 + (slot - cumulative[1]) // params["neighbours"]) for slot in range(len(own), width)
    ]
    neighbors = np.concatenate(
        [arrays["neighbors"][: offsets[row]], own, added, arrays["neighbors"][offsets[row + 1] :]]
    )
    return {
        **arrays,
        "levels": levels,
        "neighbors": neighbors.astype(np.int32),
        "offsets": np.r_[0, np.cumsum(cumulative[levels])].astype(np.uint64),
    }


def retune(arrays, params, rng):
    params["ef_search"] = int(rng.integers(1, 300))
    return arrays


def fuzz_graphs(trials: int, seed: int = 0) -> None:
    """Load `trials` random damages of one graph (one to three each), and search each that loads.
    Run in a child process: faiss reading out of bounds kills it."""
    faiss = indexes.import_faiss()
    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(seed)
    vectors = unit_rows(600, seed)
    graph = indexes.HNSWGraph.train(vectors, neighbours=4)  # few links a row: six levels
    loaded = 0
    for _ in range(trials):
        arrays, params = {name: np.array(a) for name, a in graph.arrays.items()}, graph.params()
        for damage in rng.choice([relink, move_entry, relevel, retune], rng.integers(1, 4)):
            arrays = damage(arrays, params, rng)
        try:
            index = indexes.HNSWGraph.load(arrays, len(vectors), vectors.shape[1], params, vectors)
        except GalleryError:
            continue
        index.candidates(
            unit_rows(4, int(rng.integers(1 << 30))), int(rng.integers(1, 50)), {"ef_search": int(rng.integers(1, 200))}
        )
        loaded += 1
    print(json.dumps({"trials": trials, "loaded": loaded}))


@pytest.mark.slow
def test_no_damage_to_a_graph_that_the_checks_let_through_crashes_its_search():
    result = run_child("t.fuzz_graphs(3000)", timeout=300)
    assert result.returncode == 0, f"exit status {result.returncode}: {result.stderr[-2000:]}"
    counts = json.loads(result.stdout)
    assert counts["loaded"] > 300, counts  # graphs damaged in ways faiss can search: searched


# ---------------------------------------------------------------- files that are not regular files


def open_each(folders: list[str]) -> None:
    """For each gallery folder, a JSON line: the GalleryError opening it gave, and whether its first
    thumbnail could be read. Run in a child process: a FIFO opened for reading blocks."""
    for folder in folders:
        try:
            opened = gallery.Gallery.open(folder)
        except GalleryError as exc:
            print(json.dumps({"error": str(exc)}), flush=True)
            continue
        print(json.dumps({"error": None, "thumbnail": opened.thumbnail(0) is not None}), flush=True)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_fifos_devices_and_folders_in_place_of_files_are_refused_without_blocking(built, tmp_path):
    attach_graph(built)
    cases = [
        (gallery.VECTORS, "fifo"),
        (gallery.METADATA, "fifo"),
        (gallery.MANIFEST, "fifo"),
        (f"{gallery.INDEX_DIR}/levels.npy", "fifo"),
        (gallery.METADATA, "device"),
        (gallery.VECTORS, "folder"),
        (jobs.thumbnail_name(0), "fifo"),
    ]
    folders = []
    for number, (name, kind) in enumerate(cases):
        folder = Path(shutil.copytree(built, tmp_path / f"case{number}"))
        (folder / name).unlink()
        if kind == "fifo":
            os.mkfifo(folder / name)
        elif kind == "device":
            (folder / name).symlink_to(os.devnull)
        else:
            (folder / name).mkdir()
        folders.append(str(folder))
    result = run_child(f"t.open_each({folders!r})", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    found = [json.loads(line) for line in result.stdout.splitlines()]
    what = {"fifo": "a FIFO", "device": "a device", "folder": "a folder"}
    for (name, kind), folder, outcome in zip(cases[:-1], folders, found):
        error = outcome["error"]
        assert error and f"{folder}/{name}" in error and f"{what[kind]}, not a regular file" in error, outcome
    assert found[-1] == {"error": None, "thumbnail": False}  # a FIFO as a thumbnail: nothing to show, no wait


# ---------------------------------------------------------------- JSON, vectors, metadata, sizes


def test_json_nested_too_deep_is_refused_as_damage(built, tmp_path):
    deep = Path(shutil.copytree(built, tmp_path / "deep-manifest"))
    (deep / gallery.MANIFEST).write_text("[" * 100_000)
    with pytest.raises(GalleryError, match=r"manifest.json is unreadable \(maximum recursion depth"):
        gallery.Gallery.open(deep)
    rows = rows_of(built)
    (built / gallery.METADATA).write_text("".join(json.dumps(r) + "\n" for r in rows[:2]) + "[" * 100_000 + "\n")
    with pytest.raises(GalleryError, match=r"metadata.jsonl line 3 is not JSON \(RecursionError"):
        gallery.Gallery.open(built)
    assert gallery.list_galleries(tmp_path) == [built]  # the manifest alone is read to list: `built`'s is whole


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda v: v.__setitem__(3, 0), r"row 3 of .*vectors.npy is not a valid vector"),
        (lambda v: v.__setitem__((4, 0), np.nan), "row 4 of"),
        (lambda v: v.__setitem__((5, 2), -np.inf), "row 5 of"),
        (lambda v: v.__setitem__(6, v[6] * 1000), "row 6 of"),
        (lambda v: v.__setitem__((7, 1), 3e38), "row 7 of"),
        (
            lambda v: v.__setitem__(slice(10, 17), 0),
            r"7 rows of .*vectors.npy \(10, 11, 12, 13, 14 and 2 more\) are not a valid vector \(finite",
        ),
    ],
)
def test_vectors_that_would_give_false_scores_are_refused_with_their_rows(built, damage, message):
    vectors = np.load(built / gallery.VECTORS)
    damage(vectors)
    np.save(built / gallery.VECTORS, vectors)
    with pytest.raises(GalleryError, match=message):
        gallery.Gallery.open(built)


def test_vectors_rounded_to_float16_are_valid(built):
    np.save(built / gallery.VECTORS, np.load(built / gallery.VECTORS).astype(np.float16))
    manifest = json.loads((built / gallery.MANIFEST).read_text())
    (built / gallery.MANIFEST).write_text(json.dumps({**manifest, "dtype": "float16"}))
    assert len(gallery.Gallery.open(built)) == 40


@pytest.mark.parametrize(
    "damage, message",
    [
        (
            lambda out: (out / gallery.METADATA).write_bytes((out / gallery.METADATA).read_bytes()[:-30]),
            r"metadata.jsonl line 40 is not JSON \(JSONDecodeError",
        ),
        (lambda out: write_rows(out, rows_of(out)[:-1]), "has 39 rows for 40 vectors"),
        (
            lambda out: write_rows(out, [{**r, "caption": ["not", "text"]} for r in rows_of(out)]),
            "row 0 has a caption that is not text",
        ),
        (
            lambda out: write_rows(out, [{**r, "caption": None} for r in rows_of(out)]),
            "row 0 has a caption that is not text",
        ),
        (
            lambda out: write_rows(out, [{**r, "source": True} for r in rows_of(out)]),
            "row 0 has a source that is neither",
        ),
        (
            lambda out: write_rows(out, [{k: v for k, v in r.items() if k != "source"} for r in rows_of(out)]),
            "row 0 has a source",
        ),
    ],
)
def test_damaged_metadata_is_refused_on_opening_with_the_reason(built, damage, message):
    damage(built)
    with pytest.raises(GalleryError, match=message):
        gallery.Gallery.open(built)


def test_captions_with_line_separators_and_long_captions_are_kept(built):
    rows = rows_of(built)
    rows[0]["caption"] = "첫 줄\u2028둘째 줄\u2029셋째"
    rows[1]["caption"] = "긴 " * 300_000  # 1.2 MB: far over a row's share, within the slack
    write_rows(built, rows)
    opened = gallery.Gallery.open(built)
    assert opened.item(0)["caption"] == rows[0]["caption"] and len(opened.item(1)["caption"]) == 600_000


def test_files_too_large_for_a_gallery_are_refused_within_a_bound(built, tmp_path):
    large = Path(shutil.copytree(built, tmp_path / "large-manifest"))
    manifest = (large / gallery.MANIFEST).read_text()
    (large / gallery.MANIFEST).write_text(manifest[:-1] + " " * gallery.MAX_MANIFEST_BYTES + "}")
    limit = gallery.MAX_MANIFEST_BYTES
    with pytest.raises(GalleryError, match=f"manifest.json is unreadable .*larger than {limit:,} bytes"):
        gallery.Gallery.open(large)
    limit = 40 * gallery.METADATA_BYTES_PER_ROW + gallery.METADATA_SLACK
    with (built / gallery.METADATA).open("a") as f:
        f.write("\n" * limit)
    with pytest.raises(GalleryError, match=f"metadata.jsonl is missing or damaged .*larger than {limit:,} bytes"):
        gallery.Gallery.open(built)


# ---------------------------------------------------------------- thumbnails


def jpeg(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(out, "JPEG")
    return out.getvalue()


def test_thumbnails_are_read_only_from_inside_the_gallery_and_within_bounds(built, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(jpeg((64, 64)))
    opened = gallery.Gallery.open(built)
    jpeg_of_row_0 = (built / jobs.thumbnail_name(0)).read_bytes()
    assert opened.thumbnail(0) == jpeg_of_row_0
    thumbs = built / gallery.THUMBS
    (thumbs / "0000001.jpg").unlink()
    (thumbs / "0000001.jpg").symlink_to(outside / "secret.jpg")  # a symbolic link out of the gallery
    (thumbs / "0000002.jpg").unlink()  # missing
    (thumbs / "0000003.jpg").write_bytes(b"\xff\xd8\xff" + bytes(gallery.MAX_THUMBNAIL_BYTES))  # too large to read
    (thumbs / "0000004.jpg").write_bytes(jpeg((gallery.MAX_THUMBNAIL_SIDE + 1, 8)))  # too large to decode
    Image.new("RGB", (32, 32)).save(thumbs / "0000005.jpg", "PNG")  # not a JPEG
    assert [opened.thumbnail(i) is None for i in range(7)] == [False, True, True, True, True, True, False]
    shutil.rmtree(thumbs)
    thumbs.symlink_to(outside)  # the whole folder a link out of the gallery
    (outside / "0000000.jpg").write_bytes(jpeg((64, 64)))
    assert opened.thumbnail(0) == jpeg_of_row_0  # read before, inside the gallery: kept, not read again
    assert gallery.Gallery.open(built).thumbnail(0) is None
    thumbs.unlink()  # no thumbs/ at all
    assert gallery.Gallery.open(built).thumbnail(0) is None


def test_thumbnails_written_by_indexing_are_within_the_bounds_read(model_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    noise = np.random.default_rng(0).integers(0, 256, (1500, 2000, 3), np.uint8)  # the costliest to compress
    Image.fromarray(noise).save(folder / "noise.png")
    indexing.build(sources.FolderSource(folder), str(model_dir), tmp_path / "g", progress=False)
    thumbnail = gallery.Gallery.open(tmp_path / "g").thumbnail(0)
    assert thumbnail is not None and len(thumbnail) <= gallery.MAX_THUMBNAIL_BYTES // 4
    with Image.open(tmp_path / "g" / jobs.thumbnail_name(0)) as image:
        assert max(image.size) == jobs.THUMB_SIDE <= gallery.MAX_THUMBNAIL_SIDE


# ---------------------------------------------------------------- indexing: bad files, leftovers


def dds_without_pixel_format() -> bytes:
    """A DDS file Pillow opens by its first bytes but cannot decode ("Unknown pixel format flags 0")."""
    header = struct.pack("<4s7I", b"DDS ", 124, 0x1007, 16, 16, 0, 0, 0) + bytes(44) + struct.pack("<8I", 32, *[0] * 7)
    return header + bytes(20 + 1024)


def test_a_file_that_cannot_be_decoded_is_skipped_and_named_and_the_run_goes_on(model_dir, tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, scene in enumerate(scenes.generate(3, seed=2, size=32)):
        scene.image.save(folder / f"img{i}.png")
    (folder / "texture.png").write_bytes(dds_without_pixel_format())
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    assert cli(["index", str(folder), "--model", str(model_dir), "--out", str(tmp_path / "g")]) == 0
    captured = capsys.readouterr()
    assert "skipped broken.jpg: " in captured.err and "skipped texture.png: " in captured.err
    assert "indexed 3 images" in captured.out and "skipped 2 unreadable" in captured.out
    manifest = gallery.Gallery.open(tmp_path / "g").manifest
    assert manifest["skipped_count"] == 2 and {r["source"] for r in manifest["skipped"]} == {
        "broken.jpg",
        "texture.png",
    }


def test_the_manifest_lists_a_bounded_number_of_skipped_inputs(model_dir, tmp_path, capsys, monkeypatch):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.new("RGB", (32, 32), (200, 0, 0)).save(folder / "red.png")
    for i in range(3):
        (folder / f"broken{i}.jpg").write_bytes(b"not a jpeg")
    monkeypatch.setattr(jobs, "MAX_SKIPPED_LISTED", 2)
    assert cli(["index", str(folder), "--model", str(model_dir), "--out", str(tmp_path / "g")]) == 0
    assert "skipped 1 more unreadable inputs" in capsys.readouterr().err
    manifest = gallery.read_manifest(tmp_path / "g")
    assert manifest["skipped_count"] == 3 and len(manifest["skipped"]) == 2


def test_hidden_folders_are_never_listed_and_an_interrupted_swap_is_finished(built, tmp_path):
    root = built.parent
    for name in (".g.partial", ".other.new"):
        shutil.copytree(built, root / name)
    assert gallery.list_galleries(root) == [built]  # and .other.new, alone, is no interrupted swap: left there
    assert (root / ".other.new").is_dir()
    # What a crash between the two renames of a swap leaves: the old gallery aside, the new one staged.
    os.rename(built, atomic.aside(built))
    shutil.copytree(atomic.aside(built), atomic.staged(built))
    manifest = json.loads((atomic.staged(built) / gallery.MANIFEST).read_text())
    (atomic.staged(built) / gallery.MANIFEST).write_text(json.dumps({**manifest, "created": "new"}))
    assert gallery.list_galleries(root) == [built]
    assert gallery.read_manifest(built)["created"] == "new"
    assert not atomic.staged(built).exists() and not atomic.aside(built).exists()
    os.rename(built, atomic.aside(built))  # half of that: only the old one, which is left aside
    assert gallery.list_galleries(root) == []


# ---------------------------------------------------------------- an overwrite killed at each moment


def arm(moment: str, target: Path) -> None:
    """Make this process kill itself (SIGKILL) at `moment` of an overwrite of the gallery `target`."""

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    replace, unlink, exchange, commit = os.replace, os.unlink, atomic.exchange, jobs.Job.commit
    if moment == "encoding":  # after the first chunk
        jobs.Job.commit = lambda self, index, batch: (commit(self, index, batch), die())
    elif moment in ("vectors written", "manifest written"):
        name = gallery.VECTORS if moment == "vectors written" else gallery.MANIFEST
        os.replace = lambda src, dst, **kw: (replace(src, dst, **kw), Path(dst).name == name and die())
    elif moment == "exchanged":
        atomic.exchange = lambda a, b: exchange(a, b) and die()
    elif moment == "between the renames":  # a system without an exchange: the old one moved aside first
        atomic.exchange = lambda a, b: False
        os.replace = lambda src, dst, **kw: (replace(src, dst, **kw), Path(src) == target and die())
    else:  # in the middle of deleting the old gallery, once the new one is in place
        removed = []

        def unlink_then_die(path, *args, **kwargs):
            unlink(path, *args, **kwargs)
            removed.append(path)
            if len(removed) == 3:
                die()

        def replace_then_arm(src, dst, **kw):
            replace(src, dst, **kw)
            if Path(dst) == atomic.aside(target):
                os.unlink = unlink_then_die

        os.replace = replace_then_arm


def kill_matrix(root: str, model: str, kills: int, moments: list[str]) -> None:
    """Overwrite the gallery root/g `kills` times at each moment, each run (a forked process) killed
    there; after each, a JSON line of what is found. Run in a process that has not started JAX, so
    that forking is safe."""
    target, at_name, trial = Path(root) / "g", 0, 0
    for moment in moments:
        for _ in range(kills):
            trial += 1
            pid = os.fork()
            if pid == 0:
                try:
                    arm(moment, target)
                    indexing.build(scene_source(trial), model, target, batch_size=4, overwrite=True, progress=False)
                except BaseException:
                    traceback.print_exc()
                os._exit(0)  # not killed: the moment never came
            _, status = os.waitpid(pid, 0)
            found = {
                "moment": moment,
                "trial": trial,
                "before": at_name,
                "error": None,
                "killed": os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL,
            }
            try:
                found["listed"] = [path.name for path in gallery.list_galleries(root)]
                opened = gallery.Gallery.open(target)
                found["seed"] = at_name = opened.manifest["source"]["seed"]
                hits = opened.search_vectors(np.asarray(opened.vectors[:4]), k=1)
                found["finds_itself"] = all(row[0].score > 0.999 for row in hits) and len(opened.metadata) == 8
            except GalleryError as exc:
                found["error"] = str(exc)
            print(json.dumps(found), flush=True)


def exchange_works(folder: Path) -> bool:
    (folder / "a").mkdir()
    (folder / "b").mkdir()
    return atomic.exchange(folder / "a", folder / "b")


@pytest.mark.slow
def test_an_overwrite_killed_at_any_moment_leaves_the_gallery_whole_and_searchable(model_dir, tmp_path):
    root = tmp_path / "galleries"
    indexing.build(scene_source(0), str(model_dir), root / "g", batch_size=4, progress=False)
    moments = [m for m in MOMENTS if m != "exchanged" or exchange_works(tmp_path)]
    result = run_child(f"t.kill_matrix({str(root)!r}, {str(model_dir)!r}, {KILLS}, {moments!r})", timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    found = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(found) == KILLS * len(moments), result.stderr[-3000:]
    for row in found:
        assert row["killed"] and row["error"] is None and row["listed"] == ["g"] and row["finds_itself"], row
        assert row["seed"] == (row["trial"] if row["moment"] in AFTER_THE_SWAP else row["before"]), row
    # The next run finishes, leaves nothing beside the gallery, and the gallery answers a text search.
    indexing.build(scene_source(99), str(model_dir), root / "g", batch_size=4, overwrite=True, progress=False)
    assert [path.name for path in root.iterdir()] == ["g"]
    hits = gallery.search(koclip.load(model_dir), gallery.Gallery.open(root / "g"), "빨간 원", k=3)
    assert len(hits) == 3 and gallery.Gallery.open(root / "g").manifest["source"]["seed"] == 99
