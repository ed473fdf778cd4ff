"""Inputs the demo pages share: an image (example, upload or URL), labels and queries.

Each input is checked before any work: what cannot be used is explained, and the page stops.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import BinaryIO

import skimage.data
import streamlit as st
from PIL import Image

import koclip
from demo import models
from koclip import domain, webimage
from koclip.api import MAX_TEXT_CHARS, word_list
from koclip.data import scenes
from koclip.errors import KoCLIPError

MAX_URL_CHARS = 2048  # what browsers and servers commonly accept

# ---------------------------------------------------------------- images


@st.cache_data(show_spinner=False)
def photo(name: str) -> Image.Image:
    """A scikit-image sample photo (astronaut, coffee, chelsea, rocket): shipped with it, no download."""
    return Image.fromarray(getattr(skimage.data, name)())


@st.cache_resource(show_spinner=False)
def board(seed: int) -> scenes.Scene:
    """Generated board number `seed`: a grid of scenes, one object in each cell (scenes.composite)."""
    return scenes.composite(seed)


@st.cache_data(show_spinner=False, ttl=600, max_entries=32)  # reruns must not fetch the URL again
def _web_image(url: str) -> Image.Image:
    return webimage.fetch_image(url)


def _reported(load: Callable[[], Image.Image]) -> Image.Image | None:
    try:
        return load()
    except KoCLIPError as exc:
        st.error(str(exc))
        return None


def answer(model: koclip.KoCLIP, work: Callable[[], object]):
    """What `work` returns, with a spinner saying what it waits for; when the input cannot be answered,
    its message and the end of the run."""
    first = not models.server_models().answered(model.name)
    waiting = (
        f"Computing the first answer of {model.name} on this server: it compiles the model first, which "
        "takes seconds, up to a minute on a busy machine. Later answers come at once…"
        if first and model.backend.compiles
        else "Computing…"
    )
    try:
        with st.spinner(waiting, show_time=first):
            result = work()
    except KoCLIPError as exc:
        st.error(str(exc))
        st.stop()
    models.server_models().mark_answered(model.name)
    return result


def open_upload(file: BinaryIO) -> Image.Image | None:
    """The uploaded image, or None after showing why it cannot be used."""
    return _reported(lambda: koclip.open_image(file))


def open_url(url: str) -> Image.Image | None:
    """The image at a public http(s) URL, or None after showing why it cannot be used."""
    with st.spinner("Fetching the image…"):
        return _reported(lambda: _web_image(url))


@dataclasses.dataclass(frozen=True)
class Example:
    load: Callable[[], Image.Image]
    text: str  # what the page's text box starts with for this image: labels or a query


def warn_if_unfamiliar(model: koclip.KoCLIP, image: Image.Image) -> None:
    """A warning above the answer when the image is unlike anything the model was trained on."""
    if not domain.knows_images_like(model, image):
        st.warning(domain.warning(model), icon=":material/help:")


def examples_for(model: koclip.KoCLIP, scenes: dict[str, Example], photos: dict[str, Example]) -> dict[str, Example]:
    """The examples the model can answer: photos first for a model trained on photos, else scenes only."""
    return photos | scenes if domain.trained_on_photos(model) else scenes


def image_input(examples: Mapping[str, Example], key: str) -> tuple[Image.Image | None, str | None]:
    """An image from an example, an upload or a URL, and the example's name when it is one."""
    source = st.radio("Image source", ("Example", "Upload", "URL"), horizontal=True, key=f"{key}_source")
    if source == "Example":
        name = st.selectbox("Example", list(examples), key=f"{key}_example")
        return examples[name].load(), name
    if source == "Upload":
        upload = st.file_uploader("Image (jpg, png, webp)", type=["jpg", "jpeg", "png", "webp"], key=f"{key}_upload")
        return (open_upload(upload) if upload else None), None
    url = st.text_input("Image URL (http or https)", key=f"{key}_url", max_chars=MAX_URL_CHARS).strip()
    return (open_url(url) if url else None), None


# ---------------------------------------------------------------- text


def follow_example(key: str, examples: Mapping[str, Example], example: str | None) -> None:
    """Put the example's text into widget `key` when the example changes, or the first example's on first show."""
    marker = f"{key}_for"
    if key not in st.session_state or (example is not None and st.session_state.get(marker) != example):
        st.session_state[key] = examples[example or next(iter(examples))].text
        st.session_state[marker] = example


def query_input(model: koclip.KoCLIP, key: str) -> str | None:
    """The query typed into widget `key`; None after an error when it is empty."""
    query = st.text_input("Query", key=key, max_chars=MAX_TEXT_CHARS).strip()
    if not query:
        st.error("The query is empty: type what to look for, for example 빨간 원.")
        return None
    if model.is_truncated(query):
        st.warning(
            f"The query is longer than the {model.max_text_length} tokens {model.name} reads: "
            "only its beginning was used."
        )
    verdict = model.verdict(query)
    if not verdict.answerable:
        st.warning(
            f"{model.name} knows none of the words in “{quote(query)}”, so it has no answer. {vocabulary_hint(model)}"
        )
        return None
    if verdict.unknown:
        st.warning(
            f"{model.name} does not know {listed(verdict.unknown)}: that part of the query is ignored. "
            + vocabulary_hint(model)
        )
    return query


def vocabulary_hint(model: koclip.KoCLIP) -> str:
    return f"It knows {model.vocabulary}." if model.vocabulary else ""


def listed(words: list[str]) -> str:
    """User words for a markdown message: each cut short and escaped."""
    return word_list([quote(word, 30) for word in words])


def quote(text: str, limit: int = 60) -> str:
    """User text made safe to show inside markdown: cut to `limit` characters, markup escaped."""
    short = text if len(text) <= limit else text[:limit] + "…"
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", short)
