"""The training recipe itself works: a small model trained here, in well under a minute, learns."""

import json

import numpy as np
import pytest

import koclip
from koclip.cli import main as cli
from koclip.data import scenes
from koclip.training import evaluate, train
from koclip.transform import ImageTransform

QUICK = dict(
    towers="mini",
    image_size=32,
    scenes=1000,
    steps=150,
    batch_size=64,
    learning_rate=2e-3,
    warmup_steps=20,
    text_length=16,
    eval_every=1000,
    save_every=1000,
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "model"
    train.train(train.TrainConfig(out=str(out), **QUICK))
    return out


def test_a_short_run_clearly_beats_chance(trained):
    model = koclip.load(trained)
    singles = evaluate.single_objects(160, seed=77, size=32)
    colors = [evaluate.COLOR_LABEL.format(s.objects[0]["color"]) for s in singles]
    labels = [evaluate.COLOR_LABEL.format(c) for c in scenes.COLORS]
    accuracy = evaluate.zero_shot_accuracy(model, [s.image for s in singles], colors, labels)
    assert accuracy > 0.5, f"colour accuracy {accuracy:.2f}; chance is {1 / len(labels):.2f}"


def test_eval_command_reports_every_scene_measure(trained, capsys):
    assert cli(["eval", "--model", str(trained), "--n", "40", "--composites", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"zero_shot", "precision@10", "binding", "retrieval", "patch_top1"}
    assert report["zero_shot"]["color"] > 0.3  # the short run has learned colour (chance: 0.125)
    assert 0 <= report["binding"] <= 1 and report["retrieval"]["text_to_image"]["R@10"] > 0


def test_the_model_folder_keeps_its_training_curve(trained):
    records = [json.loads(line) for line in (trained / train.TRAINING_LOG).read_text(encoding="utf-8").splitlines()]
    assert [r["step"] for r in records] == [50, 100, 150]
    losses = [r["loss"] for r in records]
    assert losses == sorted(losses, reverse=True) and losses[-1] < 0.8 * losses[0], losses
    for r in records:
        assert r["loss"] == pytest.approx(r["contrastive"] + train.TrainConfig.label_weight * r["label"], abs=1e-4)
    assert 0 < records[0]["seconds"] < records[1]["seconds"] < records[2]["seconds"]
    assert records[-1]["color"] > 0.3  # the final step is also evaluated


def test_the_final_checkpoint_is_a_model_without_optimizer_state(trained):
    assert not (trained / train.TRAIN_STATE).exists()
    assert koclip.load(trained, backend="torch").encode_text(["빨간 원"]).shape == (1, 64)


def test_scene_batches_carry_pair_labels():
    data = train.SceneData(64, seed=3, size=32, transform=ImageTransform.vit(32))
    rng = np.random.default_rng(0)
    for step in range(4):
        texts, pixels, positives, (image_labels, text_labels) = data.batch(rng, 16, step)
        assert pixels.shape[0] == len(texts) == 16 and positives.diagonal().all()
        assert (image_labels.sum(axis=1) >= 1).all()  # every image holds a (colour, shape) pair
        # A caption's labels are pairs its image holds, and only captions naming both words get any.
        assert ((text_labels <= image_labels) | (text_labels == 0)).all()
        for text, row in zip(texts, text_labels):
            named = [pair for pair, i in train.LABEL_PAIRS.items() if row[i]]
            assert all(f"{c} {s}" in text for c, s in named), (text, named)
            if any(f"{c} 것" in text for c in scenes.COLORS) or not any(c in text for c in scenes.COLORS):
                assert not named, (text, named)


def test_the_label_loss_rewards_the_right_directions():
    directions = train.label_directions(64, seed=0)
    labels = np.stack([train.pair_labels({("빨간", "원")}), train.pair_labels({("빨간", "원"), ("파란", "별")})])
    right = labels @ directions
    right /= np.linalg.norm(right, axis=1, keepdims=True)
    wrong = np.roll(right, 1, axis=0)
    assert 10 * float(train.label_loss(right, labels, directions)) < float(train.label_loss(wrong, labels, directions))
    assert float(train.label_loss(right, np.zeros_like(labels), directions)) == 0.0  # unlabelled rows count for nothing


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    quick = {**QUICK, "scenes": 200, "steps": 8, "save_every": 4, "batch_size": 16, "eval_every": 2}
    whole = tmp_path / "whole"
    train.train(train.TrainConfig(out=str(whole), **quick))

    save = train._save

    def save_then_crash(cfg, *args):
        save(cfg, *args)
        raise KeyboardInterrupt  # the process dies right after its first checkpoint

    part = tmp_path / "part"
    monkeypatch.setattr(train, "_save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        train.train(train.TrainConfig(out=str(part), **quick))
    assert (part / train.TRAIN_STATE).is_file()
    monkeypatch.setattr(train, "_save", save)
    train.train(train.TrainConfig(out=str(part), **quick, resume=True))

    texts = ["빨간 원", "이것은 별 이다."]
    np.testing.assert_allclose(koclip.load(whole).encode_text(texts), koclip.load(part).encode_text(texts), atol=1e-5)
    # The log restarts from the one saved with the checkpoint: every step once, the same losses.
    logs = [[json.loads(line) for line in (run / train.TRAINING_LOG).read_text().splitlines()] for run in (whole, part)]
    assert [r["step"] for r in logs[1]] == [r["step"] for r in logs[0]] == [2, 4, 6, 8]
    np.testing.assert_allclose([r["loss"] for r in logs[1]], [r["loss"] for r in logs[0]], atol=1e-4)
    assert logs[1][2]["seconds"] > logs[1][1]["seconds"]  # training time carries on across the resume
