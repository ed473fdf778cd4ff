"""Text → Patch: cut an image into a grid and show which cell matches a query best."""

from __future__ import annotations

import time
from functools import partial

import streamlit as st

from koclip import scenes
from koclip.patches import MAX_GRID, heatmap_overlay, rank_patches
from pages import common

BOARD_SEEDS = (0, 1, 2)
PHOTO_QUERIES = {"astronaut": "우주비행사의 얼굴", "coffee": "커피 잔", "chelsea": "고양이의 눈", "rocket": "로켓"}
THUMBNAILS_PER_ROW = 8


@st.cache_resource(show_spinner=False)
def board(seed: int) -> scenes.Scene:
    return scenes.composite(seed)


def board_query(seed: int) -> str:
    """The colour and shape of the board's first object: a query with exactly one right cell."""
    first = board(seed).objects[0]
    return f"{first['color']} {first['shape']}"


SCENE_EXAMPLES = {
    f"Generated board {seed + 1} (3×3)": common.Example(lambda seed=seed: board(seed).image, board_query(seed))
    for seed in BOARD_SEEDS
}
PHOTO_EXAMPLES = {
    f"Photo: {name}": common.Example(partial(common.photo, name), query) for name, query in PHOTO_QUERIES.items()
}

st.title("Text → Patch")
st.caption("Which part of the image matches the text? The image is cut into a grid and every cell is scored.")
model = common.current_model()
examples = common.examples_for(model, SCENE_EXAMPLES, PHOTO_EXAMPLES)

left, right = st.columns([3, 2])
with right:
    image, example = common.image_input(examples, key="t2p")
    common.follow_example("t2p_query", examples, example)
    query = common.query_input(model, "t2p_query")
    rows = st.slider("Rows", 1, MAX_GRID, 3, key="t2p_rows")
    cols = st.slider("Columns", 1, MAX_GRID, 3, key="t2p_cols")
    softmax = st.radio(
        "Patch scores", ("Softmax over the patches", "Raw cosine similarity"), horizontal=True, key="t2p_scores"
    ).startswith("Softmax")
if image is None or query is None:
    st.stop()

start = time.perf_counter()
ranking = common.answer(lambda: rank_patches(model, image, query, rows, cols))
elapsed = time.perf_counter() - start
scores = ranking.probs if softmax else ranking.cosine
best_row, best_col = ranking.cell(ranking.order[0])

with left:
    st.image(heatmap_overlay(image, ranking, scores), width="stretch")
    st.markdown(f"Best patch for “{common.quote(query)}”: **row {best_row + 1}, column {best_col + 1}**")
    st.caption(f"{model.name} · {rows * cols} patches in one batch · {elapsed * 1000:.0f} ms")

st.subheader("Patches, best first")
columns = st.columns(THUMBNAILS_PER_ROW)
for rank, index in enumerate(ranking.order):
    row, col = ranking.cell(index)
    score = f"{scores[index]:.1%}" if softmax else f"{scores[index]:.3f}"
    with columns[rank % THUMBNAILS_PER_ROW]:
        caption = f"#{rank + 1} · r{row + 1} c{col + 1} · {score}"
        st.image(image.crop(ranking.boxes[index]), caption=caption, width="stretch")
