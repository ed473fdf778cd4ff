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
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from koclip import hub
from koclip.errors import InvalidInputError, KoCLIPError
from koclip.images import ImageInput, open_image
from koclip.models import onnx_backend
from koclip.models.config import PUBLISHED_FORMATS, KoCLIPConfig
from koclip.registry import DEFAULT_TEMPLATE
from koclip.text_batches import (
    BATCH_BUCKETS,
    TextProcessor,
    batches,
    bucket,
    pad_rows,
)
from koclip.tokenizer import load as load_tokenizer
from koclip.transform import FILE as PREPROCESSOR_FILE
from koclip.transform import ImageTransform, checkpoint_image_transform

if TYPE_CHECKING:  # the Flax and PyTorch backends are imported when used: an ONNX export needs neither
    from koclip.models import backends

MAX_LABELS = 100
MAX_TEMPERATURE = 100.0  # CLIP's cap on exp(logit_scale); koclip's own format applies it
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
    so the cut changes no embedding of such a text; it bounds the work of a longer one (a text of a
    million characters costs the tokenizer much time and memory). A longer text is cut, not
    refused, as a text of more tokens than the model reads is."""
    return text[:MAX_TEXT_CHARS]


def softmax(logits: np.ndarray) -> np.ndarray:
    """exp(logits) normalised to sum to 1, computed without overflow."""
    probs = np.exp(logits - logits.max())
    return probs / probs.sum()


def ensemble(prompt_embeddings: np.ndarray, labels: int) -> np.ndarray:
    """One embedding per label from `labels` x T prompt embeddings (label-major rows): each prompt's
    embedding normalised, the T averaged, the mean renormalised (a prompt ensemble)."""
    flat = np.asarray(prompt_embeddings, np.float32)
    flat = flat / np.linalg.norm(flat, axis=-1, keepdims=True)
    mean = flat.reshape(labels, len(flat) // labels, -1).mean(axis=1)
    return mean / np.linalg.norm(mean, axis=-1, keepdims=True)


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
    """A loaded model, made by `load` or `random_model`: its config, the backend that runs it (Flax or the PyTorch
    twin), its tokenizer and its image transform. Texts and images go in; L2-normalised float32 embeddings come out
    as NumPy arrays."""

    def __init__(
        self,
        name: str,
        config,
        backend: backends.Backend,
        tokenizer,
        image_transform,
        directory: Path | None = None,
        info=None,
        model_format: str = "koclip",
    ):
        self.name = name
        self.model_format = model_format  # the checkpoint's `model_type`: its conventions follow from it
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
        """The width of the embeddings (the config's projection_dim)."""
        return self.config.projection_dim

    @property
    def logit_scale(self) -> float:
        """The temperature CLIP multiplies cosine similarities by: the checkpoint's exp(logit_scale)
        as trained for the published formats (the original demo applied it uncapped), and capped at
        100, as CLIP's training caps it, for koclip's own format."""
        scale = float(np.exp(self.backend.logit_scale))
        return scale if self.model_format in PUBLISHED_FORMATS else min(scale, MAX_TEMPERATURE)

    @property
    def max_text_length(self) -> int:
        """The most tokens of a text the model reads, special tokens included; a longer text is cut."""
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
        """L2-normalised float32 embeddings of `texts`, (len(texts), dim); one string counts as one text, and each is
        cut to what the model reads. InvalidInputError if any of them is not text."""
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
        """L2-normalised float32 embeddings, (N, dim), of (N, H, W, 3) float32 pixels made by `preprocess`, run in
        batches."""
        out = []
        for part in batches(len(pixels)):
            chunk = pixels[part]
            rows = bucket(len(chunk), BATCH_BUCKETS)
            out.append(self.backend.encode_image(pad_rows(chunk, rows))[: len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, self.dim), np.float32)

    def encode_image(self, images: Sequence[ImageInput]) -> np.ndarray:
        """L2-normalised float32 embeddings, (len(images), dim), of images: PIL images, paths, bytes or binary files
        (whatever `open_image` takes; it raises InvalidImageError for one it cannot read)."""
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
        return ensemble(self.encode_text([p for group in prompts for p in group]), len(prompts))

    def classify(self, image: ImageInput, labels: Sequence[str], template=DEFAULT_TEMPLATE) -> list[tuple[str, float]]:
        """Zero-shot classification: (label, probability) pairs, most probable first."""
        names = [group[0] for group in self.prompts(labels, None)]
        probs = self.probabilities((self.encode_image([image]) @ self.label_embeddings(names, template).T)[0])
        order = np.argsort(-probs, kind="stable")
        return [(names[i], float(probs[i])) for i in order]

    def save(self, directory: str | os.PathLike, safe_serialization: bool = False) -> Path:
        """Write the model in koclip's own format to `directory`, atomically; `safe_serialization`:
        the weights as model.safetensors (PyTorch's layout) instead of flax_model.msgpack."""
        from koclip import checkpoint

        return checkpoint.save(
            directory,
            self.config,
            self.backend.flax_params(),
            self.text_processor.tokenizer,
            self.image_transform,
            safe_serialization=safe_serialization,
        )

    def push_to_hub(self, repo_id: str, token: str | None = None, private: bool = False) -> str:
        """Save the model (safetensors) and upload it to the Hugging Face Hub as `repo_id` (created
        when missing), through huggingface_hub; returns the commit's URL."""
        import tempfile

        from huggingface_hub import HfApi

        api = HfApi(token=token)
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save(Path(tmp) / "model", safe_serialization=True)
            api.create_repo(repo_id, private=private, exist_ok=True)
            commit = api.upload_folder(
                repo_id=repo_id, folder_path=folder, commit_message=f"Upload {self.name} (koclip format)"
            )
        return commit.commit_url

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
    from koclip.models import backends, convert
    from koclip.models.dual_encoder import init_params
    from koclip.registry import KLUE_TOKENIZER, published_architecture
    from koclip.tokenizer import train_wordpiece

    backends.check(backend, precision)  # before the weights: koclip-base has 425M to initialise
    if backend == "onnx":
        raise InvalidInputError('a random model runs on "flax" or "torch"; backend="onnx" runs an ONNX export')
    config = published_architecture(name)
    params = init_params(config, seed)
    cached = hub.cached(KLUE_TOKENIZER, hub.TOKENIZER_FILES)
    if cached is not None:
        tokenizer = load_tokenizer(cached)
    else:
        tokenizer = train_wordpiece(list(_RANDOM_MODEL_WORDS) * 4, vocab_size=300)
    transform = ImageTransform.training(config.image_size)
    if backends.resolve(backend, backends.weight_count(params), precision) == "flax":
        implementation = backends.FlaxBackend(config, params)
    else:
        state = convert.flax_to_torch(params)
        del params  # one copy of the weights less while PyTorch builds its model
        implementation = backends.TorchBackend(config, state, precision)
    return KoCLIP(
        f"{name} (random weights)", config, implementation, tokenizer, transform, model_format=PUBLISHED_FORMATS[0]
    )


def load(name_or_path: str | os.PathLike, backend: str = "auto", precision: str = "float32") -> KoCLIP:
    """Load a model by short name (`koclip-base`, `koclip-large`, `koclip-mini`), Hub id or folder.

    `backend`: "flax", "torch" (the PyTorch twin: the same weights, embeddings equal to 1e-4), "onnx"
    (a folder written by `python -m koclip export MODEL OUT --format onnx`, run by onnxruntime with
    neither PyTorch nor JAX imported; "auto" picks it for such a folder), or "auto": the PyTorch twin
    for full-size models where PyTorch and transformers are installed (requirements-torch.txt), which
    compiles nothing per input shape, and Flax otherwise.
    `precision`: "float32", or "bfloat16" (PyTorch only), which halves the weights' memory and is
    faster on CPUs with bfloat16 units; its embeddings agree with float32's to a cosine of 0.99 at
    the least, which the tests hold it to.
    """
    if backend == "onnx" and precision != "float32":
        raise InvalidInputError('backend="onnx" runs float32 only: leave precision out')
    folder = Path(name_or_path).expanduser()
    if backend in ("auto", "onnx") and folder.is_dir() and onnx_backend.is_export(folder):
        return _load_onnx(hub.resolve(folder))  # before the other backends' imports: it needs none of them
    if backend != "onnx":
        from koclip.models import backends

        backends.check(backend, precision)
    resolved = hub.resolve(name_or_path)
    if onnx_backend.is_export(resolved.directory):
        if backend not in ("auto", "onnx"):
            raise InvalidInputError(
                f'{resolved.directory} is an ONNX export, which runs on backend="onnx" only; load the model it '
                f"came from for {backend}"
            )
        return _load_onnx(resolved)
    if backend == "onnx":
        raise InvalidInputError(
            f'backend="onnx" runs an ONNX export, and {resolved.directory} is not one: write one with '
            f"python -m koclip export {name_or_path} OUT --format onnx, then koclip.load(OUT)"
        )
    from koclip import checkpoint

    ckpt = checkpoint.read(resolved.directory)
    tokenizer = load_tokenizer(hub.tokenizer_dir(resolved))
    transform = checkpoint_image_transform(ckpt.directory, ckpt.config, ckpt.format)
    backend_impl = backends.create(backend, ckpt, precision)
    return KoCLIP(
        resolved.name, ckpt.config, backend_impl, tokenizer, transform, ckpt.directory, resolved.info, ckpt.format
    )


def _load_onnx(resolved: hub.Resolved) -> KoCLIP:
    """An ONNX export (`python -m koclip export ... --format onnx`), run by onnxruntime alone."""
    directory = resolved.directory
    meta = onnx_backend.read_config(directory)
    try:
        config = KoCLIPConfig.from_dict(meta["config"])
        logit_scale, model_format = float(meta["logit_scale"]), str(meta["model_format"])
    except (KeyError, TypeError, ValueError) as exc:
        raise KoCLIPError(
            f"{directory / onnx_backend.CONFIG_FILE} is incomplete ({type(exc).__name__}: {exc})"
        ) from None
    transform = ImageTransform.read(directory / PREPROCESSOR_FILE)
    backend = onnx_backend.OnnxBackend(directory, logit_scale)
    return KoCLIP(
        resolved.name, config, backend, load_tokenizer(directory), transform, directory, resolved.info, model_format
    )
