"""Every entry point over the bad-input corpus (tests/data/bad_inputs.json): the library, the
command line and each page give the recorded outcome, an answer or a clear error, never a traceback."""

from __future__ import annotations

from pathlib import Path

import corpus
import pytest
from streamlit.testing.v1 import AppTest

import koclip
from koclip import webimage
from koclip.cli import main as cli
from koclip.data import scenes
from koclip.patches import rank_patches
from koclip.search import gallery

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "embeddings" / "koclip-mini-scenes"
PAGE_LABEL_LIMIT = 20  # Image → Text takes fewer labels than the library's 100


@pytest.fixture(scope="module")
def mini():
    return koclip.load("koclip-mini")


@pytest.fixture(scope="module")
def shipped():
    return gallery.Gallery.open(GALLERY)


def outcome(work) -> str:
    """'accepted', or the class name of the KoCLIPError raised."""
    try:
        work()
    except koclip.KoCLIPError as exc:
        return type(exc).__name__
    return "accepted"


def label_list(text: str) -> list[str]:
    return [part.strip() for part in text.replace("\n", ",").split(",") if part.strip()]


# ---------------------------------------------------------------- the library


@pytest.mark.parametrize("case", corpus.cases("images", "library"), ids=corpus.ids("images", "library"))
def test_library_images(mini, case):
    data = corpus.image_bytes(case["recipe"])
    assert outcome(lambda: mini.encode_image([data])) == case["expect"]
    assert outcome(lambda: rank_patches(mini, data, "빨간 원", 3, 3)) == case["expect"]


@pytest.mark.parametrize("case", corpus.cases("queries", "library"), ids=corpus.ids("queries", "library"))
def test_library_queries(mini, shipped, case):
    query = corpus.text(case["text"])
    assert outcome(lambda: gallery.search(mini, shipped, query, 5)) == case["expect"]
    assert outcome(lambda: rank_patches(mini, scenes.composite(0).image, query, 3, 3)) == case["expect"]


@pytest.mark.parametrize("case", corpus.cases("labels", "library"), ids=corpus.ids("labels", "library"))
def test_library_labels(mini, case):
    labels = label_list(corpus.text(case["text"]))
    expected = "accepted" if len(labels) > PAGE_LABEL_LIMIT else case["expect"]
    assert outcome(lambda: mini.classify(scenes.single_object("원", "빨간"), labels)) == expected


@pytest.mark.parametrize("case", corpus.cases("templates", "library"), ids=corpus.ids("templates", "library"))
def test_library_templates(mini, case):
    work = lambda: mini.classify(scenes.single_object("원", "빨간"), ["빨간 원", "파란 별"], case["template"])  # noqa: E731
    assert outcome(work) == case["expect"]


@pytest.mark.parametrize("case", corpus.cases("urls", "library"), ids=corpus.ids("urls", "library"))
def test_library_urls(case):
    assert outcome(lambda: webimage.fetch_image(case["url"])) == case["expect"]


# ---------------------------------------------------------------- the command line


def cli_outcome(argv: list[str], capsys) -> str:
    code = cli(argv)
    err = capsys.readouterr().err
    if code == 0:
        return "accepted"
    assert code == 2 and err.splitlines()[-1].startswith("error: ") and "Traceback" not in err
    return "error"


@pytest.mark.parametrize("case", corpus.cases("images", "cli"), ids=corpus.ids("images", "cli"))
def test_cli_search_by_image(case, tmp_path, capsys):
    path = tmp_path / "query.png"
    path.write_bytes(corpus.image_bytes(case["recipe"]))
    got = cli_outcome(["search", "--image", str(path), "--gallery", str(GALLERY), "--top-k", "3"], capsys)
    assert got == ("accepted" if case["expect"] == "accepted" else "error")


