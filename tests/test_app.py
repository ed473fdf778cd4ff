"""The Streamlit demo, driven headless with AppTest on koclip-mini: right answers, and bad input
that ends in an error message rather than an exception."""

from __future__ import annotations

import asyncio
import io
import re
import time
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

import koclip
from koclip import hub
from koclip.data import scenes
from koclip.data.scenes import ObjectSpec, Query
from koclip.search import gallery

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300  # the first run imports jax and compiles the model; later runs take well under a second
MAIN = ROOT / "demo" / "navigation.py"  # the script app.py serves for every page view
LONG_QUERY = ("빨간 원 " * 2000)[:10_000]


def start_app() -> AppTest:
    return AppTest.from_file(str(MAIN), default_timeout=TIMEOUT).run()


@pytest.fixture
def app() -> AppTest:
    at = start_app()
    at.selectbox(key="model_name").select("koclip-mini").run()
    return at


def page_path(name: str) -> str:
    """A page's script, as st.Page names it: relative to the main script."""
    return f"../pages/{name}.py"


def page(at: AppTest, name: str) -> AppTest:
    at.switch_page(page_path(name)).run()
    assert not at.exception
    return at


def texts(elements) -> list[str]:
    return [element.value for element in elements]


def test_the_server_starts_loading_the_default_model_before_any_visitor(monkeypatch):
    import app as server
    from demo import models

    monkeypatch.setenv("KOCLIP_MODEL", "koclip-mini")
    models.server_models.clear()
    assert models.server_models().loading() == []

    async def start() -> None:
        async with server.start_loading(server.app):
            pass

    asyncio.run(start())
    deadline = time.monotonic() + 60
    while "koclip-mini" not in models.server_models().loading() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert models.server_models().loading() == ["koclip-mini"]
    assert Path(server.app.script_path) == Path("demo/navigation.py") and MAIN.is_file()
    assert models.server_models().get("koclip-mini").result(timeout=120).name == "koclip-mini"


def test_intro_shows_intro_md(app):
    heading = (ROOT / "intro.md").read_text(encoding="utf-8").splitlines()[0]
    assert any(heading in text for text in texts(app.markdown))
    assert not app.exception


def test_the_sidebar_says_which_models_are_ready(app):
    options = app.selectbox(key="model_name").options
    assert [option.split(" — ")[0] for option in options] == ["koclip-base", "koclip-large", "koclip-mini"]
    assert "koclip-mini — ready" in options
    if not hub.is_cached("koclip/koclip-base"):  # offline (conftest sets HF_HUB_OFFLINE) and not downloaded
        assert "koclip-base — offline" in options


def test_offline_without_koclip_base_the_default_is_koclip_mini(monkeypatch):
    monkeypatch.setattr(hub, "is_cached", lambda repo_id: False)
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT).run()
    assert at.selectbox(key="model_name").value == "koclip-mini"


def test_koclip_mini_comes_with_a_notice_of_what_it_is(app):
    page(app, "image_to_text")
    assert any("coloured shapes" in text for text in texts(app.info))


@pytest.mark.skipif(hub.is_cached("koclip/koclip-base"), reason="koclip-base is cached here, so it would load")
def test_an_unavailable_model_shows_an_error_and_a_hint(app):
    app.selectbox(key="model_name").select("koclip-base").run()
    page(app, "image_to_text")
    assert any("koclip-base" in text for text in texts(app.error))
    assert any("koclip-mini" in text for text in texts(app.info))


# ---------------------------------------------------------------- Image → Text


def test_image_to_text_ranks_the_blue_triangle_first(app):
    page(app, "image_to_text")
    app.selectbox(key="i2t_example").select("Generated: 파란 삼각형").run()
    app.text_area(key="i2t_labels").input("빨간 원, 초록 사각형\n노란 별\n파란 삼각형\n보라 하트").run()
    assert not app.exception
    ranking = next(text for text in texts(app.markdown) if text.startswith("1. "))
    assert ranking.startswith("1. 파란 삼각형 — ")
    assert ranking.count("%") == 5


