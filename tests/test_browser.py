"""The demo in a real browser: a headless Streamlit server driven by Chromium through Playwright.

Every page renders, answers one query, shows its images and no exception: with koclip-mini, and
with koclip-base from a Hugging Face cache laid as on a Space (tests/fake_hub.py).
Screenshots land in tests/artifacts/ for a person to look at.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import quote

import pytest
import servers
from PIL import Image

from koclip.data import scenes

sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright (pip install playwright)")

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 240_000  # the first answer includes importing jax and compiling the model on a busy CPU

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian chromium at /usr/bin/chromium (apt-get install chromium fonts-noto-cjk)",
    ),
]


@contextlib.contextmanager
def serve(env: dict[str, str], log_name: str):
    """A headless Streamlit server of the app, its log in tests/artifacts/."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with servers.streamlit_app(env, ARTIFACTS / log_name) as server:
        yield server


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@contextlib.contextmanager
def browse(browser, url: str):
    # Tall, because Streamlit scrolls inside its main block and screenshots show only the viewport.
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    try:
        page.set_default_timeout(WAIT_MS)
        page.goto(url)
        yield page
    finally:
        page.close()


@pytest.fixture(scope="module")
def browser_page(browser):
    """The app with no published model at hand: koclip-mini."""
    with serve({}, "server.log") as server, browse(browser, server.url) as page:
        yield page


@pytest.fixture(scope="module")
def space_page(browser, hub_cache, tmp_path_factory):
    """The app on a Space that has the published models in its Hub cache: koclip-base."""
    env = {
        "HF_HUB_CACHE": str(hub_cache[0]),
        "KOCLIP_EMBEDDINGS": str(tmp_path_factory.mktemp("embeddings")),
        "PYTHONPROFILEIMPORTTIME": "1",
    }  # the log names every module the server imports
    with serve(env, "space-server.log") as server, browse(browser, server.url) as page:
        yield page


def open_page(page, title: str) -> None:
    page.locator('[data-testid="stSidebarNav"]').get_by_text(title, exact=True).click()
    page.get_by_role("heading", name=title).wait_for()
    settle(page)  # so that the inputs typed into next belong to this page, not the one before


def settle(page) -> None:
    """Wait until the script run has finished and nothing on the page is left over from an earlier run."""
    page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]').wait_for()
    page.wait_for_function("!document.querySelector('[data-stale=\"true\"]')")


def finish(page, name: str, images: int | None = None) -> None:
    """Check that the settled page shows no exception and that its images (`images` of them, if given)
    appear and load, then screenshot it. Images appear a moment after the run ends, and until they have
    loaded a page can still show the previous answer's pictures."""
    settle(page)
    assert page.locator('[data-testid="stException"]').count() == 0
    shown = page.locator('[data-testid="stMain"] img')
    if images is None:
        shown.first.wait_for(timeout=20_000)
    else:
        sync_api.expect(shown).to_have_count(images, timeout=20_000)
    for i in range(shown.count()):
        shown.nth(i).scroll_into_view_if_needed()  # images load lazily, once scrolled into view
    page.wait_for_function(
        "[...document.querySelectorAll('[data-testid=\"stMain\"] img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    page.locator('[data-testid="stMain"]').evaluate("main => main.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def submit(page, label: str, text: str) -> None:
    """Type into a text box and commit it, as a user does with Enter (Ctrl+Enter in a text area)."""
    box = page.get_by_label(label)
    box.fill(text)
    box.press("Control+Enter" if box.evaluate("e => e.tagName") == "TEXTAREA" else "Enter")


def check_intro(page, shot: str, model_choice: str) -> None:
    heading = (ROOT / "intro.md").read_text(encoding="utf-8").splitlines()[0].lstrip("# ").strip()
    page.get_by_role("heading", name=heading).first.wait_for()
    settle(page)
    page.screenshot(path=str(ARTIFACTS / shot))
    assert page.locator('[data-testid="stException"]').count() == 0
    assert page.get_by_role("combobox", name="Model").input_value() == model_choice


def classify(page, labels: str, shot: str):
    """Enter three labels on Image → Text and wait for the drawn answer; returns the ranked list items."""
    open_page(page, "Image → Text")
    submit(page, "Labels (1 to 20, one per line or comma-separated)", labels)
    page.wait_for_function("document.querySelectorAll('[data-testid=\"stMarkdownContainer\"] ol li').length === 3")
    assert page.locator('[data-testid="stProgress"]').count() == 3  # a bar for each label
    finish(page, shot)
    return page.locator('[data-testid="stMarkdownContainer"] ol li')


def test_intro(browser_page):
    check_intro(browser_page, "intro.png", "koclip-mini — ready")


def test_image_to_text(browser_page):
    answers = classify(browser_page, "노란 별, 파란 삼각형, 빨간 원", "image_to_text")
    assert answers.first.inner_text().startswith("파란 삼각형 — ")


def test_a_photo_shown_to_koclip_mini_gets_a_warning_above_the_answer(browser_page):
    import skimage.data

    page = browser_page
    open_page(page, "Image → Text")
    page.get_by_text("Upload", exact=True).click()
    settle(page)
    photo = ARTIFACTS / "upload_astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(photo)
    page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(photo))
    submit(page, "Labels (1 to 20, one per line or comma-separated)", "빨간 원, 파란 삼각형, 노란 별")
    page.wait_for_function("document.querySelectorAll('[data-testid=\"stMarkdownContainer\"] ol li').length === 3")
    warning = page.get_by_text("does not look like the generated scenes koclip-mini was trained on")
    warning.wait_for()
    finish(page, "image_to_text_photo_warning")
    photo.unlink()