@pytest.mark.parametrize("case", corpus.cases("queries", "cli"), ids=corpus.ids("queries", "cli"))
def test_cli_search_by_text(case, capsys, mini):
    got = cli_outcome(["search", corpus.text(case["text"]), "--gallery", str(GALLERY), "--top-k", "3"], capsys)
    # A query of words koclip-mini cannot read gets no ranking: an error naming them.
    assert got == ("accepted" if page_expectation(case, mini) == "accepted" else "error")


# ---------------------------------------------------------------- the pages


def page_app(name: str) -> AppTest:
    from test_app import page, start_app

    at = start_app()
    at.selectbox(key="model_name").select("koclip-mini").run()
    return page(at, name)


def page_outcome(at: AppTest, answered: bool) -> str:
    assert not at.exception, at.exception
    if at.error:
        return "error"
    if any("has no answer" in warning.value for warning in at.warning):
        assert not answered, "an answer to words the model cannot read"
        return "unknown"
    assert answered, "neither an answer nor an error"
    return "accepted"


def page_expectation(case: dict, mini) -> str:
    """The corpus outcome, or 'unknown' where koclip-mini's vocabulary holds none of the words."""
    query = corpus.text(case["text"])
    if case["expect"] != "accepted":
        return "error"
    return "accepted" if mini.can_read(query) else "unknown"


@pytest.mark.parametrize("case", corpus.cases("queries", "pages"), ids=corpus.ids("queries", "pages"))
@pytest.mark.parametrize("page, key", [("text_to_image", "t2i_query"), ("text_to_patch", "t2p_query")])
def test_pages_take_every_query(mini, page, key, case):
    at = page_app(page)
    at.text_input(key=key).input(corpus.text(case["text"])).run()
    ranked = any(c.value.startswith("“") for c in at.caption) and bool(at.get("image"))  # Text → Image
    answered = ranked or any(m.value.startswith("Best patch for") for m in at.markdown)  # Text → Patch
    assert page_outcome(at, answered) == page_expectation(case, mini)


@pytest.mark.parametrize("case", corpus.cases("labels", "pages"), ids=corpus.ids("labels", "pages"))
def test_image_to_text_takes_every_label_list(mini, case):
    at = page_app("image_to_text")
    at.text_area(key="i2t_labels").input(corpus.text(case["text"])).run()
    answered = any(m.value.startswith("1. ") for m in at.markdown)
    labels = label_list(corpus.text(case["text"]))
    readable = [label for label in labels if mini.can_read(label)]
    expected = "error" if case["expect"] != "accepted" else "accepted" if readable else "unknown"
    assert page_outcome(at, answered) == expected


@pytest.mark.parametrize("case", corpus.cases("urls", "pages"), ids=corpus.ids("urls", "pages"))
def test_image_to_text_refuses_every_bad_url(case):
    at = page_app("image_to_text")
    at.radio(key="i2t_source").set_value("URL").run()
    at.text_input(key="i2t_url").input(case["url"]).run()
    assert page_outcome(at, False) == "error"


def _upload_and_answer(payload: bytes) -> None:
    # What each page does with an upload: the shared handler, then the page's own question.
    import io

    import streamlit as st

    import koclip
    from demo import inputs
    from koclip.patches import rank_patches

    image = inputs.open_upload(io.BytesIO(payload))
    if image is not None:
        model = koclip.load("koclip-mini")
        inputs.answer(model, lambda: model.classify(image, ["빨간 원", "파란 별"]))
        inputs.answer(model, lambda: rank_patches(model, image, "빨간 원", 3, 3))
        st.write("answered")


@pytest.mark.parametrize("case", corpus.cases("images", "pages"), ids=corpus.ids("images", "pages"))
def test_pages_take_every_upload(case):
    # AppTest cannot drive st.file_uploader, so this runs the pages' upload handler and questions.
    at = AppTest.from_function(
        _upload_and_answer, args=(corpus.image_bytes(case["recipe"]),), default_timeout=300
    ).run()
    answered = any(m.value == "answered" for m in at.markdown)
    assert page_outcome(at, answered) == ("accepted" if case["expect"] == "accepted" else "error")