def test_image_to_text_with_a_prompt_ensemble(app):
    page(app, "image_to_text")
    app.selectbox(key="i2t_example").select("Generated: 파란 삼각형").run()
    app.checkbox(key="i2t_ensemble").check().run()
    assert not app.exception
    assert any(text.startswith("1. 파란 삼각형 — ") for text in texts(app.markdown))


@pytest.mark.parametrize("labels", [" , \n ", "\n".join(f"라벨{i}" for i in range(21))])
def test_image_to_text_refuses_no_labels_or_too_many(app, labels):
    page(app, "image_to_text")
    app.text_area(key="i2t_labels").input(labels).run()
    assert app.error and not app.exception
    assert not any(text.startswith("1. ") for text in texts(app.markdown))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/cat.jpg", "http://127.0.0.1/cat.jpg"])
def test_a_url_that_is_not_public_http_is_refused(app, url):
    page(app, "image_to_text")
    app.radio(key="i2t_source").set_value("URL").run()
    app.text_input(key="i2t_url").input(url).run()
    assert app.error and not app.exception


def _png(size: tuple[int, int], mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size).save(out, "PNG")
    return out.getvalue()


def _upload_script(payload: bytes) -> None:
    import io

    from demo import inputs

    inputs.open_upload(io.BytesIO(payload))


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"%PDF-1.4 this is not an image", "not a readable image"),
        (_png((256, 256))[:200], "truncated"),
        (_png((7000, 6000), mode="1"), "too large"),  # 42 megapixels, refused from the header alone
    ],
)
def test_an_upload_that_cannot_be_used_shows_an_error(payload, message):
    # AppTest cannot drive st.file_uploader, so this runs the upload widget's handler itself.
    at = AppTest.from_function(_upload_script, args=(payload,), default_timeout=TIMEOUT).run()
    assert any(message in text for text in texts(at.error))
    assert not at.exception


UNFAMILIAR = "does not look like the generated scenes"
KEYS = {"image_to_text": "i2t", "text_to_patch": "t2p"}


@pytest.fixture
def photos_offered(monkeypatch):
    """The photo examples offered to koclip-mini too, as an upload of the same photo would be."""
    from demo import inputs

    monkeypatch.setattr(inputs, "examples_for", lambda model, scenes, photos: photos | scenes)


@pytest.mark.parametrize("photo", ["astronaut", "coffee", "chelsea", "rocket"])
@pytest.mark.parametrize("name, ask", [("image_to_text", "i2t_labels"), ("text_to_patch", "t2p_query")])
def test_koclip_mini_warns_above_its_answer_for_a_photo(app, photos_offered, photo, name, ask):
    page(app, name)
    app.selectbox(key=f"{KEYS[name]}_example").select(f"Photo: {photo}").run()
    (app.text_area if name == "image_to_text" else app.text_input)(key=ask).input("빨간 원, 파란 삼각형").run()
    assert not app.exception
    assert any(UNFAMILIAR in text and "never seen a photo" in text for text in texts(app.warning))
    assert any(text.startswith(("1. ", "Best patch")) for text in texts(app.markdown))  # still answered


@pytest.mark.parametrize(
    "name, example", [("image_to_text", "Generated: 파란 삼각형"), ("text_to_patch", "Generated board 2 (3×3)")]
)
def test_koclip_mini_gives_no_image_warning_for_a_generated_scene(app, name, example):
    page(app, name)
    app.selectbox(key=f"{KEYS[name]}_example").select(example).run()
    assert not app.exception
    assert not any(UNFAMILIAR in text for text in texts(app.warning))


# ---------------------------------------------------------------- Text → Patch


def test_the_text_to_patch_examples_each_ask_for_another_cell(app):
    page(app, "text_to_patch")
    answers = set()
    for board in ("Generated board 1 (3×3)", "Generated board 2 (3×3)", "Generated board 3 (3×3)"):
        app.selectbox(key="t2p_example").select(board).run()
        answers |= {text for text in texts(app.markdown) if text.startswith("Best patch")}
    assert not app.exception
    cells = {re.search(r"row \d, column \d", text).group() for text in answers}
    assert cells == {"row 2, column 2", "row 3, column 1", "row 1, column 3"}  # the cells the examples ask for


