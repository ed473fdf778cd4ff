"""Hostile inputs that once ended in a traceback or cost without a bound: images Pillow recognises
but cannot decode, texts that are not valid Unicode or are a million characters long, and gallery
metadata that tries to pass for the search's own results. Each gets the project's clear error, or
a bounded answer.

The mutation fuzz of `open_image` and the image transform runs for KOCLIP_FUZZ_SECONDS (20 unless
set) from the seed KOCLIP_FUZZ_SEED (0 unless set).
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import hostile_images
import pytest
from PIL import Image

import koclip
from koclip.api import MAX_TEXT_CHARS
from koclip.cli import main as cli
from koclip.data import scenes
from koclip.errors import InvalidImageError, InvalidInputError, KoCLIPError
from koclip.images import FORMAT_NAMES, FORMATS
from koclip.patches import rank_patches
from koclip.search import gallery
from koclip.transform import ImageTransform

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "embeddings" / "koclip-mini-scenes"
FUZZ_SECONDS = float(os.environ.get("KOCLIP_FUZZ_SECONDS", "20"))
FUZZ_SEED = int(os.environ.get("KOCLIP_FUZZ_SEED", "0"))


@pytest.fixture(scope="module")
def mini():
    return koclip.load("koclip-mini")


def red_circle() -> Image.Image:
    return scenes.single_object("원", "빨간")


# ---------------------------------------------------------------- images


def saved(image: Image.Image, format: str, **options) -> bytes:
    out = io.BytesIO()
    image.save(out, format, **options)
    return out.getvalue()


def accepted_samples() -> dict[str, bytes]:
    """A small picture in each format koclip reads, and in the variants cameras and editors write."""
    picture = Image.new("RGB", (40, 30), (200, 30, 30))
    samples = {name: saved(picture, name) for name in FORMATS}
    samples["MPO"] = saved(picture, "MPO", save_all=True, append_images=[picture])  # a camera's JPEG pair
    samples["TIFF, LZW"] = saved(picture, "TIFF", compression="tiff_lzw")
    samples["PNG, palette with transparency"] = saved(picture.convert("P"), "PNG", transparency=0)
    samples["GIF, two frames"] = saved(picture, "GIF", save_all=True, append_images=[picture.rotate(90)])
    return samples


@pytest.mark.parametrize("name", list(accepted_samples()))
def test_each_format_koclip_reads_opens_as_rgb(name):
    image = koclip.open_image(accepted_samples()[name])
    assert image.mode == "RGB" and image.size == (40, 30)


@pytest.mark.parametrize("name", list(hostile_images.undecodable()))
def test_a_format_pillow_knows_but_koclip_does_not_read_is_refused_clearly(name):
    with pytest.raises(InvalidImageError) as refused:
        koclip.open_image(hostile_images.undecodable()[name])
    assert str(refused.value) == (
        "the image is not a readable image: it is in none of the formats koclip reads; "
        f"send a whole {FORMAT_NAMES} file"
    )


def test_other_formats_are_refused_whatever_the_file_is_called(tmp_path):
    picture = Image.new("RGB", (40, 30), (200, 30, 30))
    for format in ("ICO", "PPM", "TGA", "PCX", "SGI", "QOI"):
        path = tmp_path / f"{format.lower()}-as.png"
        path.write_bytes(saved(picture, format))
        with pytest.raises(InvalidImageError, match=f"{path} is not a readable image: it is in none of the formats"):
            koclip.open_image(path)


def mutated(data: bytes, rng: random.Random) -> bytes:
    """`data` with a few bytes changed, cut out, or added, or cut short."""
    data = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        at = rng.randrange(len(data) + 1)
        kind = rng.random()
        if kind < 0.5 and at < len(data):
            data[at] = rng.randrange(256)
        elif kind < 0.7:
            del data[at : at + rng.randint(1, 16)]
        elif kind < 0.9:
            data[at:at] = rng.randbytes(rng.randint(1, 16))
        else:
            del data[at:]
    return bytes(data)


@pytest.mark.slow
def test_mutated_images_get_an_answer_or_the_projects_own_error():
    seeds = [*accepted_samples().values(), *hostile_images.undecodable().values()]
    transform = ImageTransform.clip(224)
    rng = random.Random(FUZZ_SEED)
    tried, refused, stop = 0, 0, time.monotonic() + FUZZ_SECONDS
    warnings.simplefilter("ignore")  # Pillow warns of much in damaged files; pytest restores the filters
    while time.monotonic() < stop:
        data = mutated(rng.choice(seeds), rng)
        tried += 1
        try:
            assert transform([koclip.open_image(data)]).shape == (1, 224, 224, 3)
        except KoCLIPError:
            refused += 1
        except Exception as exc:
            pytest.fail(f"case {tried} (seed {FUZZ_SEED}) raised {type(exc).__name__}: {exc}; it began {data[:32]!r}")
    assert tried > 100 and 0 < refused < tried, (tried, refused)


# ---------------------------------------------------------------- texts that are not valid Unicode

LONE_SURROGATES = ["\ud800", "빨간 \udcff원", "\udfff" * 3]  # "\udcff" is what a byte 0xff becomes in argv


@pytest.mark.parametrize("text", LONE_SURROGATES, ids=["high", "escaped byte", "low"])
def test_a_text_that_is_not_valid_unicode_is_refused_at_every_text_call(mini, text):
    shipped = gallery.Gallery.open(GALLERY)
    calls = {
        "encode_text": lambda: mini.encode_text([text]),
        "is_truncated": lambda: mini.is_truncated(text),
        "unknown_words": lambda: mini.unknown_words(text),
        "can_read": lambda: mini.can_read(text),
        "a label": lambda: mini.classify(red_circle(), [text, "파란 별"]),
        "a template": lambda: mini.classify(red_circle(), ["빨간 원", "파란 별"], "{} " + text),
        "gallery.search": lambda: gallery.search(mini, shipped, text, 3),
        "rank_patches": lambda: rank_patches(mini, red_circle(), text, 2, 2),
    }
    for call, work in calls.items():
        with pytest.raises(InvalidInputError, match=r"is not valid Unicode: character \d+ is a lone surrogate") as info:
            work()
        assert "give the text as UTF-8" in str(info.value), call


def test_the_command_line_reports_a_query_that_is_not_valid_unicode(capsys):
    assert cli(["search", "빨간 \udcff원", "--gallery", str(GALLERY)]) == 2
    captured = capsys.readouterr()
    assert not captured.out
    assert captured.err == (
        "error: the text '빨간 \\udcff원' is not valid Unicode: character 4 is a lone surrogate "
        "('\\udcff'), which is what decoding bytes that are not UTF-8 leaves; "
        "give the text as UTF-8\n"
    )


def test_a_command_line_that_is_not_utf8_gets_a_one_line_error():
    query = "빨간".encode() + b" \xff\xfe"  # Latin-1 bytes typed into a UTF-8 terminal
    result = subprocess.run(
        [sys.executable, "-m", "koclip", "search", query, "--gallery", str(GALLERY)],
        cwd=ROOT,
        capture_output=True,
        timeout=300,
    )
    err = result.stderr.decode("utf-8")
    assert result.returncode == 2 and not result.stdout and "Traceback" not in err
    assert err.splitlines()[-1].startswith("error: the text '빨간 \\udcff\\udcfe' is not valid Unicode: character 4")


# ---------------------------------------------------------------- texts without a length bound

MILLION = "빨간 원 " * 250_000  # 1,000,000 characters


@pytest.fixture
def tokenized(mini, monkeypatch):
    """The length of every text the tokenizer is given, as it is given."""
    tokenizer = mini.text_processor.tokenizer
    lengths: list[int] = []
    encode, pieces = tokenizer.encode, tokenizer.pieces

    def counted_encode(texts, *args, **kwargs):
        lengths.extend(len(text) for text in texts)
        return encode(texts, *args, **kwargs)

    def counted_pieces(text, *args, **kwargs):
        lengths.append(len(text))
        return pieces(text, *args, **kwargs)

    monkeypatch.setattr(tokenizer, "encode", counted_encode)
    monkeypatch.setattr(tokenizer, "pieces", counted_pieces)
    return lengths


def test_a_long_text_is_cut_before_it_is_tokenized(mini, tokenized):
    shipped = gallery.Gallery.open(GALLERY)
    mini.encode_text([MILLION])
    assert mini.is_truncated(MILLION)
    assert mini.unknown_words(MILLION + " 고양이") == []  # the unknown word lies past what is read
    assert mini.can_read(MILLION)
    gallery.search(mini, shipped, MILLION, 3)
    rank_patches(mini, red_circle(), MILLION, 2, 2)
    mini.classify(red_circle(), [MILLION, "파란 별"])
    mini.classify(red_circle(), ["빨간 원", "파란 별"], "{} " + MILLION)
    assert tokenized and max(tokenized) <= MAX_TEXT_CHARS


def test_cutting_a_long_text_changes_no_embedding(mini):
    read = mini.encode_text(["빨간 원 " * 50])  # already longer than koclip-mini's 24 tokens
    assert abs(mini.encode_text([MILLION]) - read).max() < 1e-6


def test_a_text_cut_to_its_characters_is_said_to_be_cut(mini):
    spaced = "빨간" + " " * MAX_TEXT_CHARS + "원"  # two tokens, but the second lies past the cut
    assert mini.is_truncated(spaced)
    assert not mini.is_truncated("빨간" + " " * (MAX_TEXT_CHARS - 3) + "원")


# ---------------------------------------------------------------- the command line's output


@pytest.fixture(scope="module")
def forged(tmp_path_factory):
    """The shipped gallery with metadata that claims the search's own fields and holds numbers that
    are not finite and a caption that is not valid Unicode."""
    out = tmp_path_factory.mktemp("forged") / "gallery"
    shutil.copytree(GALLERY, out)
    rows = [json.loads(line) for line in (out / gallery.METADATA).read_text(encoding="utf-8").splitlines()]
    lies = {"score": 99.0, "rank": "first", "index": -1, "weight": float("nan"), "spread": [float("-inf"), 1.0]}
    with (out / gallery.METADATA).open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({**row, **lies, "caption": row["caption"] + " \ud800"}) + "\n")  # NaN, -Infinity
    return out


def test_metadata_cannot_replace_the_results_own_fields(forged, capsys):
    assert cli(["search", "빨간 원", "--gallery", str(forged), "--top-k", "3", "--json"]) == 0
    captured = capsys.readouterr()
    assert not captured.err
    results = json.loads(captured.out, parse_constant=lambda name: pytest.fail(f"{name} in strict JSON"))["results"]
    assert [r["rank"] for r in results] == [1, 2, 3]
    assert all(0 < r["score"] < 1 and r["index"] >= 0 for r in results)
    assert all(
        r["metadata_score"] == 99.0 and r["metadata_rank"] == "first" and r["metadata_index"] == -1 for r in results
    )
    assert all(r["weight"] is None and r["spread"] == [None, 1.0] for r in results)
    assert all(r["caption"].endswith(" \ud800") for r in results)  # written as the escape \ud800
    assert list(results[0])[:3] == ["rank", "index", "score"]


def test_forged_metadata_prints_as_text(forged, capsys):
    assert cli(["search", "빨간 원", "--gallery", str(forged), "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["rank", "score", "source"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3"]
    assert all(0 < float(line.split()[1]) < 1 and line.endswith(" \\ud800") for line in lines[1:])


def test_search_help_says_what_a_result_holds(capsys):
    with pytest.raises(SystemExit):
        cli(["search", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "Search a gallery with a text query or an image." in help_text
    assert "A metadata field named rank, index or score is shown as metadata_rank" in help_text
    assert "is cut to its beginning, with a note" in help_text
