"""`python -m koclip download NAME`: fill the Hugging Face cache so the model later loads offline."""

from __future__ import annotations

import argparse

from koclip import registry


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m koclip download`."""
    names = ", ".join(registry.MODELS)
    parser.add_argument("name", help=f"a model name ({names}) or a Hub id (owner/name)")


def main(args: argparse.Namespace) -> int:
    """Runs `python -m koclip download`; returns the exit status."""
    from koclip import hub

    for path in hub.download(args.name):
        print(path)
    print(f"{args.name} is ready; koclip.load({args.name!r}) now works offline (HF_HUB_OFFLINE=1).")
    return 0