@pytest.mark.parametrize("seed, which", [(0, 1), (1, 2)])
def test_text_to_patch_finds_the_queried_object_on_a_board(app, seed, which):
    # Not the examples' queries, nor the last cell, where an untrained model tends to look.
    target = scenes.composite(seed).objects[which]
    page(app, "text_to_patch")
    app.selectbox(key="t2p_example").select(f"Generated board {seed + 1} (3×3)").run()
    app.text_input(key="t2p_query").input(f"{target['color']} {target['shape']}").run()
    assert not app.exception
    row, col = target["cell"]
    assert any(f"row {row + 1}, column {col + 1}" in text for text in texts(app.markdown))


def test_text_to_patch_scores_every_cell_of_the_grid(app):
    page(app, "text_to_patch")
    app.slider(key="t2p_rows").set_value(2).run()
    app.radio(key="t2p_scores").set_value("Cosine similarity").run()
    assert not app.exception
    assert any("6 patches in one batch" in text for text in texts(app.caption))


# ---------------------------------------------------------------- Text → Image


def test_text_to_image_finds_a_red_circle_in_the_shipped_gallery(app):
    page(app, "text_to_image")
    app.text_input(key="t2i_query").input("빨간 원").run()
    assert not app.exception
    results = app.session_state["t2i_results"]
    assert len(results) == app.slider(key="t2i_k").value
    assert scenes.matches(Query((ObjectSpec(shape="원", color="빨간"),)), results[0]["objects"])
    assert len(app.get("image")) == len(results)


def test_text_to_image_without_a_gallery_encodes_the_sample_photos(app, monkeypatch, tmp_path):
    monkeypatch.setattr(gallery, "list_galleries", lambda root, model_name=None: [])
    monkeypatch.setenv("KOCLIP_EMBEDDINGS", str(tmp_path))
    page(app, "text_to_image")
    assert any("sample photos" in text for text in texts(app.info))
    assert not app.code  # no command line to run: the page builds what it needs
    run_until(app, lambda at: (tmp_path / "koclip-mini-samples" / "manifest.json").is_file())


def test_a_second_visitor_opens_on_the_shipped_gallery_after_a_first_encoded_the_samples(app, own_embeddings):
    page(app, "text_to_image")
    app.button(key="t2i_build_samples").click().run()
    run_until(app, lambda at: (own_embeddings / "koclip-mini-samples" / "manifest.json").is_file())
    app.selectbox(key="t2i_gallery").select(str(own_embeddings / "koclip-mini-samples")).run()
    assert any("images in this gallery do not look like the generated scenes" in text for text in texts(app.warning))
    second = start_app()
    second.selectbox(key="model_name").select("koclip-mini").run()
    page(second, "text_to_image")
    gallery_box = second.selectbox(key="t2i_gallery")
    assert [label.split()[0] for label in gallery_box.options] == ["koclip-mini-scenes", "koclip-mini-samples"]
    assert Path(gallery_box.value).name == "koclip-mini-scenes"
    second.text_input(key="t2i_query").input("빨간 원").run()
    assert not any("do not look like" in text for text in texts(second.warning))  # the scenes: no warning
    first = second.session_state["t2i_results"][0]
    assert scenes.matches(Query((ObjectSpec(shape="원", color="빨간"),)), first["objects"])


def test_only_the_shipped_gallery_and_the_app_folder_are_listed(tmp_path, monkeypatch, own_embeddings):
    from demo import galleries, settings
    from koclip.data import samples
    from koclip.search import indexing

    shipped = tmp_path / "shipped"
    shipped.mkdir()
    (shipped / "koclip-mini-scenes").symlink_to(ROOT / "embeddings" / "koclip-mini-scenes")
    mini = koclip.load("koclip-mini")
    indexing.build(samples.SampleSource(), mini, shipped / "koclip-mini-left-over", batch_size=16, progress=False)
    monkeypatch.setattr(settings, "SHIPPED_EMBEDDINGS", shipped)
    assert [Path(path).name for path in galleries.disk_galleries("koclip-mini")[0]] == ["koclip-mini-scenes"]
    monkeypatch.setenv("KOCLIP_EMBEDDINGS", str(shipped))  # a local server writing beside the shipped gallery
    listed = [Path(path).name for path in galleries.disk_galleries("koclip-mini")[0]]
    assert listed == ["koclip-mini-scenes", "koclip-mini-left-over"]


