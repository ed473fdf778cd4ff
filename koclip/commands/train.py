"""`python -m koclip train`: contrastive training; every option maps to a `TrainConfig` field."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any

from koclip.commands import check_dataset, float_above, float_at_least, int_at_least, refuse_unused
from koclip.data.scenes import MIN_SIZE
from koclip.errors import InvalidInputError
from koclip.training.recipe import TOWERS, TrainConfig

HELPS = {
    "out": "folder to write the model to (koclip's format: koclip.load reads it); overwritten atomically at each save",
    "towers": "mini: small RoBERTa + small CNN from scratch (the koclip-mini recipe); micro: smaller still, "
    "trains in seconds; "
    "pretrained: klue/roberta-large + openai/clip-vit-base-patch32 from the Hub (the original KoCLIP recipe)",
    "data": "'scenes' for generated scenes, or a Hugging Face dataset: a Hub name, a saved dataset folder, "
    "or an imagefolder (e.g. COCO with Korean captions)",
    "split": "dataset split to train on",
    "image_column": "dataset column holding images",
    "text_column": "dataset column holding captions (a string, or a list from which one is drawn per step)",
    "scenes": "with --data scenes: how many scenes to generate and train on",
    "image_size": "image side in pixels for --towers mini",
    "steps": "optimizer steps in total",
    "batch_size": "image-caption pairs per step (the contrastive negatives come from the batch)",
    "learning_rate": "peak learning rate (AdamW), reached after the warmup, then cosine decay",
    "warmup_steps": "linear warmup steps",
    "weight_decay": "AdamW weight decay, applied to weight matrices only",
    "text_length": "captions are padded or cut to this many tokens, so the step compiles once",
    "label_weight": "with --data scenes: weight of the loss that teaches which colour goes with which shape "
    "(0 turns it off)",
    "eval_every": "evaluate zero-shot accuracy on held-out scenes every N steps (scenes only)",
    "save_every": "save a checkpoint every N steps",
    "seed": "random seed for data, initialisation and batches",
    "resume": "continue from the checkpoint and optimizer state in --out",
}


# The values each numeric option accepts; anything else fails in the middle of a run, if at all.
TYPES = {
    "scenes": int_at_least(1),
    "image_size": int_at_least(MIN_SIZE),
    "steps": int_at_least(1),
    "batch_size": int_at_least(2),  # a batch of one pair holds no negatives to contrast with
    "learning_rate": float_above(0),
    "warmup_steps": int_at_least(0),
    "weight_decay": float_at_least(0),
    "text_length": int_at_least(3),  # the two special tokens and at least one piece of the caption
    "label_weight": float_at_least(0),
    "eval_every": int_at_least(1),
    "save_every": int_at_least(1),
    "seed": int_at_least(0),
}
SCENE_OPTIONS = ("scenes", "label_weight", "eval_every")  # count only with --data scenes
DATASET_OPTIONS = ("split", "image_column", "text_column")  # count only with a dataset


def config_fields() -> dict[str, tuple[str, Any]]:
    """TrainConfig's fields as {name: (type, default)}."""
    return {field.name: (field.type, field.default) for field in dataclasses.fields(TrainConfig)}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `python -m koclip train`, one per TrainConfig field."""
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.epilog = (
        "The shipped koclip-mini was trained with the defaults; to reproduce it beside the shipped one: "
        "python -m koclip train --out runs/koclip-mini. Data on the Hub needs internet; generated scenes do not."
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the model already in --out (the shipped koclip-mini, for one)"
    )
    for name, (kind, default) in config_fields().items():
        flag = "--" + name.replace("_", "-")
        if kind == "bool":
            parser.add_argument(flag, action="store_true", help=HELPS[name])
        else:
            parser.add_argument(
                flag,
                type=TYPES.get(name, str),
                default=default,
                help=HELPS[name],
                choices=TOWERS if name == "towers" else None,
            )


def main(args: argparse.Namespace) -> int:
    """Runs `python -m koclip train`; returns the exit status."""
    defaults = {name: default for name, (_, default) in config_fields().items()}
    if args.data == "scenes":
        refuse_unused(args, {name: defaults[name] for name in DATASET_OPTIONS}, "--data DATASET")
        # Each batch of swapped pairs (koclip.training.train.SceneData) takes half its images from the
        # scenes // 4 pairs, the rest from the scenes, all distinct.
        if args.batch_size > args.scenes // 2:
            raise InvalidInputError(
                f"--batch-size {args.batch_size} needs --scenes {2 * args.batch_size} or more (got {args.scenes}): "
                "a batch holds distinct scenes and swapped pairs"
            )
    else:
        refuse_unused(args, {name: defaults[name] for name in SCENE_OPTIONS}, "--data scenes")
        check_dataset(args.data, "--data")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out} is a file; give a folder to write the model to")
    if (out / "config.json").is_file() and not args.overwrite:
        raise InvalidInputError(
            f"--out {out} already holds a model; pass --overwrite to replace it, or pick another folder"
        )

    from koclip.training.train import train

    config = TrainConfig(**{name: getattr(args, name) for name in defaults})
    began = time.perf_counter()
    out = train(config)
    print(f"model saved to {out} after {(time.perf_counter() - began) / 60:.1f} minutes")
    return 0
