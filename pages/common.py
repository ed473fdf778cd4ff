"""Widgets the demo pages share: the model picker, image input and query input.

Pages stay thin: they lay out inputs and outputs and call koclip; everything two pages need is here.
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections.abc import Callable, Mapping
from typing import BinaryIO

import requests
import skimage.data
import streamlit as st
from huggingface_hub import constants
from PIL import Image

import koclip
from koclip import hub, registry, settings, webimage
from koclip.errors import KoCLIPError

ROOT = settings.APP_ROOT
MODEL_KEY = "model_name"
READY, DOWNLOAD, OFFLINE, MISSING = "ready", "will download", "unavailable offline", "not installed"
MINI_NOTICE = (
    "**koclip-mini** is a tiny model trained on generated scenes of coloured shapes, not on photos. "
    "Try shapes and colours, like **빨간 원** or **파란 삼각형**; on photos its answers mean little."
)


# ---------------------------------------------------------------- models


@st.cache_resource(show_spinner=False)
def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the Hugging Face Hub answers; checked once per process, never waiting over `timeout`."""
    answered: list[bool] = []

    def probe() -> None:
        try:
            requests.head(constants.ENDPOINT, timeout=timeout)
            answered.append(True)
        except requests.RequestException:
            pass

    # A thread bounds the wait: name resolution ignores the request timeout and can hang for long.
    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return bool(answered)


def availability(name: str) -> str:
    """READY (shipped or in the cache), DOWNLOAD (the Hub is reachable), OFFLINE or MISSING."""
    info = registry.MODELS[name]
    if info.path is not None:
        return READY if (info.path / "config.json").is_file() else MISSING
    if hub.is_cached(info.repo_id):
        return READY
    return OFFLINE if hub.offline() or not hub_reachable() else DOWNLOAD


def _describe(name: str) -> str:
    status = availability(name)
    if status == DOWNLOAD:
        return f"{name} — will download ({registry.MODELS[name].size_note})"
    return f"{name} — {status}"


def model_picker() -> None:
    """The sidebar's model choice, stored under MODEL_KEY: the operator's KOCLIP_MODEL, else
    koclip-base when it can be had, else koclip-mini."""
    chosen = settings.default_model()
    base = availability("koclip-base") in (READY, DOWNLOAD)
    default = chosen if chosen in registry.DEMO_MODELS else "koclip-base" if base else "koclip-mini"
    name = st.sidebar.selectbox(
        "Model", registry.DEMO_MODELS, index=registry.DEMO_MODELS.index(default), format_func=_describe, key=MODEL_KEY
    )
    st.sidebar.caption(registry.MODELS[name].description)


@st.cache_resource(show_spinner=False, max_entries=2)  # two full-size models already take ~6 GiB
def _load(name: str) -> koclip.KoCLIP:
    return koclip.load(name)


def current_model() -> koclip.KoCLIP:
    """The model picked in the sidebar, loaded once per process; on failure, an error and a stop."""
    name = st.session_state.get(MODEL_KEY, "koclip-mini")
    if name == "koclip-mini":
        st.info(MINI_NOTICE, icon=":material/info:")
    doing = "Downloading and loading" if availability(name) == DOWNLOAD else "Loading"
    try:
        with st.spinner(f"{doing} {name}; this happens once per server…"):
            return _load(name)
    except KoCLIPError as exc:
        st.error(str(exc))
        st.info("Pick **koclip-mini** in the sidebar: it ships with koclip and works offline.")
        st.stop()


# ---------------------------------------------------------------- images


@st.cache_data(show_spinner=False)
def photo(name: str) -> Image.Image:
    """A scikit-image sample photo (astronaut, coffee, chelsea, rocket): shipped with it, no download."""
    return Image.fromarray(getattr(skimage.data, name)())


@st.cache_data(show_spinner=False, ttl=600, max_entries=32)  # reruns must not fetch the URL again
def _web_image(url: str) -> Image.Image:
    return webimage.fetch_image(url)


def _reported(load: Callable[[], Image.Image]) -> Image.Image | None:
    try:
        return load()
    except KoCLIPError as exc:
        st.error(str(exc))
        return None


def answer(work: Callable[[], object]):
    """What `work` returns; when the input cannot be answered, its message and the end of the run."""
    try:
        return work()
    except KoCLIPError as exc:
        st.error(str(exc))
        st.stop()


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


def examples_for(model: koclip.KoCLIP, scenes: dict[str, Example], photos: dict[str, Example]) -> dict[str, Example]:
    """All examples, those the model was trained for first: koclip-mini knows generated scenes, the rest photos."""
    return scenes | photos if model.name == "koclip-mini" else photos | scenes


def image_input(examples: Mapping[str, Example], key: str) -> tuple[Image.Image | None, str | None]:
    """An image from an example, an upload or a URL, and the example's name when it is one."""
    source = st.radio("Image source", ("Example", "Upload", "URL"), horizontal=True, key=f"{key}_source")
    if source == "Example":
        name = st.selectbox("Example", list(examples), key=f"{key}_example")
        return examples[name].load(), name
    if source == "Upload":
        upload = st.file_uploader("Image (jpg, png, webp)", type=["jpg", "jpeg", "png", "webp"], key=f"{key}_upload")
        return (open_upload(upload) if upload else None), None
    url = st.text_input("Image URL (http or https)", key=f"{key}_url").strip()
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
    query = st.text_input("Query", key=key).strip()
    if not query:
        st.error("The query is empty: type what to look for, for example 빨간 원.")
        return None
    if model.is_truncated(query):
        st.warning(
            f"The query is longer than the {model.max_text_length} tokens {model.name} reads: "
            "only its beginning was used."
        )
    unknown = model.unknown_words(query)
    if unknown and not model.can_read(query):
        st.warning(f"{model.name} knows none of the words in “{quote(query)}”, so it has no answer. {vocabulary_hint(model)}")
        return None
    if unknown:
        st.warning(f"{model.name} does not know {listed(unknown)}: that part of the query is ignored. {vocabulary_hint(model)}")
    return query


def vocabulary_hint(model: koclip.KoCLIP) -> str:
    return "It knows shapes and colours only, such as 빨간 원 or 파란 삼각형." if model.name == "koclip-mini" else ""


def listed(words: list[str], limit: int = 8) -> str:
    shown = ", ".join(f"“{quote(word, 30)}”" for word in words[:limit])
    return shown + (f" and {len(words) - limit} more" if len(words) > limit else "")


def quote(text: str, limit: int = 60) -> str:
    """User text made safe to show inside markdown: cut to `limit` characters, markup escaped."""
    short = text if len(text) <= limit else text[:limit] + "…"
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", short)
