"""The text tokenizer: a fast (Rust) `tokenizers` tokenizer, read from and saved as transformers'
files (tokenizer.json, tokenizer_config.json, special_tokens_map.json; or a BERT vocab.txt), and
a small Korean WordPiece trainer laid out like klue/roberta-large's.

Korean WordPiece vocabularies break if lowercased or stripped of accents (either splits Hangul
syllables into jamo), so a BERT normaliser is always loaded with both off, as transformers does
when given `do_lower_case=False, strip_accents=False`.

klue's special tokens take ids [CLS]=0, [PAD]=1, [SEP]=2, [UNK]=3, [MASK]=4, so a RoBERTa config
with `pad_token_id=1` fits both klue/roberta-large and koclip's own tokenizers.

A text holding a lone surrogate (what Python leaves of bytes that are not UTF-8, in a command line
or a file name) is not valid Unicode and cannot be tokenized: it is refused with `InvalidInputError`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from tokenizers import Tokenizer as RustTokenizer
from tokenizers import (
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

from koclip.errors import InvalidInputError, ModelUnavailableError

SPECIAL_TOKENS = ["[CLS]", "[PAD]", "[SEP]", "[UNK]", "[MASK]"]
ROLES = ("cls_token", "pad_token", "sep_token", "unk_token", "mask_token")


def check_unicode(text: str) -> str:
    """`text`, if it is valid Unicode; refused with a message saying where it is not."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"the text {text[:40]!r} is not valid Unicode: character {exc.start + 1} is a lone surrogate "
            f"({text[exc.start]!r}), which is what decoding bytes that are not UTF-8 leaves; give the text as UTF-8"
        ) from None
    return text


