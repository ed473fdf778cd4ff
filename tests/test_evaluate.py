"""The evaluation: its chance levels are what random rankings score, a random model scores near
them, and koclip-mini scores far above them on the hard measures."""

import json
import re

import numpy as np
import pytest

import koclip
from koclip.cli import main as cli
from koclip.data import scenes
from koclip.training import evaluate

SEED = 2_024


class RandomRanker:
    """A stand-in model whose embeddings are random: every ranking it makes is a random one."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def _rows(self, n: int) -> np.ndarray:
        rows = self.rng.standard_normal((n, 8))
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    def encode_text(self, texts):
        return self._rows(len(texts))

    def encode_image(self, images):
        return self._rows(len(list(images)))

    def label_embeddings(self, labels, template=None):
        return self._rows(len(labels))


def leaves(tree: dict, path: tuple = ()) -> dict:
    """{(key, subkey, ...): value} for every number in a nested result."""
    out = {}
    for key, value in tree.items():
        out.update(leaves(value, path + (key,)) if isinstance(value, dict) else {path + (key,): value})
    return out


@pytest.fixture(scope="module")
def crowd():
    return scenes.generate(160, SEED, 64, scenes.MAX_OBJECTS)


def mean_over_random_rankers(measure, runs: int = 100):
    results = [measure(RandomRanker(seed)) for seed in range(runs)]
    if isinstance(results[0], dict):
        return {key: np.mean([leaves(r)[key] for r in results]) for key in leaves(results[0])}
    return np.mean(results)


def test_chance_levels_are_what_random_rankings_score(crowd):
    for kind in evaluate.PRECISION_KINDS:
        random = mean_over_random_rankers(lambda m: evaluate.precision_at_k(m, crowd, kind=kind))
        assert random == pytest.approx(evaluate.precision_chance(crowd, kind=kind), abs=0.006), kind
    random = mean_over_random_rankers(lambda m: evaluate.near_miss_accuracy(m, crowd))
    assert random == pytest.approx(evaluate.near_miss_chance(crowd), abs=0.006)
    random = mean_over_random_rankers(lambda m: evaluate.scene_retrieval(m, crowd))
    chance = leaves(evaluate.retrieval_chance(evaluate.scene_relevance(crowd)))
    assert random == pytest.approx(chance, abs=0.006)
    boards = evaluate.mosaic_boards(crowd, 50, SEED)
    assert mean_over_random_rankers(lambda m: evaluate.patch_localisation(m, boards)) == pytest.approx(1 / 9, abs=0.02)


def test_relevance_agrees_with_checking_every_scene(crowd):
    queries = [q for s in crowd[:40] for q in s.queries]
    naive = np.array([[scenes.matches(q, s.objects) for s in crowd] for q in queries])
    np.testing.assert_array_equal(evaluate.relevance(queries, crowd), naive)


def test_near_misses_differ_in_one_attribute_and_name_nothing_in_the_scene():
    objects = [{"shape": "원", "color": "빨간"}, {"shape": "별", "color": "파란"}]
    misses = evaluate.near_misses(objects[0], objects)
    assert ("빨간", "별") in misses and ("파란", "원") in misses  # words from the scene, wrongly bound
    assert ("빨간", "원") not in misses and ("파란", "별") not in misses
    assert len(misses) == len(scenes.SHAPES) - 1 + len(scenes.COLORS) - 1
    assert all((s == "원") != (c == "빨간") for c, s in misses)


def test_every_mosaic_cell_but_one_holds_the_words_of_the_query_on_different_objects(crowd):
    for image, [(query, (row, col))] in evaluate.mosaic_boards(crowd, 5, SEED):
        color, shape = query.split()
        for r in range(3):
            for c in range(3):
                cell = np.asarray(image.crop((c * 64, r * 64, c * 64 + 64, r * 64 + 64)))
                tile = next(s for s in crowd if np.array_equal(np.asarray(s.image), cell))
                pairs = {(o["shape"], o["color"]) for o in tile.objects}
                assert ((shape, color) in pairs) == ((r, c) == (row, col))
                assert any(s == shape for s, _ in pairs) and any(k == color for _, k in pairs)


def test_a_random_model_scores_near_chance(model_dir):
    results = evaluate.evaluate_scenes(koclip.load(model_dir), n=60, seed=SEED, composites=10)
    measured, chance = leaves({k: v for k, v in results.items() if k != "chance"}), leaves(results["chance"])
    del measured[("model",)], measured[("seed",)]
    assert measured.keys() == chance.keys()
    for key, value in measured.items():
        assert 0 <= value <= chance[key] + 0.15, (key, value, chance[key])


def test_koclip_mini_scores_far_above_chance_on_the_hard_measures(capsys):
    assert (
        cli(["eval", "--model", "koclip-mini", "--n", "100", "--composites", "20", "--seed", str(SEED), "--json"]) == 0
    )
    out, err = capsys.readouterr()
    results = json.loads(out)  # stdout holds the JSON alone
    assert re.search(r"evaluating: 100%.* (\d+)/\1 ", err)  # the progress bar, on stderr
    hard, chance = leaves(results["crowded"]), leaves(results["chance"]["crowded"])
    assert hard.keys() == chance.keys()
    for key, value in hard.items():
        # At least a third of the way from chance to a perfect score (a random model: about none of it).
        assert (value - chance[key]) / (1 - chance[key]) >= 1 / 3, (key, value, chance[key])
