"""`python -m koclip train`: contrastive training; every option maps to a `TrainConfig` field."""

from __future__ import annotations

import argparse
import dataclasses
import time

from koclip.train import TrainConfig

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.epilog = (
        "The shipped koclip-mini was trained with: python -m koclip train --out koclip/assets/koclip-mini "
        "(the defaults). Data on the Hub needs internet; generated scenes do not."
    )
    for field in dataclasses.fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        if field.type in (bool, "bool"):
            parser.add_argument(flag, action="store_true", help=HELPS[field.name])
        else:
            kind = {"int": int, "float": float, "str": str}[str(field.type)]
            parser.add_argument(flag, type=kind, default=field.default, help=HELPS[field.name])


def main(args: argparse.Namespace) -> int:
    from koclip.train import train

    config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    began = time.perf_counter()
    out = train(config)
    print(f"model saved to {out} after {(time.perf_counter() - began) / 60:.1f} minutes")
    return 0
