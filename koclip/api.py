"""The public model object: NumPy and PIL in, NumPy out, whichever backend runs."""

from __future__ import annotations

import atexit
import dataclasses
import functools
import os
import string
import threading
import weakref
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from koclip import checkpoint, hub
from koclip.bench import scoring
from koclip.errors import InvalidInputError
from koclip.images import ImageInput, open_image
from koclip.models import backends
from koclip.processing import (
    BATCH_BUCKETS,
    TextProcessor,
    batches,
    bucket,
    checkpoint_image_transform,
    pad_rows,
)
from koclip.registry import DEFAULT_TEMPLATE
from koclip.tokenizer import load as load_tokenizer
from koclip.transform import ImageTransform

MAX_LABELS = 100
MAX_TEMPLATES = 100  # OpenAI's ImageNet ensemble has 80
MAX_TEXT_CHARS = 10_000  # the most of a text that is read: for text boxes' max_chars too
_EXITING = threading.Event()
_WARMING: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


@atexit.register
def _stop_warming() -> None:
    """Let warm-ups finish their current shape: a compile cut off by the exit aborts the process."""
    _EXITING.set()
    for thread in list(_WARMING):
        thread.join()


def text_list(values, what: str) -> list[str]:
    """`values` as a list of strings: one string is one text; anything not text is refused."""
    if isinstance(values, str):
        return [values]
    if values is None or not isinstance(values, Iterable):
        raise InvalidInputError(f"{what} must be text or a list of texts, not {type(values).__name__}")
    values = list(values)
    for value in values:
        if not isinstance(value, str):
            raise InvalidInputError(f"{what} must be text; one of them is {type(value).__name__} {str(value)[:40]!r}")
    return values


def readable(text: str) -> str:
    """The part of `text` a model reads: its first MAX_TEXT_CHARS characters. The largest model reads
    512 tokens, each a word or a piece of one, which ordinary text fits in a few thousand characters,
    so the cut changes no embedding of such a text; it bounds the work of a longer one (a million
    characters cost the tokenizer seconds and hundreds of megabytes). A longer text is cut, not
    refused, as a text of more tokens than the model reads is."""
    return text[:MAX_TEXT_CHARS]


def softmax(logits: np.ndarray) -> np.ndarray:
    """exp(logits) normalised to sum to 1, computed without overflow."""
    probs = np.exp(logits - logits.max())
    return probs / probs.sum()


@dataclasses.dataclass(frozen=True)
class Verdict:
    """KoCLIP.verdict of a text."""

    unknown: list[str]  # its words the model cannot read
    answerable: bool  # False: the model reads none of its words, so any ranking would mean nothing


def word_list(words: Sequence[str], limit: int = 8) -> str:
    """Words for a message: each in quotes, at most `limit` of them, then how many more there are."""
    shown = ", ".join(f"“{word}”" for word in words[:limit])
    return shown + (f" and {len(words) - limit} more" if len(words) > limit else "")


def check_template(template) -> str:
    """A template with exactly one `{}`, where the label goes; literal braces are written `{{` `}}`."""
    if not isinstance(template, str):
        raise InvalidInputError(f"a template must be text, not {type(template).__name__}")
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError as exc:
        raise InvalidInputError(
            f"the template {template[:60]!r} is malformed ({exc}); write {{{{ and }}}} for braces"
        ) from None
    if fields != [("", "", None)]:
        raise InvalidInputError(
            f'the template {template[:60]!r} must contain "{{}}" exactly once, where the label goes, and no other '
            "placeholder"
        )
    return template


