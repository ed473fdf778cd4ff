"""`python -m koclip`: one entry point, one module per subcommand in `koclip.commands`.

Each command module defines `add_arguments(parser)` and `main(args) -> int`; the one-line
descriptions live here.
Modules are imported only when their command runs, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from koclip.commands import terminal_safe
from koclip.errors import KoCLIPError

COMMANDS = {
    "download": "Download a published model into the local Hugging Face cache.",
    "scenes": "Generate synthetic Korean-captioned scenes (PNG folder + metadata.jsonl).",
    "index": "Encode an image collection into a searchable gallery directory.",
    "search": "Search a gallery with a text query or an image.",
    "train": "Train a KoCLIP dual encoder contrastively.",
    "eval": "Evaluate a model: retrieval recall, zero-shot accuracy, patch localisation.",
    "bench": "Score models on Korean benchmarks (XM3600, XTD10, CIFAR-10) by CLIP_benchmark's rules.",
    "export": "Export a model for stock transformers or ONNX Runtime.",
    "serve": "Serve galleries over HTTP: clip-retrieval's back-end protocol and a JSON API.",
    "gallery": "Export a gallery as a Hugging Face dataset or a clip-retrieval index, or import one.",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `python -m koclip` parser, one subcommand per COMMANDS entry. Only `command`'s options are added, so that
    the other commands' modules are not imported."""
    parser = argparse.ArgumentParser(
        prog="python -m koclip",
        description="KoCLIP: Korean image-text dual encoders. Run a command with --help for its options.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == command:
            importlib.import_module(f"koclip.commands.{name}").add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; `argv` None: this process's own command line (`python -m koclip`)."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    if command not in COMMANDS:
        command = None
    args = build_parser(command).parse_args(argv)
    if args.command is None:
        build_parser().print_help()
        return 0
    module = importlib.import_module(f"koclip.commands.{args.command}")
    try:
        return int(module.main(args) or 0)
    except KoCLIPError as exc:
        print(f"error: {terminal_safe(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
