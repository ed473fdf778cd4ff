"""Text and image preprocessing, with padding to a few fixed shapes.

Flax compiles once per input shape. Texts are padded to a length bucket and batches to a size
bucket, so a stream of queries of any length compiles at most once per (length, batch) bucket.
"""

from __future__ import annotations

import dataclasses
import json
import re
import threading
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image
from transformers import AutoTokenizer, CLIPImageProcessor, PreTrainedTokenizerBase, ViTImageProcessor

from koclip.config import PUBLISHED_FORMATS, KoCLIPConfig
from koclip.errors import KoCLIPError

LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512)
BATCH_BUCKETS = (1, 4, 16, 64)


def bucket(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding n; the largest bucket when none does."""
    return next((b for b in buckets if b >= n), buckets[-1])


def batches(n: int, max_batch: int = BATCH_BUCKETS[-1]) -> Iterator[slice]:
    for start in range(0, n, max_batch):
        yield slice(start, min(start + max_batch, n))


def pad_rows(array: np.ndarray, rows: int) -> np.ndarray:
    """Pad the first axis to `rows` by repeating the last row (a valid input, unlike zeros)."""
    if len(array) == rows:
        return array
    return np.concatenate([array, np.repeat(array[-1:], rows - len(array), axis=0)])


def pad_token_ids(sequences: Sequence[Sequence[int]], length: int, pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Token ids padded to `length` (each already at most that long), and the attention mask."""
    input_ids = np.full((len(sequences), length), pad_id, np.int32)
    attention_mask = np.zeros((len(sequences), length), np.int32)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = ids
        attention_mask[row, : len(ids)] = 1
    return input_ids, attention_mask


def load_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    # Korean WordPiece vocabularies break if lowercased: it splits Hangul into jamo.
    return AutoTokenizer.from_pretrained(str(directory), do_lower_case=False, strip_accents=False)


class TextProcessor:
    """Tokenizing with padding to buckets; safe to call from several threads at once.

    A fast tokenizer keeps its truncation settings on the shared Rust object and changes them per
    call, so two threads tokenizing at once fail with "Already borrowed": calls take a lock.
    """

    def __init__(self, tokenizer: PreTrainedTokenizerBase, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.buckets = tuple(b for b in LENGTH_BUCKETS if b < max_length) + (max_length,)
        self._lock = threading.Lock()

    def token_count(self, text: str) -> int:
        with self._lock:
            return len(self.tokenizer(text, add_special_tokens=True)["input_ids"])

    def is_truncated(self, text: str) -> bool:
        return self.token_count(text) > self.max_length

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` (split at spaces) that hold a piece the vocabulary lacks ([UNK])."""
        unk = self.tokenizer.unk_token_id
        with self._lock:
            encoded = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True,
                                     truncation=True, max_length=self.max_length)
        spans = [span for token, span in zip(encoded["input_ids"], encoded["offset_mapping"]) if token == unk]
        words = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
        found = [word for start, end, word in words if any(start <= a < end for a, _ in spans)]
        return list(dict.fromkeys(found))

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, padded to the length bucket of the longest text."""
        with self._lock:
            encoded = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        return pad_token_ids(encoded, bucket(max(len(ids) for ids in encoded), self.buckets), self.tokenizer.pad_token_id)


PREPROCESSOR_FILE = "preprocessor_config.json"
_PROCESSOR_CLASSES = {cls.__name__: cls for cls in (CLIPImageProcessor, ViTImageProcessor)}


@dataclasses.dataclass(frozen=True)
class ImageProcessorSpec:
    """`clip`: resize the short side (bicubic), centre-crop, CLIP mean/std: the transform KoCLIP was
    trained with, for both towers. `vit`: resize to a square, mean/std 0.5."""

    kind: str
    size: int


def image_processor_for(spec: ImageProcessorSpec):
    if spec.kind == "clip":
        return CLIPImageProcessor(
            size={"shortest_edge": spec.size},
            crop_size={"height": spec.size, "width": spec.size},
            resample=Image.Resampling.BICUBIC,
        )
    return ViTImageProcessor(size={"height": spec.size, "width": spec.size})


def _saved_image_processor(path: Path):
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
        # Older files name a feature extractor; today's class of the same kind reads them.
        legacy = str(saved.get("feature_extractor_type", "")).replace("FeatureExtractor", "ImageProcessor")
        cls = _PROCESSOR_CLASSES[saved.get("image_processor_type") or legacy]
        return cls.from_dict(saved)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, TypeError, ValueError) as exc:
        raise KoCLIPError(f"{path} is unreadable ({type(exc).__name__}: {exc})") from None
    except KeyError:
        raise KoCLIPError(
            f"{path} names an image processor koclip does not use; it reads {', '.join(_PROCESSOR_CLASSES)}"
        ) from None


def checkpoint_image_processor(directory: Path, config: KoCLIPConfig, model_format: str):
    """The image preprocessing that goes with a checkpoint.

    The published formats always get the transform they were trained with (`clip`, at the vision
    tower's size), whatever processor their folder holds. Other checkpoints get the folder's
    preprocessor_config.json when it has one, else a transform that suits their vision tower.
    """
    if model_format in PUBLISHED_FORMATS:
        return image_processor_for(ImageProcessorSpec("clip", config.image_size))
    if (directory / PREPROCESSOR_FILE).is_file():
        return _saved_image_processor(directory / PREPROCESSOR_FILE)
    return image_processor_for(ImageProcessorSpec("clip" if config.vision_type == "clip" else "vit", config.image_size))


def pixels_nhwc(processor, images: Sequence) -> np.ndarray:
    """Preprocess RGB PIL images into a float32 NHWC batch."""
    # Channels last, said outright: left to guess, the processor reads an image 3 pixels high as channels-first.
    nchw = processor(images=list(images), return_tensors="np", input_data_format="channels_last")["pixel_values"]
    return np.ascontiguousarray(nchw.transpose(0, 2, 3, 1), dtype=np.float32)
