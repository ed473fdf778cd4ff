"""`python -m koclip eval`: measure a model on freshly generated scenes, or on a captioned dataset."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m koclip eval`."""
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.add_argument("--model", default="koclip-mini", help="model name, Hub id or folder")
    parser.add_argument("--backend", default="flax", choices=("flax", "torch"))
    parser.add_argument(
        "--data",
        default="scenes",
        help="'scenes' (zero-shot accuracy, precision@10, colour-shape binding, retrieval and patch "
        "localisation, on plain and on crowded scenes, with chance levels) or a Hugging Face dataset "
        "for retrieval Recall@1/5/10",
    )
    parser.add_argument(
        "--n",
        type=int,
        default=500,
        help="scenes in the held-out gallery (the crowded one holds 4 times as many), or dataset rows",
    )
    parser.add_argument("--seed", type=int, default=1_000_003, help="seed of the held-out scenes (training uses 0)")
    parser.add_argument(
        "--composites", type=int, default=50, help="3x3 boards for patch localisation, plain and crowded each"
    )
    parser.add_argument("--split", default="validation")
    parser.add_argument("--image-column", default="image")
    parser.add_argument("--text-column", default="caption")
    parser.add_argument("--json", action="store_true", help="print JSON; the progress bar goes to stderr")


def main(args: argparse.Namespace) -> int:
    """Runs `python -m koclip eval`; returns the exit status."""
    import koclip
    from koclip.training import evaluate

    model = koclip.load(args.model, backend=args.backend)
    if args.data == "scenes":
        size = max(64, model.config.image_size)  # scenes drawn at the model's own resolution
        results = evaluate.evaluate_scenes(model, args.n, args.seed, size, args.composites, progress=True)
    else:
        results = evaluate.evaluate_dataset(model, args.data, args.split, args.image_column, args.text_column, args.n)
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        print(evaluate.format_report(results))
    return 0