def _uploads_script(sizes: list[tuple[int, int]]) -> None:
    import io

    import streamlit as st
    from PIL import Image

    import koclip
    from demo import galleries

    files = []
    for i, size in enumerate(sizes):
        data = io.BytesIO()
        Image.new("RGB", size, (200, 30 * i % 255, 40)).save(data, "PNG")
        data.name = f"photo{i}.png"
        data.getvalue = data.getbuffer().tobytes
        files.append(data)
    collection, notes = galleries.encode_uploads(koclip.load("koclip-mini"), files)
    st.session_state["uploads"] = (len(collection), notes)


def test_one_visitors_uploads_are_bounded_in_pixels_and_count():
    from demo import galleries

    big = (6000, 6000)  # 36 megapixels each: the third would pass 100 in all
    at = AppTest.from_function(_uploads_script, args=([big] * 4,), default_timeout=TIMEOUT).run()
    count, notes = at.session_state["uploads"]
    assert count == 2 and any(f"{galleries.MAX_UPLOAD_MEGAPIXELS} megapixels" in note for note in notes)
    many = [(32, 32)] * (galleries.MAX_UPLOADS + 3)
    at = AppTest.from_function(_uploads_script, args=(many,), default_timeout=TIMEOUT).run()
    count, notes = at.session_state["uploads"]
    assert count == galleries.MAX_UPLOADS and any(f"first {galleries.MAX_UPLOADS} of your" in n for n in notes)
    assert not at.exception