def test_text_to_patch(browser_page):
    page = browser_page
    open_page(page, "Text → Patch")
    target = scenes.composite(0).objects[1]
    row, col = target["cell"]
    query = f"{target['color']} {target['shape']}"
    submit(page, "Query", query)
    answer = page.get_by_text(f"Best patch for “{query}”")
    answer.wait_for()
    finish(page, "text_to_patch")
    assert f"row {row + 1}, column {col + 1}" in answer.inner_text()


def test_text_to_image(browser_page):
    page = browser_page
    open_page(page, "Text → Image")
    submit(page, "Query", "노란 별")  # not the page's first query, so the answer below is new
    summary = page.get_by_text("“노란 별”: ")
    summary.wait_for()
    shown = int(summary.inner_text().split(": ")[1].split()[0])
    assert shown >= 1
    finish(page, "text_to_image", images=shown)

    caption = page.locator('[data-testid="stMain"] div[title]').first.get_attribute("title", timeout=20_000)
    page.get_by_role("button", name="Enlarge").first.click(timeout=20_000)
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("cosine similarity").wait_for(timeout=60_000)
    assert dialog.get_by_text(caption, exact=True).count() == 1  # the whole caption, which the card cuts
    page.wait_for_function(
        "[...document.querySelectorAll('[role=\"dialog\"] img')].some(i => i.complete && i.naturalWidth > 0)"
    )
    page.screenshot(path=str(ARTIFACTS / "text_to_image_enlarged.png"))
    page.keyboard.press("Escape")


def test_a_shared_link_opens_the_same_search(browser_page, browser):
    base = browser_page.url.split("/")[:3]
    link = "/".join(base) + "/text_to_image?model=koclip-mini&gallery=koclip-mini-scenes&k=4&q=" + quote("파란 삼각형")
    with browse(browser, link) as page:
        summary = page.get_by_text("“파란 삼각형”: ")
        summary.wait_for()
        finish(page, "text_to_image_from_link", images=4)
        assert summary.inner_text().startswith("“파란 삼각형”: 4 best of 2,000")


def test_words_the_model_cannot_read_get_no_answer(browser_page):
    page = browser_page
    open_page(page, "Text → Patch")
    submit(page, "Query", "고양이")
    page.get_by_text("knows none of the words").wait_for()
    settle(page)
    page.screenshot(path=str(ARTIFACTS / "text_to_patch_unknown_words.png"))
    assert page.get_by_text("Best patch for").count() == 0


# ---------------------------------------------------------------- koclip-base, as on a Space


def test_space_intro(space_page):
    check_intro(space_page, "space_intro.png", "koclip-base — ready")


def test_space_image_to_text(space_page):
    answers = classify(space_page, "고양이, 강아지, 자동차", "space_image_to_text")
    assert answers.count() == 3 and space_page.get_by_text("koclip-base · ").count() == 1


def test_space_text_to_patch(space_page):
    page = space_page
    open_page(page, "Text → Patch")  # a photo model starts on a photo and its query
    page.get_by_text("Best patch for “우주비행사의 얼굴”").wait_for()
    finish(page, "space_text_to_patch")


def test_space_text_to_image_encodes_the_sample_photos_then_answers(space_page):
    page = space_page
    open_page(page, "Text → Image")
    summary = page.get_by_text("“고양이”: ")
    summary.wait_for()  # the sample photos are encoded first, with a progress bar
    shown = int(summary.inner_text().split(": ")[1].split()[0])
    finish(page, "space_text_to_image", images=shown)
    assert shown == 10 and page.get_by_role("button", name="More like this").count() == shown
    page.get_by_role("button", name="More like this").first.click()
    page.get_by_text("this image: ").wait_for()
    finish(page, "space_more_like_this")


def test_the_space_server_imports_neither_transformers_nor_pytorch(space_page):
    # A Space installs neither (requirements.txt); every page above has answered on this server.
    lines = (ARTIFACTS / "space-server.log").read_text(errors="replace").splitlines()
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in lines if line.startswith("import time:")}
    assert "koclip" in imported and "jax" in imported
    assert not imported & {"transformers", "torch"}
