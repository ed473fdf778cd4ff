"""The training recipe itself works: a small model trained here, in well under a minute, learns."""

import numpy as np
import pytest

import koclip
from koclip import evaluate, scenes, train

QUICK = dict(towers="mini", image_size=32, scenes=1000, steps=150, batch_size=64, learning_rate=2e-3,
             warmup_steps=20, text_length=16, eval_every=1000, save_every=1000)


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


def test_the_final_checkpoint_is_a_model_without_optimizer_state(trained):
    assert not (trained / train.TRAIN_STATE).exists()
    assert koclip.load(trained, backend="torch").encode_text(["빨간 원"]).shape == (1, 64)


def test_resume_after_a_crash_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    quick = {**QUICK, "scenes": 200, "steps": 8, "save_every": 4, "batch_size": 16}
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