def test_damaged_galleries_are_left_out_with_their_reason_and_the_others_work(app, own_embeddings):
    import shutil

    source = ROOT / "embeddings" / "koclip-mini-scenes"
    for name in ("a-truncated", "b-nested", "c-bad-captions"):
        shutil.copytree(source, own_embeddings / name)
    metadata = (own_embeddings / "a-truncated" / "metadata.jsonl").read_bytes()
    (own_embeddings / "a-truncated" / "metadata.jsonl").write_bytes(metadata[: len(metadata) // 2])
    (own_embeddings / "b-nested" / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    rows = (own_embeddings / "c-bad-captions" / "metadata.jsonl").read_text(encoding="utf-8").splitlines()
    rows[3] = rows[3].replace('"caption": "', '"caption": ["not text"], "was": "', 1)
    (own_embeddings / "c-bad-captions" / "metadata.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")

    page(app, "text_to_image")
    assert not app.exception
    assert [label.split()[0] for label in app.selectbox(key="t2i_gallery").options] == ["koclip-mini-scenes"]
    shown = " ".join(texts(app.markdown)).replace("\\", "")
    assert "a-truncated" in shown and "is not JSON" in shown
    assert "b-nested" in shown and "unreadable" in shown
    assert "c-bad-captions" in shown and "caption that is not text" in shown
    assert any(expander.label == "3 damaged galleries left out" for expander in app.expander)
    app.text_input(key="t2i_query").input("빨간 원").run()
    assert len(app.session_state["t2i_results"]) == 10 and not app.exception


def test_a_gallery_whose_index_crashes_its_probe_is_left_out(app, own_embeddings, monkeypatch):
    import shutil

    from test_gallery_hardening import attach_graph

    folder = Path(shutil.copytree(ROOT / "embeddings" / "koclip-mini-scenes", own_embeddings / "koclip-mini-graph"))
    attach_graph(folder)
    probed = []
    monkeypatch.setattr(
        gallery, "probe", lambda path: probed.append(path) or "searching it crashed a process (signal 11)"
    )
    page(app, "text_to_image")
    assert probed == [str(folder)] and not app.exception
    assert [label.split()[0] for label in app.selectbox(key="t2i_gallery").options] == ["koclip-mini-scenes"]
    assert any(expander.label == "1 damaged gallery left out" for expander in app.expander)


def test_a_gallery_re_indexed_under_its_name_shows_its_own_pictures(app, own_embeddings):
    from demo import results
    from koclip.search import indexing, sources

    mini = koclip.load("koclip-mini")
    folder = own_embeddings / "koclip-mini-mine"
    indexing.build(sources.SceneSource(12, seed=1), mini, folder, batch_size=16, progress=False)
    page(app, "text_to_image")
    app.selectbox(key="t2i_gallery").select(str(folder)).run()
    before = [results.square(result["picture"]) for result in app.session_state["t2i_results"]]
    indexing.build(sources.SceneSource(12, seed=2), mini, folder, batch_size=16, overwrite=True, progress=False)
    app.run()
    shown = app.session_state["t2i_results"]
    now = gallery.Gallery.open(folder)
    assert [result["picture"] for result in shown] == [now.thumbnail(result["index"]) for result in shown]
    assert [results.square(result["picture"]) for result in shown] != before  # same file names, new pictures


def test_text_to_image_example_buttons_fill_the_query(app):
    page(app, "text_to_image")
    app.button(key="t2i_example_노란 별").click().run()
    assert app.text_input(key="t2i_query").value == "노란 별"
    assert not app.exception


# ---------------------------------------------------------------- queries on both text pages


@pytest.mark.parametrize("name, key", [("text_to_patch", "t2p_query"), ("text_to_image", "t2i_query")])
def test_an_empty_query_shows_an_error(app, name, key):
    page(app, name)
    app.text_input(key=key).input("   ").run()
    assert any("empty" in text for text in texts(app.error))
    assert not app.exception


@pytest.mark.parametrize("name, key", [("text_to_patch", "t2p_query"), ("text_to_image", "t2i_query")])
def test_a_10000_character_query_is_cut_with_a_warning(app, name, key):
    page(app, name)
    app.text_input(key=key).input(LONG_QUERY).run()
    assert any("only its beginning was used" in text for text in texts(app.warning))
    assert not app.exception


# ---------------------------------------------------------------- the Space, with the published models


@pytest.fixture
def space_app(space, monkeypatch, tmp_path) -> AppTest:
    """The app as a Space visitor meets it once the published models are in the Hub cache."""
    monkeypatch.setenv("KOCLIP_EMBEDDINGS", str(tmp_path / "embeddings"))
    return start_app()


def run_until(at: AppTest, done, seconds: float = 120) -> AppTest:
    """Rerun the page until `done(at)`, as the page's progress fragment does in a browser."""
    deadline = time.monotonic() + seconds
    while not done(at):
        assert time.monotonic() < deadline, "the page did not get there in time"
        time.sleep(0.5)
        at.run()
    return at


def gallery_options(at: AppTest) -> list[str]:
    boxes = [box for box in at.selectbox if box.key == "t2i_gallery"]
    return boxes[0].options if boxes else []


def test_on_a_space_koclip_base_is_picked_and_ready(space_app):
    assert space_app.selectbox(key="model_name").value == "koclip-base"
    assert "koclip-base — ready" in space_app.selectbox(key="model_name").options
    assert not space_app.exception


@pytest.mark.parametrize("name", ["koclip-base", "koclip-large"])
def test_image_to_text_answers_with_a_published_model(space_app, name):
    space_app.selectbox(key="model_name").select(name).run()
    page(space_app, "image_to_text")
    space_app.selectbox(key="i2t_example").select("Photo: chelsea").run()
    assert not space_app.exception and not space_app.error and not space_app.warning
    ranking = next(text for text in texts(space_app.markdown) if text.startswith("1. "))
    assert ranking.count("%") == 5
    assert any(caption.startswith(name) for caption in texts(space_app.caption))


def test_text_to_patch_answers_with_koclip_base(space_app):
    page(space_app, "text_to_patch")
    space_app.selectbox(key="t2p_example").select("Photo: coffee").run()
    assert not space_app.exception and not space_app.warning
    assert any(text.startswith("Best patch for “커피 잔”") for text in texts(space_app.markdown))


def test_text_to_image_with_koclip_base_searches_the_sample_photos(space_app, tmp_path):
    page(space_app, "text_to_image")
    assert any("sample photos" in text for text in texts(space_app.info))
    run_until(space_app, lambda at: "t2i_results" in at.session_state)
    assert not space_app.exception
    results = space_app.session_state["t2i_results"]
    assert len(results) == 10 and all(result["caption"] for result in results)
    assert (tmp_path / "embeddings" / "koclip-base-samples" / "manifest.json").is_file()

    # More like this: image-image ranking from a result, the result itself left out.
    picked = results[3]["index"]
    space_app.button(key="t2i_like_3").click().run()
    assert space_app.radio(key="t2i_mode").value == "Image"
    similar = space_app.session_state["t2i_results"]
    assert similar and picked not in [result["index"] for result in similar]
    assert any(text.startswith("this image: ") for text in texts(space_app.caption))


def test_text_to_image_builds_a_gallery_from_a_dataset(space_app, monkeypatch, tmp_path):
    # A Hub-style dataset, made here: the Space variables name it as they would name a Hub id.
    import datasets

    pictures = [scene.image for scene in scenes.generate(12, seed=2, size=40)]
    data = datasets.Dataset.from_dict({"image": pictures, "caption": [f"장면 {i}" for i in range(12)]})
    data.cast_column("image", datasets.Image()).save_to_disk(str(tmp_path / "photos"))
    monkeypatch.setenv("KOCLIP_GALLERY_DATASET", str(tmp_path / "photos"))
    monkeypatch.setenv("KOCLIP_GALLERY_SPLIT", "train")
    monkeypatch.setenv("KOCLIP_GALLERY_CAPTION_COLUMN", "caption")
    page(space_app, "text_to_image")
    space_app.button(key="t2i_build_dataset").click().run()
    assert not space_app.exception
    name = "koclip-base-photos-train"
    run_until(space_app, lambda at: any(option.startswith(name) for option in gallery_options(at)))
    option = next(o for o in gallery_options(space_app) if o.startswith(name))
    assert option == f"{name} (12 images)"
    space_app.selectbox(key="t2i_gallery").select(str(tmp_path / "embeddings" / name)).run()
    assert {result["caption"] for result in space_app.session_state["t2i_results"]} <= {f"장면 {i}" for i in range(12)}


def test_a_failed_build_is_retried_by_a_later_visitor(app, monkeypatch, tmp_path, own_embeddings):
    import datasets

    folder = tmp_path / "photos"
    folder.mkdir()  # empty for now: the first build fails
    monkeypatch.setenv("KOCLIP_GALLERY_DATASET", str(folder))
    monkeypatch.setenv("KOCLIP_GALLERY_SPLIT", "train")
    page(app, "text_to_image")
    app.button(key="t2i_build_dataset").click().run()
    run_until(app, lambda at: any("could not be built" in text for text in texts(at.error)))
    assert not app.exception

    pictures = [scene.image for scene in scenes.generate(8, seed=3)]
    datasets.Dataset.from_dict({"image": pictures}).cast_column("image", datasets.Image()).save_to_disk(str(folder))
    later = start_app()
    later.selectbox(key="model_name").select("koclip-mini").run()
    page(later, "text_to_image")
    assert any("could not be built" in text for text in texts(later.error))
    later.button(key="t2i_retry_dataset").click().run()
    name = "koclip-mini-photos-train"
    run_until(later, lambda at: any(option.startswith(name) for option in gallery_options(at)))
    assert (own_embeddings / name / "manifest.json").is_file() and not later.exception


# ---------------------------------------------------------------- words the model cannot read


def test_koclip_mini_names_the_words_it_does_not_know():
    mini = koclip.load("koclip-mini")
    assert mini.unknown_words("빨간 고양이") == ["고양이"]
    assert mini.unknown_words("a red circle") == ["a", "red", "circle"]
    assert mini.unknown_words("초록 사각형 두 개가 있다") == []
    assert not mini.can_read("고양이 고양이") and mini.can_read("고양이 원")


@pytest.mark.parametrize("name, key", [("image_to_text", "i2t_example"), ("text_to_patch", "t2p_example")])
def test_koclip_mini_offers_only_the_examples_it_was_trained_for(app, name, key):
    page(app, name)
    options = app.selectbox(key=key).options
    assert options and all(option.startswith("Generated") for option in options)


def test_image_to_text_gives_no_odds_for_labels_the_model_cannot_read(app):
    page(app, "image_to_text")
    app.text_area(key="i2t_labels").input("고양이, 강아지, 자동차").run()
    assert not any(text.startswith("1. ") for text in texts(app.markdown))
    assert any("does not know" in text and "고양이" in text and "has no answer" in text for text in texts(app.warning))


def test_image_to_text_leaves_out_only_the_unreadable_labels(app):
    page(app, "image_to_text")
    app.text_area(key="i2t_labels").input("파란 삼각형, 고양이, 빨간 원").run()
    ranking = next(text for text in texts(app.markdown) if text.startswith("1. "))
    assert ranking.count("%") == 2 and "고양이" not in ranking
    assert any("left out" in text for text in texts(app.warning))


@pytest.mark.parametrize("name, key", [("text_to_patch", "t2p_query"), ("text_to_image", "t2i_query")])
def test_a_query_of_unknown_words_gets_no_answer(app, name, key):
    page(app, name)
    app.text_input(key=key).input("고양이").run()
    assert any("knows none of the words" in text for text in texts(app.warning))
    assert not any(text.startswith("Best patch") for text in texts(app.markdown))
    assert "“고양이”: " not in " ".join(texts(app.caption))


def test_a_query_with_some_unknown_words_is_answered_with_a_warning(app):
    page(app, "text_to_image")
    app.text_input(key="t2i_query").input("빨간 고양이").run()
    assert any("does not know “고양이”" in text for text in texts(app.warning))
    assert app.session_state["t2i_results"]


# ---------------------------------------------------------------- links and layout


def test_every_file_in_pages_is_a_page_of_the_app():
    listed = set(re.findall(r'st\.Page\("\.\./pages/(\w+)\.py"', MAIN.read_text(encoding="utf-8")))
    assert listed == {path.stem for path in (ROOT / "pages").glob("*.py")}
    assert "common" not in listed


def test_a_link_reproduces_a_search(app):
    page(app, "text_to_image")
    app.text_input(key="t2i_query").input("파란 삼각형").run()
    app.slider(key="t2i_k").set_value(7).run()
    shown = [result["index"] for result in app.session_state["t2i_results"]]
    link = dict(app.query_params)
    assert link["q"] == "파란 삼각형" and link["k"] == "7" and link["model"] == "koclip-mini"
    assert link["gallery"] == "koclip-mini-scenes"

    visitor = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)  # a new session
    visitor.query_params.update(link)
    visitor.run()
    visitor.switch_page(page_path("text_to_image"))
    visitor.query_params.update(link)
    visitor.run()
    assert not visitor.exception
    assert visitor.text_input(key="t2i_query").value == "파란 삼각형"
    assert [result["index"] for result in visitor.session_state["t2i_results"]] == shown


def test_a_refused_query_leaves_no_earlier_query_in_the_link(app):
    page(app, "text_to_image")
    app.text_input(key="t2i_query").input("파란 삼각형").run()
    assert dict(app.query_params)["q"] == "파란 삼각형"
    app.text_input(key="t2i_query").input("고양이").run()  # a word koclip-mini cannot read: no answer
    assert "q" not in dict(app.query_params)


def test_text_to_patch_draws_a_heat_map_with_its_scale(app):
    page(app, "text_to_patch")
    caption = next(text for text in texts(app.caption) if text.startswith("Colour: "))
    assert "softmax at temperature 0.050" in caption and "(dark blue)" in caption and "(yellow)" in caption
    app.slider(key="t2p_temperature").set_value(0.2).run()
    wider = next(text for text in texts(app.caption) if text.startswith("Colour: "))
    low = lambda text: float(text.split(" from ")[1].split("%")[0])  # noqa: E731
    assert low(wider) > low(caption)  # a higher temperature lifts the weakest patch
