"""Text → Image: search a precomputed gallery of image embeddings with a Korean query."""

from __future__ import annotations

import time

import streamlit as st

from koclip import gallery
from koclip.errors import KoCLIPError
from pages import common

GALLERY_ROOT = common.ROOT / "embeddings"
EXAMPLE_QUERIES = ("빨간 원", "파란 삼각형", "노란 별", "초록 사각형 두 개가 있다", "왼쪽에 보라 하트가 있다")
GRID_COLUMNS = 5


@st.cache_resource(show_spinner="Opening the gallery…")
def open_gallery(path: str) -> gallery.Gallery:
    return gallery.Gallery.open(path)


def use_query(query: str) -> None:
    st.session_state["t2i_query"] = query


st.title("Text → Image")
st.caption("Retrieval: the images of a gallery whose embeddings lie closest to the query's.")
model = common.current_model()

paths = gallery.list_galleries(GALLERY_ROOT, model.name)
if not paths:
    st.warning(
        f"There is no gallery made with **{model.name}** in `{GALLERY_ROOT.name}/`. Build one from a folder "
        "of images (or from generated scenes of shapes: write `scenes` for the folder), then reload this page:"
    )
    st.code(f"python -m koclip index IMAGE_FOLDER --model {model.name} --out embeddings/NAME", language="bash")
    st.stop()

chosen = st.selectbox("Gallery", paths, format_func=lambda path: path.name, key="t2i_gallery")
st.write("Examples:")
for column, example in zip(st.columns(len(EXAMPLE_QUERIES)), EXAMPLE_QUERIES, strict=True):
    column.button(example, on_click=use_query, args=(example,), key=f"t2i_example_{example}", width="stretch")
st.session_state.setdefault("t2i_query", EXAMPLE_QUERIES[0])
query = common.query_input(model, "t2i_query")
k = st.slider("Top k", 1, 20, 10, key="t2i_k")
if query is None:
    st.stop()

try:
    collection = open_gallery(str(chosen))
    start = time.perf_counter()
    hits = gallery.search(model, collection, query, k)
    elapsed = time.perf_counter() - start
    results = [collection.item(hit.index) | {"score": hit.score} for hit in hits]
except KoCLIPError as exc:  # a damaged or unfinished gallery
    st.error(str(exc))
    st.stop()
st.session_state["t2i_results"] = results
st.caption(f"“{common.quote(query)}”: {len(results)} best of {len(collection)} · {elapsed * 1000:.0f} ms")

columns = st.columns(GRID_COLUMNS)
for rank, result in enumerate(results):
    caption = f"#{rank + 1} · {result['score']:.3f}"
    if result.get("caption"):
        caption += f" · {result['caption']}"
    columns[rank % GRID_COLUMNS].image(str(result["thumbnail"]), caption=caption, width="stretch")
