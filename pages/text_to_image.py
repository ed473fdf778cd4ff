"""Text → Image: search a precomputed gallery of image embeddings with a Korean query."""

from __future__ import annotations

import time

import streamlit as st

from koclip import gallery
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
        f"There is no gallery made with **{model.name}** in `{GALLERY_ROOT.name}/`. "
        "Build one from a folder of images, then reload this page:"
    )
    st.code(f"python -m koclip index --model {model.name} --images DIR --out embeddings/NAME", language="bash")
    st.stop()

chosen = st.selectbox("Gallery", paths, format_func=lambda path: path.name, key="t2i_gallery")
collection = open_gallery(str(chosen))
st.caption(f"{collection.manifest['count']} images, embedded with {collection.manifest['model']}")

st.write("Examples:")
for column, example in zip(st.columns(len(EXAMPLE_QUERIES)), EXAMPLE_QUERIES, strict=True):
    column.button(example, on_click=use_query, args=(example,), key=f"t2i_example_{example}", width="stretch")
st.session_state.setdefault("t2i_query", EXAMPLE_QUERIES[0])
query = common.query_input(model, "t2i_query")
k = st.slider("Top k", 1, 20, 10, key="t2i_k")
if query is None:
    st.stop()

start = time.perf_counter()
hits = gallery.search(model, collection, query, k)
elapsed = time.perf_counter() - start
st.session_state["t2i_hits"] = hits
st.caption(f"“{common.quote(query)}”: {len(hits)} best of {collection.manifest['count']} · {elapsed * 1000:.0f} ms")

columns = st.columns(GRID_COLUMNS)
for rank, hit in enumerate(hits):
    with columns[rank % GRID_COLUMNS]:
        st.image(str(hit.thumbnail), width="stretch")
        st.caption(f"#{rank + 1} · {hit.score:.3f}" + (f" · {hit.caption}" if hit.caption else ""))