class KoCLIP:
    def __init__(
        self,
        name: str,
        config,
        backend: backends.Backend,
        tokenizer,
        image_transform,
        directory: Path | None = None,
        info=None,
    ):
        self.name = name
        self.config = config
        self.directory = directory
        self.info = info
        self.backend = backend
        self.text_processor = TextProcessor(tokenizer, config.max_text_length)
        self.image_transform = image_transform

    @functools.cached_property
    def revision(self) -> str:
        """The Hub commit for a cached snapshot; otherwise a digest of the weight files."""
        return "unsaved" if self.directory is None else hub.revision(self.directory)

    @property
    def dim(self) -> int:
        return self.config.projection_dim

    @property
    def logit_scale(self) -> float:
        """The temperature CLIP multiplies cosine similarities by, capped at 100 as in CLIP."""
        return float(min(np.exp(self.backend.logit_scale), 100.0))

    @property
    def max_text_length(self) -> int:
        return self.text_processor.max_length

    def is_truncated(self, text: str) -> bool:
        """Whether `text` is longer than the model reads (it is then cut, not refused)."""
        return len(text) > MAX_TEXT_CHARS or self.text_processor.is_truncated(text)

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` this model's vocabulary cannot read: what it says about them means nothing."""
        if not isinstance(text, str):
            raise InvalidInputError(f"expected text, not {type(text).__name__}")
        return self.text_processor.unknown_words(readable(text))

    @property
    def vocabulary(self) -> str | None:
        """What the model can read about when that is narrower than everyday Korean (the registry's
        words, e.g. koclip-mini's shapes and colours); None otherwise."""
        return self.info.vocabulary if self.info is not None else None

    def can_read(self, text: str) -> bool:
        """Whether at least one word of `text` is in the model's vocabulary."""
        unknown = set(self.unknown_words(text))
        return bool(set(readable(text).split()) - unknown)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        texts = [readable(text) for text in text_list(texts, "texts")]
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        out = []
        for part in batches(len(texts)):
            ids, mask = self.text_processor(texts[part])
            rows = bucket(len(ids), BATCH_BUCKETS)
            out.append(self.backend.encode_text(pad_rows(ids, rows), pad_rows(mask, rows))[: len(ids)])
        return np.concatenate(out)

    def warm_up(self, stop: threading.Event | None = None) -> int:
        """Compile every input shape queries can take, the demos' first ones first; returns how many
        were run. Afterwards no text of any length nor image batch waits for a compile. Safe to run on a
        thread while other threads encode; with the compilation cache a restart loads them from disk.
        `stop`, once set, ends it before the next shape."""
        if not self.backend.compiles:
            return 0
        lengths = self.text_processor.buckets
        first = [
            ("text", 1, lengths[0]),
            ("image", 1, 0),
            ("text", 4, lengths[0]),
            ("text", 16, lengths[0]),
            ("image", 4, 0),
            ("image", 16, 0),
        ]
        rest = [("text", 1, n) for n in lengths] + [("image", BATCH_BUCKETS[-1], 0)]
        rest += [("text", rows, n) for rows in BATCH_BUCKETS[1:] for n in lengths]
        pixel = self.preprocess([Image.new("RGB", (64, 64))])
        shapes = list(dict.fromkeys(first + rest))
        for done, (kind, rows, length) in enumerate(shapes):
            if stop is not None and stop.is_set():
                return done
            if kind == "image":
                self.backend.encode_image(np.repeat(pixel, rows, axis=0))
            else:
                pad = self.text_processor.tokenizer.pad_token_id
                self.backend.encode_text(np.full((rows, length), pad, np.int32), np.ones((rows, length), np.int32))
        return len(shapes)

    def warm_up_in_background(self) -> threading.Thread:
        """`warm_up` on a daemon thread, which stops cleanly when the interpreter exits."""
        thread = threading.Thread(target=self.warm_up, args=(_EXITING,), name=f"warm up {self.name}", daemon=True)
        _WARMING.add(thread)
        thread.start()
        return thread

    def preprocess(self, images: Sequence[ImageInput]) -> np.ndarray:
        """NHWC float32 pixels, ready for `encode_pixels`."""
        return self.image_transform([open_image(im) for im in images])

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        out = []
        for part in batches(len(pixels)):
            chunk = pixels[part]
            rows = bucket(len(chunk), BATCH_BUCKETS)
            out.append(self.backend.encode_image(pad_rows(chunk, rows))[: len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_image(self, images: Sequence[ImageInput]) -> np.ndarray:
        images = list(images)
        if not images:
            return np.zeros((0, self.dim), np.float32)
        return self.encode_pixels(self.preprocess(images))

    def probabilities(self, cosine: np.ndarray) -> np.ndarray:
        """Softmax over cosine similarities at the model's logit scale, as CLIP turns them into odds."""
        return softmax(self.logit_scale * np.asarray(cosine, dtype=np.float32))

    def verdict(self, text: str) -> Verdict:
        """What the model can make of `text`: the words it cannot read, and whether any answer to it
        means something (at least one word read). Pages and the CLI word it each their own way."""
        unknown = self.unknown_words(text)
        return Verdict(unknown, answerable=not unknown or self.can_read(text))

    @staticmethod
    def similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Cosine similarity of every row of `a` with every row of `b` (both already normalised)."""
        return np.atleast_2d(a) @ np.atleast_2d(b).T

    @staticmethod
    def prompts(labels: Sequence[str], template: str | Sequence[str] | None = DEFAULT_TEMPLATE) -> list[list[str]]:
        """The texts encoded for each label: one per template (`None`: the bare label)."""
        labels = [label.strip() for label in text_list(labels, "labels")]
        labels = [label for label in labels if label]
        if not labels:
            raise InvalidInputError("no labels given: enter at least one label")
        if len(labels) > MAX_LABELS:
            raise InvalidInputError(f"{len(labels)} labels given; the limit is {MAX_LABELS}")
        templates = ["{}"] if template is None else text_list(template, "templates")
        if not templates:
            raise InvalidInputError("the list of templates is empty; pass None for the bare labels")
        if len(templates) > MAX_TEMPLATES:
            raise InvalidInputError(f"{len(templates)} templates given; the limit is {MAX_TEMPLATES}")
        templates = [check_template(t) for t in templates]
        return [[t.format(label) for t in templates] for label in labels]

    def label_embeddings(self, labels: Sequence[str], template=DEFAULT_TEMPLATE) -> np.ndarray:
        """One embedding per label: the renormalised mean over the templates (a prompt ensemble)."""
        prompts = self.prompts(labels, template)
        return scoring.ensemble(self.encode_text([p for group in prompts for p in group]), len(prompts))

    def classify(self, image: ImageInput, labels: Sequence[str], template=DEFAULT_TEMPLATE) -> list[tuple[str, float]]:
        """Zero-shot classification: (label, probability) pairs, most probable first."""
        names = [group[0] for group in self.prompts(labels, None)]
        probs = self.probabilities((self.encode_image([image]) @ self.label_embeddings(names, template).T)[0])
        order = np.argsort(-probs, kind="stable")
        return [(names[i], float(probs[i])) for i in order]

    def save(self, directory: str | os.PathLike) -> Path:
        return checkpoint.save(
            directory, self.config, self.backend.flax_params(), self.text_processor.tokenizer, self.image_transform
        )

    def __repr__(self) -> str:
        return f"KoCLIP({self.name!r}, backend={self.backend.name!r}, dim={self.dim})"


# Words for the tokenizer of a random model when klue/roberta-large's is not in the cache.
_RANDOM_MODEL_WORDS = (
    "빨간 파란 노란 초록 자동차가 비 오는 도로 위를 천천히 달리고 있고 사람들이 우산을 쓰고 걸어간다 "
    "고양이 강아지 바다 하늘 산 나무 집 아이 공 원 삼각형 사각형 이것은 이다"
).split()


def random_model(name: str = "koclip-base", backend: str = "auto", seed: int = 0, precision: str = "float32") -> KoCLIP:
    """A model with the architecture of published `name` (koclip-base or koclip-large) and random
    weights, built here with no download: for timing, memory planning and tests.

    It takes the published image transform, and klue/roberta-large's tokenizer when that is in the
    Hugging Face cache, else a small Korean WordPiece (which changes no shape and no cost).
    """
    from koclip.models import convert
    from koclip.models.config import published_architecture
    from koclip.models.dual_encoder import init_params
    from koclip.registry import KLUE_TOKENIZER
    from koclip.tokenizer import train_wordpiece

    backends.check(backend, precision)  # before the weights: koclip-base has 425M to initialise
    config = published_architecture(name)
    params = init_params(config, seed)
    cached = hub.cached(KLUE_TOKENIZER, hub.TOKENIZER_FILES)
    if cached is not None:
        tokenizer = load_tokenizer(cached)
    else:
        tokenizer = train_wordpiece(list(_RANDOM_MODEL_WORDS) * 4, vocab_size=300)
    transform = ImageTransform.clip(config.image_size)
    if backends.resolve(backend, backends.weight_count(params), precision) == "flax":
        implementation = backends.FlaxBackend(config, params)
    else:
        state = convert.flax_to_torch(params)
        del params  # one copy of the weights less while PyTorch builds its model
        implementation = backends.TorchBackend(config, state, precision)
    return KoCLIP(f"{name} (random weights)", config, implementation, tokenizer, transform)


def load(name_or_path: str | os.PathLike, backend: str = "auto", precision: str = "float32") -> KoCLIP:
    """Load a model by short name (`koclip-base`, `koclip-large`, `koclip-mini`), Hub id or folder.

    `backend`: "flax", "torch" (the PyTorch twin: the same weights, embeddings equal to 1e-4), or
    "auto": the PyTorch twin for full-size models where PyTorch and transformers are installed
    (requirements-torch.txt), which compiles nothing per input shape, and Flax otherwise.
    `precision`: "float32", or "bfloat16" (PyTorch only), which halves the weights' memory and is
    faster on CPUs with bfloat16 units; its embeddings agree with float32's to a cosine of 0.9999
    on koclip-base's shapes (0.99 at the least, which the tests hold it to).
    """
    backends.check(backend, precision)
    resolved = hub.resolve(name_or_path)
    ckpt = checkpoint.read(resolved.directory)
    tokenizer = load_tokenizer(hub.tokenizer_dir(resolved))
    transform = checkpoint_image_transform(ckpt.directory, ckpt.config, ckpt.format)
    backend_impl = backends.create(backend, ckpt, precision)
    return KoCLIP(resolved.name, ckpt.config, backend_impl, tokenizer, transform, ckpt.directory, resolved.info)
