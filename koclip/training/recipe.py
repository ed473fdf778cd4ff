"""What a training run is set to: `TrainConfig`, kept apart from the training code so that the
command line can read its fields without importing JAX."""

from __future__ import annotations

import dataclasses

# Towers trained from scratch: "mini" is koclip-mini; "micro" trains in seconds (tests, quick trials).
SMALL_TOWERS = {
    "mini": dict(text_width=128, text_layers=2, widths=(32, 64, 128), projection=64),
    "micro": dict(text_width=64, text_layers=1, widths=(16, 32, 64), projection=32),
}
PRETRAINED = "pretrained"  # klue/roberta-large + CLIP ViT-B/32 from the Hub: the original KoCLIP recipe
TOWERS = (*SMALL_TOWERS, PRETRAINED)


@dataclasses.dataclass
class TrainConfig:
    """The settings of one training run, one field per `python -m koclip train` option; the defaults train
    koclip-mini. `train` takes one."""

    out: str = "runs/koclip-mini"
    towers: str = "mini"  # a SMALL_TOWERS name (from scratch), or "pretrained": klue/roberta-large + CLIP ViT-B/32
    data: str = "scenes"  # "scenes", or a Hugging Face dataset name or saved-dataset path
    split: str = "train"
    image_column: str = "image"
    text_column: str = "caption"
    scenes: int = 20_000  # how many generated scenes to train on
    image_size: int = 64
    steps: int = 2500
    batch_size: int = 128
    learning_rate: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.05
    text_length: int = 24
    label_weight: float = 0.3  # weight of the (colour, shape) label loss on scenes; 0 turns it off
    eval_every: int = 250
    save_every: int = 500
    seed: int = 0
    resume: bool = False
