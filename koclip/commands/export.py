"""`python -m koclip export MODEL OUT --format transformers|onnx`: the model in a form used outside koclip."""

from __future__ import annotations

import argparse
from pathlib import Path

from koclip.commands import check_model_argument
from koclip.export import FORMATS, check_target


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m koclip export`."""
    parser.add_argument("model", help="a model name (koclip-base, koclip-large, koclip-base-pt, ...), Hub id or folder")
    parser.add_argument("out", type=Path, help="the folder to write (created; refused if it holds files)")
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default="transformers",
        help="transformers: a VisionTextDualEncoderModel folder (model.safetensors, processor, model card) that "
        "stock transformers loads with the model's trained text positions; onnx: the two towers as ONNX files "
        "that koclip.load or onnxruntime alone runs (default: %(default)s)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT when it already holds files")


def main(args: argparse.Namespace) -> int:
    """Runs `python -m koclip export`; returns the exit status."""
    check_target(args.out, args.overwrite)
    check_model_argument(args.model)
    from koclip import export

    write = export.to_transformers if args.format == "transformers" else export.to_onnx
    out = write(args.model, args.out, overwrite=args.overwrite)
    print(f"wrote {out} ({args.format}); see {out / 'README.md'} for how to load it")
    return 0
