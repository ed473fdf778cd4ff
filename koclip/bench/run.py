"""One model on one benchmark: embeddings (from the cache where it has them), then every figure of
the benchmark's task, each a record that says what it is and how it was scored."""

from __future__ import annotations

import numpy as np

from koclip.api import ensemble
from koclip.bench import scoring
from koclip.bench.cache import EmbeddingCache, texts_identity
from koclip.bench.data import TEMPLATE_SETS, Data


def score(
    encoder, data: Data, cache: EmbeddingCache, batch_size: int = 64, templates=tuple(TEMPLATE_SETS), progress=True
) -> list[dict]:
    """Every figure of `encoder` on `data`, as records: model, model_revision, dataset, source, split,
    images, texts, task, setting (scoring rule or template set), metric, value, rule."""
    images = cache.embeddings(
        encoder,
        data.identity,
        data.size,
        data.images,
        encoder.encode_image,
        batch_size,
        f"{data.name} images",
        progress,
    )
    base = {
        "model": encoder.name,
        "model_revision": encoder.revision,
        "dataset": data.name,
        "source": data.source,
        "split": data.split,
        "images": data.size,
        "task": data.task,
    }
    records = []
    if data.task == "retrieval":
        for rule in scoring.RULES:
            texts, owner = scoring.text_queries(data.captions, rule)
            embedded = _texts(encoder, cache, texts, batch_size, f"{data.name} captions", progress)
            for direction, figures in scoring.retrieval(embedded, images, owner).items():
                for metric, value in figures.items():
                    records.append(
                        base
                        | {"texts": len(texts), "setting": rule, "metric": f"{direction} {metric}", "value": value}
                        | {"rule": scoring.RULES[rule]}
                    )
    else:
        for name in templates:
            prompts = [template.format(label) for label in data.labels for template in TEMPLATE_SETS[name]]
            embedded = _texts(encoder, cache, prompts, batch_size, f"{data.name} prompts", progress)
            classes = ensemble(embedded, len(data.labels))
            for metric, value in scoring.classification(images, classes, data.targets).items():
                records.append(
                    base
                    | {"texts": len(prompts), "setting": name, "metric": metric, "value": value}
                    | {"rule": scoring.CLASSIFICATION_RULE, "templates": list(TEMPLATE_SETS[name])}
                )
    return records


def _texts(encoder, cache: EmbeddingCache, texts: list[str], batch_size: int, desc: str, progress: bool) -> np.ndarray:
    return cache.embeddings(
        encoder,
        texts_identity(texts),
        len(texts),
        lambda a, b: texts[a:b],
        encoder.encode_text,
        batch_size,
        desc,
        progress,
    )
