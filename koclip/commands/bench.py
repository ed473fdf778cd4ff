"""`python -m koclip bench`: models against Korean (and English) benchmarks, as a Markdown table or JSON,
scored by CLIP_benchmark's rules; `--compare` puts saved runs side by side."""

from __future__ import annotations

import argparse
import json
import sys

from koclip.bench.data import BENCHMARKS
from koclip.commands import int_at_least
from koclip.errors import InvalidInputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m koclip bench`."""
    parser.add_argument(
        "--model",
        action="append",
        help="a model to score, repeatable: a koclip name (koclip-base, koclip-large, koclip-base-pt, koclip-mini), "
        "Hub id or folder; hf:NAME_OR_FOLDER for a transformers dual encoder (hf:Bingsu/clip-vit-base-patch32-ko); "
        "open_clip:ARCH/PRETRAINED (needs open-clip-torch); mclip:NAME (needs multilingual-clip). Default: koclip-mini",
    )
    parser.add_argument(
        "--data",
        action="append",
        help=f"a benchmark, repeatable: {', '.join(BENCHMARKS)}; NAME=FOLDER reads that benchmark from a "
        "folder datasets' save_to_disk wrote; or any dataset folder or Hub dataset with images and captions "
        "(--split, --image-column, --text-column). Default: scenes",
    )
    parser.add_argument(
        "--split", default="test", help="split of a dataset that is not a named benchmark (default: test)"
    )
    parser.add_argument(
        "--image-column", default="image", help="image column of a dataset that is not a benchmark (default: image)"
    )
    parser.add_argument(
        "--text-column",
        default="captions",
        help="caption (or list of captions) column of a dataset that is not a benchmark (default: captions)",
    )
    parser.add_argument("--limit", type=int_at_least(1), help="score the first N images only (default: all)")
    parser.add_argument(
        "--scenes", type=int_at_least(10, 100_000), default=500, help="images in a generated scene set (default: 500)"
    )
    parser.add_argument(
        "--scene-size", type=int_at_least(16, 1024), default=64, help="pixels a side of generated scenes (default: 64)"
    )
    parser.add_argument(
        "--batch-size", type=int_at_least(1, 4096), default=64, help="images or texts encoded at once (default: 64)"
    )
    parser.add_argument(
        "--cache",
        default=None,
        help="folder for embeddings, per model, revision and rows (default: $KOCLIP_BENCH_CACHE or "
        "~/.cache/koclip/bench); 'off' keeps none",
    )
    parser.add_argument(
        "--backend",
        default="auto",
        choices=("auto", "flax", "torch"),
        help="how koclip models run (default: auto: PyTorch for full-size models where installed)",
    )
    parser.add_argument("--json", action="store_true", help="print every figure as JSON (progress bars go to stderr)")
    parser.add_argument(
        "--compare",
        nargs="+",
        metavar="RESULTS.json",
        help="print the runs these --json files hold side by side, and stop",
    )


def main(args: argparse.Namespace) -> int:
    """Runs `python -m koclip bench`; returns the exit status."""
    if args.compare and (args.model or args.data):
        raise InvalidInputError("--compare prints saved results; leave out --model and --data, or leave out --compare")
    from koclip.bench import report

    if args.compare:
        records = report.read_results(args.compare)
        print(json.dumps({"results": records}, ensure_ascii=False, indent=2) if args.json else report.markdown(records))
        return 0
    from pathlib import Path

    from koclip.bench import cache, data, encoders, run

    specs = args.data or ["scenes"]
    for spec in specs:
        data.parse(spec)  # a wrong =FOLDER is refused before any model loads
    root = None if args.cache == "off" else Path(args.cache).expanduser() if args.cache else cache.default_root()
    store = cache.EmbeddingCache(root)
    records, warnings = [], []
    sets = []
    for spec in specs:
        rows = data.open_data(
            spec, args.limit, args.split, args.image_column, args.text_column, args.scenes, args.scene_size
        )
        if rows.warning:
            print(f"warning: {rows.name}: {rows.warning}", file=sys.stderr)
            warnings.append({"dataset": rows.name, "warning": rows.warning})
        sets.append(rows)
    for name in args.model or ["koclip-mini"]:
        encoder = encoders.open_encoder(name, args.backend)
        for rows in sets:
            records += run.score(encoder, rows, store, args.batch_size)
    if args.json:
        if any(r["dataset"] == "xm3600-ko" for r in records):
            records += report.published_records()
        print(json.dumps({"results": records, "warnings": warnings}, ensure_ascii=False, indent=2))
    else:
        print(report.markdown(records))
    return 0
