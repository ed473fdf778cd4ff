"""Evaluation: retrieval recall, zero-shot accuracy, gallery precision and patch localisation.

Retrieval works on any image-text pairs; the other measures use generated scenes, whose
structured labels say exactly which answers are right.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from koclip import scenes
from koclip.api import DEFAULT_TEMPLATE, KoCLIP
from koclip.patches import rank_patches

COLOR_LABEL = "{} 것"  # "빨간 것": a bare adjective needs a noun to read as Korean


def recall_at_k(similarity: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    """Share of queries (rows) with a relevant item among their top k columns."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    hits = np.take_along_axis(relevant, order, axis=1)
    return {f"R@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}


def retrieval(model: KoCLIP, images: Sequence, captions: Sequence[str], relevant: np.ndarray | None = None) -> dict:
    """Text→image and image→text Recall@1/5/10; `relevant[i, j]`: caption i describes image j."""
    relevant = np.eye(len(captions), dtype=bool) if relevant is None else relevant
    sim = model.encode_text(list(captions)) @ model.encode_image(list(images)).T
    return {
        "text_to_image": recall_at_k(sim, relevant),
        "image_to_text": recall_at_k(sim.T, relevant.T),
    }


def zero_shot_accuracy(model: KoCLIP, images: Sequence, truth: Sequence[str], labels: Sequence[str],
                       template=DEFAULT_TEMPLATE) -> float:
    """Accuracy of picking `truth[i]` among `labels` for image i (labels embedded once)."""
    label_emb = model.label_embeddings(labels, template)
    predicted = np.argmax(model.encode_image(list(images)) @ label_emb.T, axis=1)
    return float(np.mean([labels[p] == t for p, t in zip(predicted, truth)]))


def precision_at_k(model: KoCLIP, gallery: Sequence[scenes.Scene], k: int = 10) -> float:
    """Mean precision@k of colour+shape queries ("빨간 원") over a scene gallery.

    A hit is any image holding such an object; with fewer than k such images the best
    possible count is the denominator, so a perfect ranking scores 1.
    """
    image_emb = model.encode_image([s.image for s in gallery])
    pairs = [(c, s) for c in scenes.COLORS for s in scenes.SHAPES]
    text_emb = model.encode_text([f"{c} {s}" for c, s in pairs])
    scores = []
    for (color, shape), q in zip(pairs, text_emb):
        spec = scenes.Query((scenes.ObjectSpec(shape=shape, color=color),))
        relevant = np.array([scenes.matches(spec, s.objects) for s in gallery])
        if relevant.any():
            top = np.argsort(-(image_emb @ q), kind="stable")[:k]
            scores.append(relevant[top].sum() / min(k, relevant.sum()))
    return float(np.mean(scores))


def binding(model: KoCLIP, pairs: Sequence[tuple[scenes.Scene, scenes.Scene]]) -> float:
    """Share of swapped pairs (`scenes.swapped_pair`) in which "colour shape" of the first scene's
    first object scores that scene above its swap. A bag of attributes scores 0.5."""
    true = model.encode_image([a.image for a, _ in pairs])
    swapped = model.encode_image([b.image for _, b in pairs])
    queries = model.encode_text([f"{a.objects[0]['color']} {a.objects[0]['shape']}" for a, _ in pairs])
    return float(np.mean((queries * true).sum(axis=1) > (queries * swapped).sum(axis=1)))


def patch_localisation(model: KoCLIP, composites: Sequence[scenes.Scene], grid: int = 3) -> float:
    """Share of (composite, object) queries whose object's cell ranks first."""
    correct = []
    for comp in composites:
        for obj in comp.objects:
            ranking = rank_patches(model, comp.image, f"{obj['color']} {obj['shape']}", grid, grid)
            correct.append(ranking.cell(ranking.order[0]) == tuple(obj["cell"]))
    return float(np.mean(correct))


def single_objects(n: int, seed: int, size: int) -> list[scenes.Scene]:
    return [scenes.scene(seed, i, size, max_objects=1) for i in range(n)]


def zero_shot_on_scenes(model: KoCLIP, singles: Sequence[scenes.Scene]) -> dict[str, float]:
    images = [s.image for s in singles]
    shapes = [s.objects[0]["shape"] for s in singles]
    colors = [s.objects[0]["color"] for s in singles]
    return {
        "shape": zero_shot_accuracy(model, images, shapes, list(scenes.SHAPES)),
        "color": zero_shot_accuracy(
            model, images, [COLOR_LABEL.format(c) for c in colors], [COLOR_LABEL.format(c) for c in scenes.COLORS]
        ),
        "shape_no_template": zero_shot_accuracy(model, images, shapes, list(scenes.SHAPES), template=None),
        # The multilinguality probe: the same task asked in English.
        "shape_english": zero_shot_accuracy(
            model, images, [scenes.ENGLISH[s] for s in shapes], [scenes.ENGLISH[s] for s in scenes.SHAPES],
            template="this is a {}.",
        ),
    }


def evaluate_scenes(model: KoCLIP, n: int = 500, seed: int = 1_000_003, size: int = 64,
                    composites: int = 50, grid: int = 3) -> dict:
    """Every scene measure, on scenes generated afresh from `seed` (unseen in training)."""
    gallery = scenes.generate(n, seed, size)
    main_captions = [s.captions_ko[0] for s in gallery]
    relevant = np.array([[scenes.matches(s.queries[0], g.objects) for g in gallery] for s in gallery])
    return {
        "model": model.name,
        "seed": seed,
        "zero_shot": zero_shot_on_scenes(model, single_objects(n, seed, size)),
        "precision@10": precision_at_k(model, gallery),
        "binding": binding(model, [scenes.swapped_pair(seed, i, size) for i in range(n // 2)]),
        "retrieval": retrieval(model, [s.image for s in gallery], main_captions, relevant),
        "patch_top1": patch_localisation(model, [scenes.composite(seed, grid, size, i) for i in range(composites)], grid),
    }


def evaluate_dataset(model: KoCLIP, name: str, split: str, image_column: str, text_column: str, n: int) -> dict:
    """Recall@1/5/10 on the first `n` rows of a captioned dataset (the first caption of each row)."""
    from koclip.train import open_dataset

    rows = open_dataset(name, split, image_column, text_column)
    rows = rows.select(range(min(n, len(rows))))
    captions = [t if isinstance(t, str) else t[0] for t in rows[text_column]]
    return {"model": model.name, "data": name, "split": split, "n": len(rows),
            "retrieval": retrieval(model, rows[image_column], captions)}


def format_report(results: dict, indent: str = "") -> str:
    """The nested results as aligned `name: value` lines."""
    lines = []
    for key, value in results.items():
        if isinstance(value, dict):
            lines += [f"{indent}{key}:", format_report(value, indent + "  ")]
        else:
            lines.append(f"{indent}{key}: {value:.3f}" if isinstance(value, float) else f"{indent}{key}: {value}")
    return "\n".join(lines)
