"""Text batches: token ids and masks padded to a few fixed shapes.

Flax compiles once per input shape. Texts are padded to a length bucket and batches to a size
bucket, so a stream of queries of any length compiles at most once per (length, batch) bucket.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import numpy as np

from koclip.tokenizer import Tokenizer

LENGTH_BUCKETS = (16, 32, 64, 128, 256, 512)
BATCH_BUCKETS = (1, 4, 16, 64)


def bucket(n: int, buckets: Sequence[int]) -> int:
    """The smallest bucket holding n; the largest bucket when none does."""
    return next((b for b in buckets if b >= n), buckets[-1])


def batches(n: int, max_batch: int = BATCH_BUCKETS[-1]) -> Iterator[slice]:
    """Slices that cover range(n) in order, each at most `max_batch` long."""
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


class TextProcessor:
    """Tokenizing with padding to buckets; safe to call from several threads at once (the
    tokenizer's calls change no shared state)."""

    def __init__(self, tokenizer: Tokenizer, max_length: int):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.buckets = tuple(b for b in LENGTH_BUCKETS if b < max_length) + (max_length,)

    def token_count(self, text: str) -> int:
        """How many tokens `text` encodes to, special tokens included, before any cut."""
        return len(self.tokenizer.encode([text])[0])

    def is_truncated(self, text: str) -> bool:
        """Whether `text` has more tokens than the model reads (`max_length`)."""
        return self.token_count(text) > self.max_length

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` (split at spaces) that hold a piece the vocabulary lacks ([UNK])."""
        unk = self.tokenizer.unk_token_id
        spans = [span for token, span in self.tokenizer.pieces(text, self.max_length) if token == unk]
        words = [(m.start(), m.end(), m.group()) for m in re.finditer(r"\S+", text)]
        found = [word for start, end, word in words if any(start <= a < end for a, _ in spans)]
        return list(dict.fromkeys(found))

    def __call__(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, padded to the length bucket of the longest text."""
        encoded = self.tokenizer.encode(texts, self.max_length)
        return pad_token_ids(
            encoded, bucket(max(len(ids) for ids in encoded), self.buckets), self.tokenizer.pad_token_id
        )
