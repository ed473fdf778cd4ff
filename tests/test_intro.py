"""The Intro page: intro.md's text, with each of its figures shown as an image."""

import re
from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
FIGURE = re.compile(r"^!\[(.+)\]\((figures/[\w-]+\.png)\)$", re.MULTILINE)
MAX_BYTES = 150 * 1024


def test_every_figure_of_intro_md_is_committed_and_small():
    figures = FIGURE.findall((ROOT / "intro.md").read_text(encoding="utf-8"))
    assert len(figures) >= 4
    for _, path in figures:
        assert 0 < (ROOT / path).stat().st_size < MAX_BYTES, path


def test_the_page_shows_the_figures_as_images_between_the_text():
    at = AppTest.from_file(str(ROOT / "pages" / "intro.py")).run()
    assert not at.exception
    captions = [caption for caption, _ in FIGURE.findall((ROOT / "intro.md").read_text(encoding="utf-8"))]
    assert [image.captions[0] for image in at.get("image")] == captions
    text = "".join(block.value for block in at.markdown)
    assert "![" not in text and "## What this project adds" in text and "## References" in text
