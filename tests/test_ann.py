"""Approximate search indexes: each kind finds what exact search finds and survives a save and a
load; the chosen index reaches its recorded recall on queries it never saw; a memory budget is
kept; damaged index files are refused before faiss reads them."""

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from koclip import units
from koclip.errors import GalleryError, KoCLIPError
from koclip.search import exact, gallery, index_files, indexes, tuning

DIM = 32


def clustered(n: int, seed: int, clusters: int = 40) -> np.ndarray:
    """Unit vectors around shared centres, as image embeddings are (seed 0: a gallery; others: queries)."""
    centres = np.random.default_rng(99).standard_normal((clusters, DIM)).astype(np.float32)
    rng = np.random.default_rng(seed)
    rows = centres[rng.integers(clusters, size=n)] + 0.6 * rng.standard_normal((n, DIM)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


@pytest.fixture(scope="module", autouse=True)
def one_faiss_thread():
    # OpenMP threads that spin while the other core is busy make a small build many times slower.
    faiss = indexes.import_faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    yield
    faiss.omp_set_num_threads(before)


@pytest.fixture(scope="module")
def vectors():
    return clustered(6_000, seed=0)


@pytest.fixture(scope="module")
def queries():
    return clustered(100, seed=1)


@pytest.fixture(scope="module")
def choice(vectors):
    return tuning.choose(vectors)


def search(index, vectors, queries, rerank):
    if index is None:
        return exact.exact_search(vectors, queries, indexes.K)
    return exact.rescore(vectors, queries, index.candidates(queries, max(rerank, indexes.K)), indexes.K)


def test_the_chosen_index_reaches_its_recorded_recall_on_queries_it_never_saw(choice, vectors, queries):
    assert choice.recall >= choice.floor >= tuning.TARGET_RECALL and choice.held_out == tuning.HELD_OUT
    truth = exact.exact_search(vectors, queries, indexes.K)
    fresh = tuning.recall(search(choice.index, vectors, queries, choice.rerank), truth)
    assert fresh >= tuning.TARGET_RECALL - 0.01, (choice.describe(), fresh)  # 100 queries: ±0.01
    assert {trial.kind for trial in choice.trials} == set(indexes.KINDS)  # 6,000 small rows fit the default budget
    fastest = min(trial.p50_ms for trial in choice.trials if trial.floor >= tuning.TARGET_RECALL)
    assert choice.p50_ms <= tuning.SAME_SPEED * fastest + 0.02


@pytest.mark.parametrize("kind", [indexes.PQ_SCAN, indexes.IVF_PQ, indexes.HNSW])
def test_each_kind_finds_the_true_neighbours_and_survives_a_save_and_a_load(kind, vectors, queries, tmp_path):
    _, build = tuning._builders(len(vectors), DIM, tuning.DEFAULT_BUDGET)[kind]
    index = build(vectors)
    setting = index.settings()[-1]  # the widest search of its kind
    index.candidates(queries[:1], 1, setting)
    truth = exact.exact_search(vectors, queries, indexes.K)
    found = search(index, vectors, queries, 200)
    assert tuning.recall(found, truth) >= 0.97
    assert [hits[0].index for hits in found] == [hits[0].index for hits in truth]
    assert all(abs(h.score - float(vectors[h.index] @ q)) < 1e-5 for hits, q in zip(found, queries) for h in hits)

    index_files.save(index, tmp_path)
    loaded = index_files.load(tmp_path, kind, {"params": index.params(), "rerank": 200}, len(vectors), DIM, vectors)
    assert np.array_equal(loaded.candidates(queries, 50), index.candidates(queries, 50))


def test_recall_counts_rows_tied_with_a_true_neighbour():
    truth = [[exact.Hit(i, 1.0 - i / 100) for i in range(10)]]
    tied = [[exact.Hit(i + 50, 1.0 - i / 100) for i in range(10)]]  # other rows, the same scores
    assert tuning.recall(tied, truth) == 1.0
    worse = [[exact.Hit(i + 50, 0.5) for i in range(10)]]
    assert tuning.recall(worse, truth) == 0.0


def test_the_pq_scan_in_slices_finds_what_one_scan_finds(vectors, queries):
    whole = indexes.PQScan.train(vectors, m=DIM // 2)
    sliced = indexes.PQScan(whole.arrays["centroids"], whole.arrays["codes"], DIM, slices=3)
    assert len(sliced.parts) == 3 and sliced.starts == [0, 2000, 4000]
    rows = [5, 2500, 5999]
    found = sliced.candidates(vectors[rows], 20)
    assert all(row in candidates for row, candidates in zip(rows, found))  # later slices' rows keep their numbers
    for a, b in zip(whole.candidates(queries, 50), sliced.candidates(queries, 50)):
        assert len(set(a) & set(b)) >= 48  # the same codes; only ties at the cut-off may differ


def test_an_index_built_under_a_memory_budget_stays_under_it(vectors):
    budget = 150_000  # bytes: too little for the graph (a float32 copy alone is 768 KB) or 16 codes a row
    lines = []
    choice = tuning.choose(vectors, budget=budget, log=lines.append)
    assert any("hnsw: skipped" in line for line in lines)
    assert choice.memory <= budget
    if choice.index is not None:
        assert sum(a.nbytes for a in choice.index.arrays.values()) <= budget
    assert all(trial.memory <= budget for trial in choice.trials)
    assert choice.recall >= tuning.TARGET_RECALL  # exact search always fits, and always reaches it


@pytest.mark.parametrize("text, size", [("512M", 512 << 20), ("2G", 2 << 30), ("1.5GiB", 3 << 29), ("4096", 4096)])
def test_sizes_are_read_with_their_units(text, size):
    assert units.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "lots", "-1G", "0", "nanM"])
