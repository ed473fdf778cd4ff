"""Tests for koclip.data.scenes: determinism, captions that tell the truth, and the exports."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from koclip.cli import main as cli
from koclip.data import scenes as S

NUMBER_WORDS = {"한": 1, "두": 2, "세": 3, "네": 4, "다섯": 5, "여섯": 6, "일곱": 7, "여덟": 8, "아홉": 9}


@pytest.fixture(scope="module")
def many() -> list[S.Scene]:
    return S.generate(2000, seed=1)


def pixels(scene: S.Scene) -> np.ndarray:
    return np.asarray(scene.image)


def expected_position(box: list[int], side: int) -> str:
    cx, cy = (box[0] + box[2]) / 2 / side, (box[1] + box[3]) / 2 / side
    if cx < 1 / 3:
        return "왼쪽"
    if cx > 2 / 3:
        return "오른쪽"
    return "위" if cy < 1 / 3 else "아래" if cy > 2 / 3 else "가운데"


def test_same_seed_same_scenes_and_prefix_stable() -> None:
    a, b = S.generate(4, seed=7), S.generate(6, seed=7)[:4]
    for x, y in zip(a, b):
        assert np.array_equal(pixels(x), pixels(y))
        assert (x.captions_ko, x.caption_en, x.objects) == (y.captions_ko, y.caption_en, y.objects)
    assert np.array_equal(pixels(S.composite(3)), pixels(S.composite(3)))


def test_different_seed_different_scenes() -> None:
    a, b = S.generate(4, seed=7), S.generate(4, seed=8)
    assert all(not np.array_equal(pixels(x), pixels(y)) for x, y in zip(a, b))
    assert [x.captions_ko for x in a] != [y.captions_ko for y in b]


def test_every_query_holds_for_its_own_scene(many: list[S.Scene]) -> None:
    for scene in many:
        assert 1 <= len(scene.objects) <= 3
        assert 4 <= len(scene.captions_ko) <= 6 and len(scene.queries) == len(scene.captions_ko)
        assert len(set(scene.captions_ko)) == len(scene.captions_ko)
        for obj in scene.objects:
            assert obj["position"] == expected_position(obj["box"], 64)
        for caption, query in zip(scene.captions_ko, scene.queries):
            assert S.matches(query, scene.objects), (caption, scene.objects)
            stated = re.search(r"(\S+) 개", caption)
            if stated:  # the number word is the true count, which the query checks
                assert NUMBER_WORDS[stated.group(1)] == query.count, caption
            else:
                assert query.count is None, caption


def test_generator_covers_the_vocabulary(many: list[S.Scene]) -> None:
    objects = [o for s in many for o in s.objects]
    for key, words in (("shape", S.SHAPES), ("color", S.COLORS), ("size", S.SIZES), ("position", S.POSITIONS)):
        assert {o[key] for o in objects} == set(words)
    single = sum(len(s.objects) == 1 for s in many) / len(many)
    assert 0.3 < single < 0.5
    text = " ".join(c for s in many for c in s.captions_ko)
    for form in ("이것은 별 이다.", "이것은 빨간 것 이다.", "이것은 파란 원 이다.", "원 두 개", "오른쪽에 있는"):
        assert form in text


def test_particles_follow_the_final_consonant(many: list[S.Scene]) -> None:
    text = " ".join(c for s in many for c in s.captions_ko)
    for right in ("하트가 있다", "원이 있다", "별이 있다", "사각형이 있다", "하트와 ", "원과 ", "개가 있다"):
        assert right in text
    for wrong in ("하트이 ", "원가 ", "별가 ", "형가 ", "하트과 ", "원와 ", "별와 ", "개이 "):
        assert wrong not in text


def test_matches_checks_every_field_and_exact_counts() -> None:
    objects = [
        {"shape": "원", "color": "빨간", "size": "큰", "position": "왼쪽", "box": [0, 0, 9, 9]},
        {"shape": "원", "color": "파란", "size": "작은", "position": "위", "box": [0, 0, 9, 9]},
    ]
    circle, red = S.ObjectSpec(shape="원"), S.ObjectSpec(color="빨간")
    assert S.matches(S.Query((circle,), count=2), objects)
    assert not S.matches(S.Query((circle,), count=1), objects)
    assert S.matches(S.Query((red, S.ObjectSpec(shape="원", size="작은"))), objects)
    assert not S.matches(S.Query((S.ObjectSpec(color="빨간", position="위"),)), objects)


def dominant_colour(image: np.ndarray, box: list[int]) -> str:
    """The palette colour nearest the median pixel of the box's central patch."""
    cx, cy = (box[0] + box[2]) // 2, (box[1] + box[3]) // 2
    r = max(1, (box[2] - box[0]) // 10)
    patch = image[cy - r : cy + r + 1, cx - r : cx + r + 1].reshape(-1, 3)
    median = np.median(patch, axis=0)
    return min(S.RGB, key=lambda c: np.linalg.norm(median - np.array(S.RGB[c])))


def test_labels_describe_the_pixels(many: list[S.Scene]) -> None:
    for scene in many[:400] + [S.composite(seed) for seed in range(10)]:
        image = pixels(scene)
        for obj in scene.objects:
            assert dominant_colour(image, obj["box"]) == obj["color"], obj


def test_single_object_shows_the_requested_colour() -> None:
    image = np.asarray(S.single_object("삼각형", "파란", 64, seed=4, big=False))
    assert image.shape == (64, 64, 3)
    blue = np.linalg.norm(image - np.array(S.RGB["파란"]), axis=-1) < 40
    assert 0.015 < blue.mean() < 0.1  # a small triangle covers a few percent of the canvas


@pytest.mark.parametrize("grid", [2, 3, 4])
def test_composite_objects_stay_in_their_cells(grid: int) -> None:
    cell = 48
    for seed in range(5):
        scene = S.composite(seed, grid=grid, cell=cell)
        assert scene.image.size == (grid * cell, grid * cell)
        pairs = [(o["shape"], o["color"]) for o in scene.objects]
        assert len(pairs) == len(set(pairs))
        assert len({o["cell"] for o in scene.objects}) == len(scene.objects)
        for obj in scene.objects:
            row, col = obj["cell"]
            x0, y0, x1, y1 = obj["box"]
            assert col * cell <= x0 < x1 <= (col + 1) * cell
            assert row * cell <= y0 < y1 <= (row + 1) * cell
        for caption, query in zip(scene.captions_ko, scene.queries):
            assert S.matches(query, scene.objects), caption


def test_swapped_pairs_differ_only_in_binding() -> None:
    for index in range(20):
        a, b = S.swapped_pair(seed=5, index=index)
        assert [o["box"] for o in a.objects] == [o["box"] for o in b.objects]
        assert [o["shape"] for o in a.objects] == [o["shape"] for o in b.objects]
        assert sorted(o["color"] for o in a.objects) == sorted(o["color"] for o in b.objects)
        bound = {(o["color"], o["shape"]) for o in a.objects}
        assert bound.isdisjoint((o["color"], o["shape"]) for o in b.objects)
        assert not np.array_equal(pixels(a), pixels(b))
        query = S.Query((S.ObjectSpec(shape=a.objects[0]["shape"], color=a.objects[0]["color"]),))
        assert S.matches(query, a.objects) and not S.matches(query, b.objects)


def test_imagefolder_round_trip(tmp_path) -> None:
    import datasets

    scenes = S.generate(5, seed=2)
    out = S.write_imagefolder(iter(scenes), tmp_path / "folder")
    assert sorted(p.name for p in out.iterdir()) == [f"{i:06d}.png" for i in range(5)] + ["metadata.jsonl"]
    loaded = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    for ds in (loaded, S.to_dataset(scenes)):
        columns = {"image", "caption_ko", "captions_ko", "caption_en", "objects"}
        assert columns <= set(ds.column_names)
        assert len(ds) == 5
        assert ds[0]["caption_ko"] == scenes[0].captions_ko[0]
        assert ds[0]["captions_ko"] == scenes[0].captions_ko
        assert ds[0]["objects"][0]["box"] == scenes[0].objects[0]["box"]
        assert np.array_equal(np.asarray(ds[0]["image"].convert("RGB")), pixels(scenes[0]))


def test_cli_help_and_run(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli(["scenes", "--help"])
    assert exit_info.value.code == 0
    assert "--composite" in capsys.readouterr().out
    out = tmp_path / "boards"
    assert cli(["scenes", "--composite", "--grid", "2", "--n", "2", "--out", str(out)]) == 0
    assert (out / "metadata.jsonl").read_text(encoding="utf-8").count("\n") == 2
    assert cli(["scenes", "--n", "1", "--out", str(out)]) == 2  # refuses a used directory


# ------------------------------------------------------------- captions read back from their text

_WORDS = {**{w: "shape" for w in S.SHAPES}, **{w: "color" for w in S.COLORS}, **{w: "size" for w in S.SIZES}}


def _phrase(words: list[str]) -> dict[str, str]:
    """The fields one noun phrase names, e.g. ["큰", "빨간", "원"]; "것" stands for any shape."""
    fields: dict[str, str] = {}
    for word in words:
        if word != "것":
            assert word in _WORDS and _WORDS[word] not in fields, words
            fields[_WORDS[word]] = word
    assert words[-1] in S.SHAPES or (words[-1] == "것" and "color" in fields), words
    return fields


def read_caption(caption: str) -> tuple[list[dict[str, str]], int | None]:
    """What a caption says, read from its words alone: one dict of fields per object it names,
    and the count it states, if any."""
    text = caption
    if text.startswith("이것은 ") and text.endswith(" 이다."):
        text = text[len("이것은 ") : -len(" 이다.")]
    position = None
    if (m := re.match(r"(\S+)에 (있는 )?", text)) and m.group(1) in S.POSITIONS:
        position, text = m.group(1), text[m.end() :]
    text = text.removesuffix(" 있다")
    count = None
    if m := re.search(r" (\S+) 개(가)?$", text):
        count, text = NUMBER_WORDS[m.group(1)], text[: m.start()]
    phrases = []
    for part in re.split(r", |(?<=[과와]) ", text):  # "A, B과 C": a list of phrases
        words = part.split()
        last = words[-1]
        if last not in _WORDS and last != "것":  # a particle: 이/가 after the subject, 과/와 in a list
            assert last[-1] in "이가과와" and last[:-1] in (*_WORDS, "것"), caption
            words[-1] = last[:-1]
        phrases.append(_phrase(words))
    if position:
        assert len(phrases) == 1, caption
        phrases[0]["position"] = position
    assert count is None or len(phrases) == 1, caption
    return phrases, count


def fits(fields: dict[str, str], obj: dict) -> bool:
    return all(obj[key] == value for key, value in fields.items())


def check_captions(scene: S.Scene) -> None:
    """Every caption agrees with the objects, and its query claims exactly what its words say."""
    pairs = Counter((o["color"], o["shape"]) for o in scene.objects)
    for caption, query in zip(scene.captions_ko, scene.queries, strict=True):
        phrases, count = read_caption(caption)
        assert query == S.Query(tuple(S.ObjectSpec(**p) for p in phrases), count), (caption, query)
        if count is not None:
            assert sum(fits(phrases[0], o) for o in scene.objects) == count, (caption, scene.objects)
        for phrase in phrases:
            assert any(fits(phrase, o) for o in scene.objects), (caption, scene.objects)
        if count is None:
            # A colour+shape pair named without a number is named once per object that has it.
            mentioned = Counter((p["color"], p["shape"]) for p in phrases if {"color", "shape"} <= set(p))
            for pair, times in mentioned.items():
                assert pairs[pair] == times, (caption, scene.objects)
        assert S.matches(query, scene.objects), (caption, scene.objects)


def test_read_caption_understands_every_form() -> None:
    assert read_caption("왼쪽에 큰 빨간 원이 있다") == (
        [{"size": "큰", "color": "빨간", "shape": "원", "position": "왼쪽"}],
        None,
    )
    assert read_caption("오른쪽에 있는 파란 하트") == ([{"color": "파란", "shape": "하트", "position": "오른쪽"}], None)
    assert read_caption("큰 노란 사각형, 작은 파란 별과 작은 노란 사각형이 있다") == (
        [
            {"size": "큰", "color": "노란", "shape": "사각형"},
            {"size": "작은", "color": "파란", "shape": "별"},
            {"size": "작은", "color": "노란", "shape": "사각형"},
        ],
        None,
    )
    assert read_caption("초록 것 세 개가 있다") == ([{"color": "초록"}], 3)
    assert read_caption("별 두 개") == ([{"shape": "별"}], 2)
    assert read_caption("이것은 흰 것 이다.") == ([{"color": "흰"}], None)
    assert read_caption("하트가 있다") == ([{"shape": "하트"}], None)
    with pytest.raises(AssertionError):
        read_caption("빨간 고양이가 있다")
    two_red_circles = [
        {"shape": "원", "color": "빨간", "size": "큰", "position": "왼쪽"},
        {"shape": "원", "color": "빨간", "size": "큰", "position": "오른쪽"},
    ]
    for caption, query in (
        ("큰 빨간 원이 있다", S.Query((S.ObjectSpec(shape="원", color="빨간", size="큰"),))),
        ("빨간 원 한 개가 있다", S.Query((S.ObjectSpec(shape="원", color="빨간"),), 1)),
    ):
        with pytest.raises(AssertionError):  # names one red circle where there are two
            check_captions(S.Scene(None, two_red_circles, [caption], [query], ""))


def test_every_caption_of_ten_thousand_scenes_agrees_with_its_objects() -> None:
    for i in range(10_000):
        check_captions(S.scene(0, i))
    for i in range(300):
        for half in S.swapped_pair(0, i):
            check_captions(half)
    for index in range(30):
        board = S.composite(0, index=index)
        assert len({(o["color"], o["shape"]) for o in board.objects}) == len(board.objects)
        check_captions(board)
