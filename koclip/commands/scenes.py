"""`python -m koclip scenes`: write synthetic Korean-captioned scenes as an image folder."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from functools import partial
from pathlib import Path

from koclip.commands import int_at_least, refuse_unused
from koclip.data import scenes
from koclip.errors import KoCLIPError

COMPOSITE_OPTIONS = {"grid": 3}  # options that count only with --composite, with their defaults


def _words(words: tuple[str, ...]) -> str:
    return ", ".join(f"{w} ({scenes.ENGLISH[w]})" for w in words)


DETAILS = f"""\
Each image holds coloured shapes on a plain, gradient or lightly noisy background:
  shapes    {_words(scenes.SHAPES)}
  colours   {_words(scenes.COLORS)}
  sizes     {_words(scenes.SIZES)}
  positions {_words(scenes.POSITIONS)}
Ordinary scenes hold 1 to 3 objects (about 40% hold one). With --composite, each image is a
GRID x GRID board of SIZE-pixel cells, one object or nothing per cell, no colour+shape pair
repeated; useful for checking where a model looks.

Output, readable with datasets.load_dataset("imagefolder", data_dir=DIR):
  DIR/000000.png ...  the images
  DIR/metadata.jsonl  one JSON line per image: file_name, caption_ko (main caption),
                      captions_ko (4 to 6 Korean captions), caption_en,
                      objects (shape, color, size, position, box [x0, y0, x1, y1] in pixels)

Image i depends only on (SEED, i): a larger --n extends a smaller run with the same seed.

example:
  python -m koclip scenes --n 5000 --out data/scenes
  python -m koclip scenes --composite --n 200 --out data/boards"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m koclip scenes`."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = DETAILS
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="directory to write into; created if missing, must be empty if it exists",
    )
    parser.add_argument("--n", type=int_at_least(1), default=1000, help="number of images (default: 1000)")
    parser.add_argument(
        "--seed",
        type=int_at_least(0),
        default=0,
        help="which stream of scenes to draw (default: 0)",
    )
    parser.add_argument(
        "--size",
        type=int_at_least(scenes.MIN_SIZE),
        default=64,
        help="image side in pixels; with --composite, the side of one cell (default: 64)",
    )
    parser.add_argument("--composite", action="store_true", help="write GRID x GRID boards instead of single scenes")
    parser.add_argument(
        "--grid",
        type=int_at_least(1, scenes.MAX_GRID),
        default=COMPOSITE_OPTIONS["grid"],
        help="cells per side of a composite board (default: %(default)s)",
    )


def main(args: argparse.Namespace) -> int:
    """Runs `python -m koclip scenes`; returns the exit status."""
    if not args.composite:
        refuse_unused(args, COMPOSITE_OPTIONS, "--composite")
    from tqdm import tqdm

    # Refuse a used directory: stale PNGs from an earlier run would lack metadata lines.
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise KoCLIPError(f"{args.out} exists and is not an empty directory; choose a new --out")
    if args.composite:
        make = partial(scenes.composite, args.seed, args.grid, args.size)
        side, kind = args.grid * args.size, f"{args.grid}x{args.grid} composites"
    else:
        make = partial(scenes.scene, args.seed, size=args.size)
        side, kind = args.size, "scenes"

    def stream() -> Iterator[scenes.Scene]:
        for i in tqdm(range(args.n), desc="scenes", unit="img"):
            yield make(index=i)

    out = scenes.write_imagefolder(stream(), args.out)
    print(f"wrote {args.n} {kind} ({side}x{side} px, seed {args.seed}) and metadata.jsonl to {out}")
    return 0