def test_a_size_that_is_not_one_is_refused(text):
    with pytest.raises(KoCLIPError, match="size"):
        units.parse_size(text)


BUDGET = 300 << 10  # too little for a graph of 1,200 rows (over 500 KiB), plenty for codes


@pytest.fixture(scope="module")
def large_gallery(model_dir, tmp_path_factory):
    """A gallery of 1,200 scenes, over the size at which an approximate index is chosen, indexed by the
    command under a memory budget; and what the command printed."""
    out = tmp_path_factory.mktemp("large") / "scenes"
    argv = [
        "index",
        "scenes",
        "--n",
        "1200",
        "--seed",
        "4",
        "--size",
        "32",
        "--model",
        str(model_dir),
        "--out",
        str(out),
        "--batch-size",
        "200",
        "--ann-threshold",
        "1000",
        "--memory-budget",
        "300K",
    ]
    result = subprocess.run([sys.executable, "-m", "koclip", *argv], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return out, result


def test_a_gallery_indexed_under_a_memory_budget_records_its_index_and_stays_under_it(large_gallery):
    out, result = large_gallery
    manifest = json.loads((out / gallery.MANIFEST).read_text())
    recorded = manifest["index_tuning"]
    assert manifest["index"] == recorded["kind"] in indexes.KINDS
    assert recorded["recall@10"] >= recorded["recall@10_floor"] >= recorded["target_recall"] == tuning.TARGET_RECALL
    assert recorded["memory_budget"] == BUDGET and recorded["memory_bytes"] <= BUDGET
    assert sum(p.stat().st_size for p in (out / gallery.INDEX_DIR).glob("*.npy")) <= BUDGET + 4096
    assert {t["kind"] for t in recorded["measured"]} == {indexes.EXACT, indexes.IVF_PQ, indexes.PQ_SCAN}
    assert "hnsw: skipped" in result.stderr
    assert recorded["held_out"] == recorded["caption_queries"] == 120  # scenes have captions: text queries too
    assert (
        f"({recorded['kind']} search: recall@10 {recorded['recall@10']:.3f}, "
        f"at least {recorded['recall@10_floor']:.3f} "
        "for new queries, on 120 held-out rows and 120 of their captions"
    ) in result.stdout
    opened = gallery.Gallery.open(out)
    assert (opened.index is None) == (manifest["index"] == indexes.EXACT)
    rows = [3, 600, 1_199]
    assert [hits[0].index for hits in opened.search_vectors(np.asarray(opened.vectors[rows]), k=3)] == rows


def damaged_copy(source, tmp_path, change):
    out = tmp_path / "copy"
    shutil.copytree(source[0], out)
    manifest = json.loads((out / gallery.MANIFEST).read_text())
    _, build = tuning._builders(manifest["count"], manifest["dim"], tuning.DEFAULT_BUDGET)[indexes.IVF_PQ]
    index = build(np.load(out / gallery.VECTORS))
    shutil.rmtree(out / gallery.INDEX_DIR, ignore_errors=True)
    index_files.save(index, out)
    manifest["index"] = indexes.IVF_PQ
    manifest["index_tuning"] = {"kind": indexes.IVF_PQ, "params": {**index.params(), "nprobe": 4}, "rerank": 50}
    change(out, manifest)
    (out / gallery.MANIFEST).write_text(json.dumps(manifest))
    return out


def claim_gigabytes(out, manifest):
    """codes.npy's header says 6 GiB of codes; the file holds a few kilobytes."""
    path = out / gallery.INDEX_DIR / "codes.npy"
    codes = np.load(path)
    buffer = io.BytesIO()
    header = {"descr": codes.dtype.str, "fortran_order": False, "shape": (6 << 30, codes.shape[1])}
    np.lib.format.write_array_header_1_0(buffer, header)
    path.write_bytes(buffer.getvalue() + codes.tobytes())


def codebooks_that_do_not_divide(out, manifest):
    """Three codebooks over the dimensions, every array shaped to match: faiss would raise on m."""
    dim, count = manifest["dim"], manifest["count"]
    manifest["index_tuning"]["params"]["m"] = 3
    np.save(out / gallery.INDEX_DIR / "centroids.npy", np.zeros((3, 16, dim // 3), np.float32))
    np.save(out / gallery.INDEX_DIR / "codes.npy", np.zeros((count, 2), np.uint8))


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda out, m: None, None),
        (lambda out, m: (out / gallery.INDEX_DIR / "lists.npy").unlink(), "lists.npy is missing"),
        (lambda out, m: m["index_tuning"]["params"].update(nprobe="all"), "nprobe as 'all'"),
        (lambda out, m: m["index_tuning"]["params"].update(nprobe=10_000), "do not fit its parameters"),
        (
            lambda out, m: m["index_tuning"]["params"].update(nlist=7),
            r"coarse.npy is \(\d+, \d+\) float32, not \(7, \d+\)",
        ),
        (lambda out, m: m.update(index="pq256x4"), "no longer reads"),
        (lambda out, m: m["index_tuning"].pop("rerank"), "gives the index's rerank as None"),
        (lambda out, m: m["index_tuning"].update(rerank=10**12), "rerank as 1000000000000"),
        (lambda out, m: m.pop("index_tuning"), "lacks the index's tuning"),
        (
            lambda out, m: np.save(
                out / gallery.INDEX_DIR / "coarse.npy",
                np.full_like(np.load(out / gallery.INDEX_DIR / "coarse.npy"), np.nan),
            ),
            "coarse.npy holds values that are not numbers",
        ),
        (
            lambda out, m: np.save(out / gallery.INDEX_DIR / "codes.npy", np.array([{"a": 1}]), allow_pickle=True),
            "codes.npy is damaged \\(it holds Python objects\\)",
        ),
        (claim_gigabytes, "damaged"),
        (codebooks_that_do_not_divide, "m 3 does not divide the dimension 16"),
    ],
)
def test_a_damaged_index_is_refused_before_faiss_reads_it(large_gallery, tmp_path, change, message):
    out = damaged_copy(large_gallery, tmp_path, change)
    if message is None:  # undamaged: it opens, and finds each row first
        opened = gallery.Gallery.open(out)
        assert opened.search_vectors(np.asarray(opened.vectors[7]), k=1)[0].index == 7
        return
    with pytest.raises(GalleryError, match=message):
        gallery.Gallery.open(out)


@pytest.mark.parametrize(
    "damage",
    [
        "links out of place",
        "a link to a row that is not there",
        "another M",
        "an entry point below the top",
        "a link to a row below its level",
    ],
)
def test_a_graph_whose_links_do_not_fit_is_refused(vectors, tmp_path, damage):
    graph = indexes.HNSWGraph.train(vectors[:2_000])
    index_files.save(graph, tmp_path)
    params = graph.params()
    folder = tmp_path / gallery.INDEX_DIR
    if damage == "links out of place":  # faiss would read another row's links, or past the array
        offsets = np.load(folder / "offsets.npy")
        offsets[1:-1] += 1
        np.save(folder / "offsets.npy", offsets)
    elif damage == "a link to a row that is not there":
        neighbors = np.load(folder / "neighbors.npy")
        neighbors[5] = 2_000
        np.save(folder / "neighbors.npy", neighbors)
    elif damage == "another M":
        params["neighbours"] = 16
    else:  # faiss would read links of a level the row is not on: another row's, or past the array
        levels, neighbors = np.load(folder / "levels.npy"), np.load(folder / "neighbors.npy")
        lowest = int(np.flatnonzero(levels == 1)[-1])
        if damage == "an entry point below the top":
            params["entry_point"] = lowest
        else:
            top = int(np.load(folder / "offsets.npy")[params["entry_point"]]) + 2 * params["neighbours"]
            neighbors[top + (params["max_level"] - 1) * params["neighbours"]] = lowest
            np.save(folder / "neighbors.npy", neighbors)
    with pytest.raises(GalleryError, match="graph does not fit"):
        index_files.load(tmp_path, indexes.HNSW, {"params": params, "rerank": indexes.K}, 2_000, DIM, vectors[:2_000])


def test_more_results_than_the_index_rescores_come_from_exact_search(large_gallery, tmp_path):
    opened = gallery.Gallery.open(damaged_copy(large_gallery, tmp_path, lambda out, manifest: None))  # IVF-PQ
    query = np.asarray(opened.vectors[11])
    assert opened.index is not None and opened.rerank < 1_000
    every = opened.search_vectors(query, k=10**12)  # more than the gallery holds: all of it, ranked
    assert len(every) == len(opened) == 1_200
    assert [hit.index for hit in every] == [
        hit.index for hit in gallery.exact_search(opened.vectors, query[None], 1_200)[0]
    ]
