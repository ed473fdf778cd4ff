"""Contrastive training of a KoCLIP dual encoder (optax, jitted step, warmup + cosine, learned temperature).

The loss is symmetric InfoNCE with multiple positives: when the data says which captions describe
which images (generated scenes do), a caption like "빨간 것" counts every red image in the batch as
a match instead of pretending all but one are wrong. Without that knowledge it is plain CLIP.

On generated scenes a second loss teaches binding. Contrastive training alone settles on a bag of
attributes: "빨간 원" then scores a red square beside a blue circle as high as a red circle, on
both towers at once, and neither tower can leave that state alone. So each (colour, shape) pair
gets a fixed direction in the embedding space, and both towers learn to say along those
directions which pairs an image holds and which pairs a caption names.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import serialization
from tqdm.auto import tqdm

from koclip import checkpoint
from koclip.api import KoCLIP
from koclip.data import scenes
from koclip.data.datasets import open_dataset
from koclip.errors import KoCLIPError
from koclip.models.backends import FlaxBackend
from koclip.models.config import (
    POSITIONS_FROM_ZERO,
    ClipVisionConfig,
    ConvTowerConfig,
    KoCLIPConfig,
    RobertaConfig,
)
from koclip.models.dual_encoder import DualEncoder, init_params
from koclip.registry import CLIP_VISION, KLUE_TOKENIZER
from koclip.text_batches import pad_token_ids
from koclip.tokenizer import load as load_tokenizer
from koclip.tokenizer import train_wordpiece
from koclip.training import evaluate
from koclip.training.recipe import PRETRAINED, SMALL_TOWERS, TrainConfig
from koclip.transform import ImageTransform

TRAIN_STATE = "train_state.msgpack"
# The training curve, saved with the model: one JSON object per line, every LOG_EVERY steps and at
# each evaluation: the step, the mean of each loss term since the previous line, the seconds spent
# training so far and, on scenes, zero-shot accuracy. Loading a model reads no such file.
TRAINING_LOG = "training_log.jsonl"
LOG_EVERY = 50
MAX_LOGIT_SCALE = math.log(100.0)


# Every (colour, shape) pair, and the sharpness and threshold of its presence read along its direction.
LABEL_PAIRS = {pair: i for i, pair in enumerate(scenes.PAIRS)}
LABEL_SHARPNESS, LABEL_THRESHOLD = 20.0, 0.3


def label_directions(dim: int, seed: int) -> np.ndarray:
    """(pairs, dim) fixed random unit vectors, one per (colour, shape) pair; nearly orthogonal."""
    directions = np.random.default_rng(seed).standard_normal((len(LABEL_PAIRS), dim)).astype(np.float32)
    return directions / np.linalg.norm(directions, axis=1, keepdims=True)


def pair_labels(pairs) -> np.ndarray:
    """A multi-hot row over LABEL_PAIRS."""
    row = np.zeros(len(LABEL_PAIRS), np.float32)
    row[[LABEL_PAIRS[p] for p in pairs]] = 1.0
    return row


def label_loss(embeddings: jnp.ndarray, labels: jnp.ndarray, directions: jnp.ndarray) -> jnp.ndarray:
    """Binary cross-entropy of each pair's presence; rows without any label are left out."""
    logits = LABEL_SHARPNESS * (embeddings @ directions.T - LABEL_THRESHOLD)
    per_row = optax.sigmoid_binary_cross_entropy(logits, labels).sum(axis=1)
    labelled = labels.any(axis=1)
    return (per_row * labelled).sum() / jnp.maximum(labelled.sum(), 1)


def contrastive_loss(text: jnp.ndarray, image: jnp.ndarray, logit_scale: jnp.ndarray, positives: jnp.ndarray):
    """Symmetric InfoNCE; `positives[i, j]` says caption i describes image j (the diagonal always does)."""
    logits = jnp.exp(jnp.minimum(logit_scale, MAX_LOGIT_SCALE)) * text @ image.T
    targets = positives / positives.sum(axis=1, keepdims=True)
    targets_t = positives.T / positives.T.sum(axis=1, keepdims=True)
    t2i = -(targets * jax.nn.log_softmax(logits, axis=1)).sum(axis=1).mean()
    i2t = -(targets_t * jax.nn.log_softmax(logits.T, axis=1)).sum(axis=1).mean()
    return (t2i + i2t) / 2


