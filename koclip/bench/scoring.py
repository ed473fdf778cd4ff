"""Retrieval recall and zero-shot accuracy from embeddings, by the rules of LAION's CLIP_benchmark.

Pure NumPy: the scores of given embeddings, with no model and no data set. `python -m koclip eval` and
`python -m koclip bench` both score through these functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

KS = (1, 5, 10)
CLASSIFICATION_KS = (1, 5)

# The two ways of choosing the text queries of a captioned image set, as each result records them.
RULES = {
    "all-captions": (
        "CLIP_benchmark's zeroshot_retrieval: every caption of an image is a text query; text->image R@k is the "
        "share of captions whose image is in their top k; image->text R@k the share of images with any of their "
        "captions in their top k"
    ),
    "first-caption": (
        "the same, with each image's first caption only (CLIP_benchmark's crossmodal3600 and xtd10 builders, "
        "which open_clip's multilingual retrieval table used)"
    ),
}
CLASSIFICATION_RULE = (
    "CLIP_benchmark's zeroshot_classification: each class embedding is the renormalised mean of its "
    "normalised prompt embeddings; top-k accuracy over images; mean_per_class_recall is sklearn's balanced accuracy"
)


def recall_at_k(similarity: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """Share of queries (rows of `similarity`) with a relevant column (`relevant[i, j]`) among their top k."""
    order = np.argsort(-similarity, axis=1, kind="stable")
    hits = np.take_along_axis(relevant, order, axis=1)
    return {f"R@{k}": float(hits[:, :k].any(axis=1).mean()) for k in ks}


def recall_chance(relevant: np.ndarray, ks: Sequence[int] = KS) -> dict[str, float]:
    """The expected `recall_at_k` of a random ranking: a row with r relevant of n columns misses
    them all in its top k with probability C(n - r, k) / C(n, k)."""
    n = relevant.shape[1]
    counts = relevant.sum(axis=1)
    return {
        f"R@{k}": float(np.mean([1 - math.comb(n - r, min(k, n)) / math.comb(n, min(k, n)) for r in counts]))
        for k in ks
    }


def text_queries(captions: Sequence[Sequence[str]], rule: str) -> tuple[list[str], np.ndarray]:
    """The text queries of a captioned image set under `rule` (a key of RULES), and the image each belongs to.

    `captions[i]` holds image i's captions, in order. Returns (texts, owner) with `owner[t]` the row of
    text t's image; an image without captions gets no query (its image->text recall is then 0)."""
    if rule not in RULES:
        raise ValueError(f"unknown scoring rule {rule!r}; the rules are {', '.join(RULES)}")
    keep = None if rule == "all-captions" else 1
    pairs = [(text, i) for i, texts in enumerate(captions) for text in list(texts)[:keep]]
    return [text for text, _ in pairs], np.array([i for _, i in pairs], dtype=np.int64)


def retrieval(text_embeddings: np.ndarray, image_embeddings: np.ndarray, owner: np.ndarray, ks=KS) -> dict:
    """Text->image and image->text Recall@k of normalised embeddings; `owner[t]`: text t's image.

    Returns {"text_to_image": {"R@1": ...}, "image_to_text": {...}}."""
    similarity = np.asarray(text_embeddings, np.float32) @ np.asarray(image_embeddings, np.float32).T
    relevant = np.zeros(similarity.shape, dtype=bool)
    relevant[np.arange(len(owner)), owner] = True
    return {
        "text_to_image": recall_at_k(similarity, relevant, ks),
        "image_to_text": recall_at_k(similarity.T, relevant.T, ks),
    }


def classification(image_embeddings: np.ndarray, class_embeddings: np.ndarray, targets: Sequence[int]) -> dict:
    """Zero-shot top-1 and top-5 accuracy and mean per-class recall of normalised image embeddings
    against one embedding per class; `targets[i]`: image i's class. Top-5 is None under 5 classes."""
    targets = np.asarray(targets, dtype=np.int64)
    logits = np.asarray(image_embeddings, np.float32) @ np.asarray(class_embeddings, np.float32).T
    order = np.argsort(-logits, axis=1, kind="stable")
    scores: dict[str, float | None] = {}
    for k in CLASSIFICATION_KS:
        scores[f"top{k}"] = (
            float((order[:, :k] == targets[:, None]).any(axis=1).mean()) if logits.shape[1] >= k else None
        )
    predicted = order[:, 0]
    scores["mean_per_class_recall"] = float(
        np.mean([np.mean(predicted[targets == c] == c) for c in np.unique(targets)])
    )
    return scores
