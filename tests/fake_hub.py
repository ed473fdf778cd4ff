"""A Hugging Face cache laid out as a Space finds it, with tiny random checkpoints under the real ids.

`koclip/koclip-base` and `koclip/koclip-large` hold exactly the published files (config.json and
flax_model.msgpack, as `FlaxHybridCLIP.save_pretrained` wrote them) with 224 px towers, so the real
preprocessing runs; `klue/roberta-large` holds a small WordPiece tokenizer in klue's file layout.
Point HF_HUB_CACHE at the folder and set HF_HUB_OFFLINE=1, and koclip loads them by name.

    python tests/fake_hub.py DIR     # lay the cache in DIR (then: HF_HUB_CACHE=DIR HF_HUB_OFFLINE=1 ...)
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

from tokenizers import BertWordPieceTokenizer, processors

sys.path[:0] = [str(Path(__file__).parent), str(Path(__file__).parent.parent)]
import tiny  # noqa: E402

# The towers each published model pairs with klue/roberta-large, and the seeds of their random weights.
MODELS = {"koclip/koclip-base": ("clip", 11), "koclip/koclip-large": ("vit", 12)}
TOKENIZER_REPO = "klue/roberta-large"
GITATTRIBUTES = b"*.msgpack filter=lfs diff=lfs merge=lfs -text\n"
# Weights this far from their initial values give different photos clearly different embeddings
# (at 0.02 every photo embeds alike), so rankings in the rehearsal differ from photo to photo.
NOISE = 0.3
EXTRA_TEXTS = [
    "우주비행사 요리사 축구 선수 의사 가수",
    "커피 맥주 우유 녹차 수프",
    "고양이 강아지 호랑이 토끼 곰",
    "로켓 비행기 자동차 배 기차",
    "빨간 원 파란 삼각형 노란 별 초록 사각형 보라 하트",
    "우주비행사의 얼굴",
    "커피 잔",
    "고양이의 눈",
    "바다 위의 배",
    "사진 속의 사람",
]


SPECIAL_TOKENS = {
    "bos_token": "[CLS]",
    "cls_token": "[CLS]",
    "eos_token": "[SEP]",
    "mask_token": "[MASK]",
    "pad_token": "[PAD]",
    "sep_token": "[SEP]",
    "unk_token": "[UNK]",
}


def klue_like_tokenizer_files() -> dict[str, bytes]:
    """klue/roberta-large's tokenizer files (a BERT WordPiece vocabulary, cased, accents kept), with a tiny
    vocabulary; the files `BertTokenizerFast.save_pretrained` writes, made with `tokenizers` alone."""
    vocab = tiny.train_wordpiece(tiny.SENTENCES + EXTRA_TEXTS * 4, vocab_size=400).rust.get_vocab()
    ordered = sorted(vocab, key=vocab.get)
    fast = BertWordPieceTokenizer({token: i for i, token in enumerate(ordered)}, lowercase=False, strip_accents=None)
    cls, sep = ("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])
    fast.post_processor = processors.TemplateProcessing(  # as transformers writes a BERT tokenizer's
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[cls, sep]
    )
    added = {
        str(i): {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for i, token in enumerate(ordered)
        if token in SPECIAL_TOKENS.values()
    }
    config = {
        "added_tokens_decoder": added,
        **SPECIAL_TOKENS,
        "clean_up_tokenization_spaces": True,
        "do_basic_tokenize": True,
        "do_lower_case": False,
        "extra_special_tokens": {},
        "model_max_length": 512,
        "never_split": None,
        "strip_accents": None,
        "tokenize_chinese_chars": True,
        "tokenizer_class": "BertTokenizer",
    }
    return {
        "vocab.txt": "".join(token + "\n" for token in ordered).encode(),
        "tokenizer.json": fast.to_str().encode(),
        "tokenizer_config.json": json.dumps(config, indent=2, ensure_ascii=False).encode(),
        "special_tokens_map.json": json.dumps(SPECIAL_TOKENS, indent=2).encode(),
    }


def _commit(files: dict[str, bytes]) -> str:
    digest = hashlib.sha1()
    for name in sorted(files):
        digest.update(name.encode() + hashlib.sha1(files[name]).digest())
    return digest.hexdigest()


def lay_repo(cache: Path, repo_id: str, files: dict[str, bytes]) -> Path:
    """One model repo in the cache's layout: blobs by content hash, snapshot links, refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    commit = _commit(files)
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, snapshot))
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def lay_cache(cache: Path) -> dict[str, dict]:
    """Lay the three repos in `cache`; returns each model's config and parameters, for references."""
    cache.mkdir(parents=True, exist_ok=True)
    tokenizer_files = klue_like_tokenizer_files()
    lay_repo(
        cache,
        TOKENIZER_REPO,
        {
            "config.json": json.dumps({"model_type": "roberta", "vocab_size": 400}).encode(),
            **tokenizer_files,
        },
    )
    vocab_size = len(tokenizer_files["vocab.txt"].decode().splitlines())
    models = {}
    for repo_id, (kind, seed) in MODELS.items():
        vision_type = "clip_vision_model" if kind == "clip" else kind
        cfg, params, files = tiny.hybrid_clip_files(seed, kind, 224, vision_type, vocab_size, NOISE)
        lay_repo(cache, repo_id, {".gitattributes": GITATTRIBUTES, **files})
        models[repo_id] = {"config": cfg, "params": params}
    return models


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    lay_cache(Path(sys.argv[1]))
    print(f"laid {', '.join([*MODELS, TOKENIZER_REPO])} in {sys.argv[1]}")