def small_config(towers: str, vocab_size: int, image_size: int, text_length: int) -> KoCLIPConfig:
    """The KoCLIPConfig of SMALL_TOWERS[towers], trained from scratch: a RoBERTa text tower for `vocab_size` tokens
    and texts of `text_length` tokens, koclip's CNN for `image_size`-pixel images, and mean text pooling."""
    size = SMALL_TOWERS[towers]
    width = size["text_width"]
    text = RobertaConfig(
        vocab_size=vocab_size,
        hidden_size=width,
        num_hidden_layers=size["text_layers"],
        num_attention_heads=4,
        intermediate_size=2 * width,
        max_position_embeddings=text_length + 2,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        type_vocab_size=1,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    top = size["widths"][-1]
    vision = ConvTowerConfig(
        image_size=image_size, stem_patch=4, widths=size["widths"], hidden_size=top, local_size=top
    )
    return KoCLIPConfig(text, vision, projection_dim=size["projection"], text_pooling="mean")


# ----------------------------------------------------------------------------------------- data


class SceneData:
    """A fixed pool of generated scenes, preprocessed once; each draw picks one caption per image.

    Batches cycle through four kinds. Two are drawn from scenes whose objects all share a few
    colours, or a few shapes: full of near misses (a red circle beside a white square, when the
    caption says "빨간 사각형"). One is made of swapped pairs (`scenes.swapped_pair`), where the
    only difference is which colour goes with which shape. One is drawn from all scenes. The
    first three teach the model to bind colour to shape rather than notice both somewhere.
    """

    GROUPS = (("color", scenes.COLORS, 3), ("shape", scenes.SHAPES, 2))
    PAIRS, MIXED = len(GROUPS), len(GROUPS) + 1  # the other two kinds of batch, by step % 4

    def __init__(self, n: int, seed: int, size: int, transform):
        pool = [scenes.scene(seed, i, size) for i in tqdm(range(n), desc="generating scenes", unit="scene")]
        self.n = n
        for i in tqdm(range(max(n // 4, 1)), desc="generating swapped pairs", unit="pair"):
            pool.extend(scenes.swapped_pair(seed, i, size))
        self.objects = [s.objects for s in pool]
        self.captions = [list(zip(s.captions_ko, s.queries)) for s in pool]
        self.image_labels = np.stack([pair_labels({(o["color"], o["shape"]) for o in objs}) for objs in self.objects])
        self.pixels = np.concatenate(
            [transform([s.image for s in pool[i : i + 512]]) for i in range(0, len(pool), 512)]
        )

    def texts(self) -> Iterator[str]:
        """Every caption of every scene in the pool, for training the tokenizer."""
        return (text for options in self.captions for text, _ in options)

    def _index(self, rng: np.random.Generator, size: int, step: int) -> np.ndarray:
        kind = step % 4
        if kind == self.PAIRS:
            pairs = rng.choice((len(self.pixels) - self.n) // 2, size // 2, replace=False)
            index = (self.n + 2 * pairs[:, None] + np.arange(2)).ravel()
            return np.concatenate([index, rng.choice(self.n, size - len(index), replace=False)])
        candidates = np.arange(self.n)
        if kind != self.MIXED:
            key, values, k = self.GROUPS[kind]
            chosen = set(rng.choice(values, k, replace=False).tolist())
            grouped = np.array([i for i, objs in enumerate(self.objects[: self.n]) if {o[key] for o in objs} <= chosen])
            candidates = grouped if len(grouped) >= size else candidates
        return rng.choice(candidates, size, replace=False)

    def batch(self, rng: np.random.Generator, size: int, step: int):
        """Captions, pixels, positives[caption, image], and the pair labels of images and captions."""
        index = self._index(rng, size, step)
        picked = [self.captions[i][rng.integers(len(self.captions[i]))] for i in index]
        positives = np.array([[scenes.matches(q, self.objects[j]) for j in index] for _, q in picked])
        # Only captions that name a colour together with a shape say anything about binding.
        text_labels = np.stack(
            [pair_labels({(q.color, q.shape) for q in query.specs if q.color and q.shape}) for _, query in picked]
        )
        return [t for t, _ in picked], self.pixels[index], positives, (self.image_labels[index], text_labels)


class DatasetData:
    """Any Hugging Face dataset with an image column and a caption column (a string or a list)."""

    def __init__(self, name: str, split: str, image_column: str, text_column: str, transform):
        self.ds = open_dataset(name, split, (image_column, text_column))
        self.image_column, self.text_column, self.transform = image_column, text_column, transform

    def texts(self) -> Iterator[str]:
        """Every caption of the text column (each of a list), for training the tokenizer."""
        for value in self.ds[self.text_column]:
            yield from ([value] if isinstance(value, str) else value)

    def batch(self, rng: np.random.Generator, size: int, step: int):
        """`size` rows at random: their captions (one of a list, at random), float32 NHWC pixels, a diagonal
        positives[caption, image] (each caption describes its own image) and no labels."""
        rows = self.ds[rng.choice(len(self.ds), size, replace=False).tolist()]
        texts = [t if isinstance(t, str) else t[rng.integers(len(t))] for t in rows[self.text_column]]
        images = [im.convert("RGB") for im in rows[self.image_column]]
        return texts, self.transform(images), np.eye(size, dtype=bool), None


# ---------------------------------------------------------------------------------------- towers


def pretrained_towers(image_size: int):
    """klue/roberta-large and openai/clip-vit-base-patch32 from the Hub: the original KoCLIP recipe."""
    try:
        from transformers import FlaxCLIPVisionModel, FlaxRobertaModel
    except ImportError:
        raise KoCLIPError(
            "--towers pretrained reads klue/roberta-large and CLIP with transformers, which is not "
            "installed: pip install -r requirements-torch.txt"
        ) from None

    from koclip import hub

    text_dir = hub.fetch(
        KLUE_TOKENIZER, ["config.json", "flax_model.msgpack", "pytorch_model.bin", *hub.TOKENIZER_FILES]
    )
    vision_dir = hub.fetch(CLIP_VISION, ["config.json", "flax_model.msgpack", "pytorch_model.bin"])
    text = FlaxRobertaModel.from_pretrained(text_dir, add_pooling_layer=True)
    vision = FlaxCLIPVisionModel.from_pretrained(vision_dir)
    tokenizer = load_tokenizer(text_dir)
    # The original recipe's conventions: text positions from 0 and the CLIP transform (see config.py).
    config = KoCLIPConfig(
        RobertaConfig.from_dict(text.config.to_dict()),
        ClipVisionConfig.from_dict(vision.config.to_dict()),
        projection_dim=512,
        text_positions=POSITIONS_FROM_ZERO,
    )
    params = init_params(config)
    params = {**params, "text_model": text.params, "vision_model": vision.params}
    return config, params, tokenizer


# ------------------------------------------------------------------------------------- training


def _optimizer(cfg: TrainConfig):
    warmup = min(cfg.warmup_steps, cfg.steps // 5)  # short runs (tests) still get a decay phase
    schedule = optax.warmup_cosine_decay_schedule(0.0, cfg.learning_rate, warmup, cfg.steps, cfg.learning_rate * 0.02)
    # Decay matrices only: norms, biases and the temperature keep their scale.
    decay_mask = lambda params: jax.tree_util.tree_map(lambda p: p.ndim >= 2, params)  # noqa: E731
    return optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=cfg.weight_decay, mask=decay_mask)
    ), schedule


def _save(
    cfg: TrainConfig,
    config: KoCLIPConfig,
    params,
    opt_state,
    tokenizer,
    transform,
    step: int,
    rng_state: dict,
    log: list[str],
) -> None:
    """A loadable model with its training log; until the last step, also the optimizer state that
    `--resume` needs. The log is saved with the weights, so it always ends at the saved step."""
    extra = {TRAINING_LOG: "".join(line + "\n" for line in log).encode()}
    if step < cfg.steps:
        extra[TRAIN_STATE] = serialization.msgpack_serialize(
            {
                "opt_state": serialization.to_state_dict(jax.device_get(opt_state)),
                "step": step,
                "rng": json.dumps(rng_state),
            }
        )
    checkpoint.save(cfg.out, config, jax.device_get(params), tokenizer, transform, extra_files=extra)


def _pad_text(tokenizer, texts: list[str], length: int, cache: dict) -> tuple[np.ndarray, np.ndarray]:
    """Fixed-length token ids (the step then compiles once), tokenising each distinct caption once."""
    for text in texts:
        if text not in cache:
            cache[text] = tokenizer.encode([text], length)[0]
    return pad_token_ids([cache[text] for text in texts], length, tokenizer.pad_token_id)


def _read_log(out: Path) -> tuple[list[str], float]:
    """The lines of a saved training log, and the training seconds its last line reports."""
    path = out / TRAINING_LOG
    if not path.is_file():
        return [], 0.0
    lines = path.read_text(encoding="utf-8").splitlines()
    try:
        return lines, float(json.loads(lines[-1])["seconds"]) if lines else 0.0
    except (ValueError, KeyError, TypeError) as exc:
        raise KoCLIPError(f"{path} is damaged ({type(exc).__name__}: {exc}); delete it to resume without it") from None


def train(cfg: TrainConfig) -> Path:
    """Train the model `cfg` describes and save it to cfg.out, with its training log and state every save_every steps
    (from which cfg.resume goes on); returns cfg.out. KoCLIPError for unknown towers."""
    out = Path(cfg.out)
    rng = np.random.default_rng(cfg.seed)
    resuming = cfg.resume and (out / TRAIN_STATE).is_file()
    if resuming:
        ckpt = checkpoint.read(out)
        config, params, tokenizer = ckpt.config, ckpt.flax_params, load_tokenizer(out)
    elif cfg.towers == PRETRAINED:
        config, params, tokenizer = pretrained_towers(cfg.image_size)
    elif cfg.towers in SMALL_TOWERS:
        config = params = tokenizer = None  # built once the tokenizer has seen the captions
    else:
        raise KoCLIPError(f"unknown towers {cfg.towers!r}: choose {', '.join(SMALL_TOWERS)} or pretrained")

    transform = (ImageTransform.clip if cfg.towers == PRETRAINED else ImageTransform.vit)(cfg.image_size)
    data = (
        SceneData(cfg.scenes, cfg.seed, cfg.image_size, transform)
        if cfg.data == "scenes"
        else DatasetData(cfg.data, cfg.split, cfg.image_column, cfg.text_column, transform)
    )
    if config is None:
        tokenizer = train_wordpiece(data.texts(), vocab_size=1000)
        config = small_config(cfg.towers, len(tokenizer), cfg.image_size, cfg.text_length)
        params = init_params(config, cfg.seed)

    optimizer, schedule = _optimizer(cfg)
    opt_state = optimizer.init(params)
    start = 0
    if resuming:
        saved = serialization.msgpack_restore((out / TRAIN_STATE).read_bytes())
        opt_state = serialization.from_state_dict(opt_state, saved["opt_state"])
        start = int(saved["step"])
        rng.bit_generator.state = json.loads(saved["rng"])

    module = DualEncoder(config)
    deterministic = config.text_config.hidden_dropout_prob == 0
    directions = label_directions(config.projection_dim, cfg.seed)

    @jax.jit
    def step_fn(params, opt_state, ids, mask, pixels, positives, labels, key):
        def loss_fn(p):
            text, image, scale = module.apply(
                {"params": p}, ids, mask, pixels, deterministic=deterministic, rngs={"dropout": key}
            )
            terms = {"contrastive": contrastive_loss(text, image, scale, positives)}
            loss = terms["contrastive"]
            if labels is not None and cfg.label_weight:
                image_labels, text_labels = labels
                terms["label"] = (
                    label_loss(image, image_labels, directions) + label_loss(text, text_labels, directions)
                ) / 2
                loss += cfg.label_weight * terms["label"]
            return loss, terms

        (loss, terms), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, {"loss": loss, **terms}

    probe = KoCLIP("training", config, FlaxBackend(config, params), tokenizer, transform)
    eval_singles = evaluate.single_objects(200, cfg.seed + 7_919, cfg.image_size) if cfg.data == "scenes" else None
    cache: dict = {}
    log, seconds_before = _read_log(out) if resuming else ([], 0.0)
    window = []  # the loss terms of every step since the last log line, left on the device until logged
    key = jax.random.PRNGKey(cfg.seed)
    bar = tqdm(range(start, cfg.steps), initial=start, total=cfg.steps, desc="training", unit="step")
    began = time.perf_counter()
    for step in bar:
        texts, pixels, positives, labels = data.batch(rng, cfg.batch_size, step)
        ids, mask = _pad_text(tokenizer, texts, cfg.text_length, cache)
        params, opt_state, terms = step_fn(
            params, opt_state, ids, mask, pixels, positives.astype(np.float32), labels, jax.random.fold_in(key, step)
        )
        window.append(terms)
        done = step + 1
        if done % 10 == 0 or done == cfg.steps:
            rate = (done - start) * cfg.batch_size / (time.perf_counter() - began)
            bar.set_postfix(loss=f"{float(terms['loss']):.3f}", img_s=f"{rate:.0f}", lr=f"{float(schedule(step)):.1e}")
        evaluating = eval_singles is not None and (done % cfg.eval_every == 0 or done == cfg.steps)
        if evaluating or done % LOG_EVERY == 0 or done == cfg.steps:
            window = jax.device_get(window)
            record = {
                "step": done,
                **{name: round(float(np.mean([w[name] for w in window])), 5) for name in window[0]},
                "seconds": round(seconds_before + time.perf_counter() - began, 1),
            }
            window = []
            if evaluating:
                probe.backend.params = params
                record.update(evaluate.zero_shot_on_scenes(probe, eval_singles))
                bar.write(json.dumps(record, ensure_ascii=False))
            log.append(json.dumps(record, ensure_ascii=False))
        if done % cfg.save_every == 0 or done == cfg.steps:
            _save(cfg, config, params, opt_state, tokenizer, transform, done, rng.bit_generator.state, log)
    bar.close()
    return out
