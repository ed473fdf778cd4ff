"""Benchmark records as Markdown tables, with the published peer figures beside them."""

from __future__ import annotations

import json
from pathlib import Path

from koclip.errors import KoCLIPError

PUBLISHED_SOURCE = (
    "open_clip's docs/openclip_multilingual_retrieval_results.csv (scored by LAION's CLIP_benchmark, "
    "first caption of each image)"
)
# Crossmodal-3600 Korean, published: text->image R@1, R@5, R@10, image->text R@1, R@5 (None: not given).
PUBLISHED_XM3600_KO = {
    "nllb-clip-large-siglip": (0.594, 0.831, 0.891, 0.559, 0.813),
    "xlm-roberta-large-ViT-H-14": (0.516, 0.768, 0.851, 0.561, 0.814),
    "xlm-roberta-base-ViT-B-32 (laion5b)": (0.435, 0.717, 0.811, 0.476, 0.751),
    "OpenAI ViT-B-32 (English only)": (0.001, 0.002, 0.005, None, None),
}
RETRIEVAL_COLUMNS = [f"{d} R@{k}" for d in ("text_to_image", "image_to_text") for k in (1, 5, 10)]
CLASSIFICATION_COLUMNS = ["top1", "top5", "mean_per_class_recall"]


def published_records() -> list[dict]:
    """The published XM3600-ko figures as records (first-caption rule), marked with their source."""
    names = ["text_to_image R@1", "text_to_image R@5", "text_to_image R@10", "image_to_text R@1", "image_to_text R@5"]
    return [
        {
            "model": f"{model} [published]",
            "model_revision": "published",
            "dataset": "xm3600-ko",
            "split": "ko",
            "images": 3600,
            "task": "retrieval",
            "setting": "first-caption",
            "metric": metric,
            "value": value,
            "rule": PUBLISHED_SOURCE,
        }
        for model, values in PUBLISHED_XM3600_KO.items()
        for metric, value in zip(names, values)
        if value is not None
    ]


def _cell(value) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown(records: list[dict]) -> str:
    """One table per task: a row per (model, dataset, setting), a column per metric. The published
    XM3600-ko figures follow a first-caption xm3600-ko row, with their source under the table."""
    if any(r["dataset"] == "xm3600-ko" and r["setting"] == "first-caption" for r in records):
        records = records + published_records()
    out = []
    for task, columns, setting in (
        ("retrieval", RETRIEVAL_COLUMNS, "captions"),
        ("classification", CLASSIFICATION_COLUMNS, "templates"),
    ):
        rows: dict[tuple, dict] = {}
        for r in records:
            if r["task"] == task:
                key = (r["model"], r["dataset"], r["images"], r["setting"], r["model_revision"])
                rows.setdefault(key, {})[r["metric"]] = r["value"]
        if not rows:
            continue
        heads = [
            "model",
            "data (images)",
            setting,
            *(c.replace("text_to_image", "t→i").replace("image_to_text", "i→t") for c in columns),
        ]
        out.append("| " + " | ".join(heads) + " |")
        out.append("|" + "---|" * len(heads))
        for (model, dataset, images, rule, _), values in rows.items():
            out.append(
                f"| {model} | {dataset} ({images:,}) | {rule} | "
                + " | ".join(_cell(values.get(c)) for c in columns)
                + " |"
            )
        out.append("")
    if any(r["model_revision"] == "published" for r in records):
        out.append(f"[published]: {PUBLISHED_SOURCE}.")
    return "\n".join(out).rstrip() + "\n"


def read_results(paths: list[str]) -> list[dict]:
    """The records of `--json` result files, in order; a clear error for a file that is not one."""
    records = []
    for name in paths:
        path = Path(name)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            found = document["results"]
            if not isinstance(found, list) or not all(isinstance(r, dict) and "metric" in r for r in found):
                raise ValueError("its results are not a list of figures")
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KoCLIPError(f"{path} is not a result file written by `bench --json` ({exc})") from None
        records += [r for r in found if r.get("model_revision") != "published"]
    return records