class Tokenizer:
    """Encoding with special tokens and truncation, without changing shared state: one instance
    serves several threads."""

    def __init__(self, rust: RustTokenizer, special: dict[str, str]):
        self.rust = rust
        self.special = special  # role ("pad_token", ...) -> token
        self.pad_token_id = self._id("pad_token")
        self.unk_token_id = self._id("unk_token")

    def _id(self, role: str) -> int:
        token = self.special.get(role)
        token_id = self.rust.token_to_id(token) if token else None
        if token_id is None:
            raise ModelUnavailableError(
                f"the tokenizer has no {role.replace('_', ' ')} ({token!r} is not in its vocabulary)"
            )
        return token_id

    def __len__(self) -> int:
        return self.rust.get_vocab_size(with_added_tokens=True)

    def encode(self, texts: Sequence[str], max_length: int | None = None) -> list[list[int]]:
        """Token ids with the special tokens; at most `max_length`, cutting the text, not the special tokens."""
        texts = [check_unicode(text) for text in texts]
        if max_length is None:
            return [e.ids for e in self.rust.encode_batch(texts, add_special_tokens=True)]
        room = max_length - self.rust.num_special_tokens_to_add(False)
        out = []
        for encoding in self.rust.encode_batch(texts, add_special_tokens=False):
            encoding.truncate(max(room, 0))
            out.append(self.rust.post_process(encoding).ids)
        return out

    def pieces(self, text: str, max_length: int | None = None) -> list[tuple[int, tuple[int, int]]]:
        """(id, character span) of each token of `text`, without special tokens."""
        encoding = self.rust.encode(check_unicode(text), add_special_tokens=False)
        if max_length is not None:
            encoding.truncate(max_length)
        return list(zip(encoding.ids, encoding.offsets))

    def tokenize(self, text: str) -> list[str]:
        """The tokens of `text` as strings, without special tokens; InvalidInputError when `text` is not valid
        Unicode."""
        return self.rust.encode(check_unicode(text), add_special_tokens=False).tokens

    def save(self, directory: str | Path) -> None:
        """Write the files transformers' `AutoTokenizer` reads back as the same tokenizer."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.rust.save(str(directory / "tokenizer.json"))
        config = {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "do_lower_case": False,
            "strip_accents": False,
            "clean_up_tokenization_spaces": False,
            **self.special,
        }
        (directory / "tokenizer_config.json").write_text(
            json.dumps(config, indent=2, ensure_ascii=False), encoding="utf-8"
        )
        (directory / "special_tokens_map.json").write_text(
            json.dumps(self.special, indent=2, ensure_ascii=False), encoding="utf-8"
        )


def _token_name(value) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _special_tokens(directory: Path) -> dict[str, str]:
    special: dict[str, str] = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the config, read last, wins
        path = directory / name
        if path.is_file():
            saved = json.loads(path.read_text(encoding="utf-8"))
            special |= {role: _token_name(saved[role]) for role in ROLES if _token_name(saved.get(role))}
    return special


def _without_case_folding(normalizer: dict | None) -> dict | None:
    if normalizer is None:
        return None
    if normalizer.get("type") == "BertNormalizer":
        return {**normalizer, "lowercase": False, "strip_accents": False}
    if normalizer.get("type") == "Sequence":
        return {**normalizer, "normalizers": [_without_case_folding(n) for n in normalizer["normalizers"]]}
    return normalizer


def _bert_wordpiece(vocab: dict[str, int] | str, special: dict[str, str]) -> RustTokenizer:
    """A BERT WordPiece tokenizer (no lowercasing), as transformers builds one from a vocab.txt."""
    cls, sep, unk = special["cls_token"], special["sep_token"], special["unk_token"]
    model = (
        models.WordPiece.from_file(vocab, unk_token=unk)
        if isinstance(vocab, str)
        else models.WordPiece(vocab, unk_token=unk)
    )
    rust = RustTokenizer(model)
    rust.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=False, lowercase=False
    )
    rust.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    rust.post_processor = processors.TemplateProcessing(
        single=f"{cls} $A {sep}",
        pair=f"{cls} $A {sep} $B:1 {sep}:1",
        special_tokens=[(cls, rust.token_to_id(cls)), (sep, rust.token_to_id(sep))],
    )
    rust.decoder = decoders.WordPiece()
    rust.add_special_tokens([special[role] for role in ROLES if role in special])
    return rust


def load(directory: str | Path) -> Tokenizer:
    """The tokenizer in `directory`: its tokenizer.json, else a BERT WordPiece built from its vocab.txt."""
    directory = Path(directory)
    try:
        special = {
            "cls_token": "[CLS]",
            "pad_token": "[PAD]",
            "sep_token": "[SEP]",
            "unk_token": "[UNK]",
            "mask_token": "[MASK]",
        } | _special_tokens(directory)
        if (directory / "tokenizer.json").is_file():
            saved = json.loads((directory / "tokenizer.json").read_text(encoding="utf-8"))
            saved["normalizer"] = _without_case_folding(saved.get("normalizer"))
            saved["truncation"] = saved["padding"] = None  # a file may keep its last use's; each call sets its own
            rust = RustTokenizer.from_str(json.dumps(saved))
        elif (directory / "vocab.txt").is_file():
            rust = _bert_wordpiece(str(directory / "vocab.txt"), special)
        else:
            raise ModelUnavailableError(f"{directory} has no tokenizer.json or vocab.txt")
    except ModelUnavailableError:
        raise
    except Exception as exc:  # tokenizers reports a malformed file with a bare Exception
        raise ModelUnavailableError(
            f"the tokenizer in {directory} is unreadable ({type(exc).__name__}: {exc})"
        ) from None
    return Tokenizer(rust, special)


def train_wordpiece(texts: Iterable[str], vocab_size: int = 1000) -> Tokenizer:
    """A WordPiece tokenizer of at most `vocab_size` tokens learned from `texts`, with BERT's normalisation and
    special tokens; the same texts always give the same ids."""
    tok = RustTokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=False)
    )
    # The trainer numbers tokens of equal frequency in no fixed order; renumber them so that the
    # same captions always give the same ids, and so the same model.
    learned = sorted(set(tok.get_vocab()) - set(SPECIAL_TOKENS))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + learned)}
    special = dict(zip(ROLES, SPECIAL_TOKENS))
    return Tokenizer(_bert_wordpiece(vocab, special), special)
