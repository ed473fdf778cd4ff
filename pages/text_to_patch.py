"""Text → Patch: cut an image into a grid and show which cell matches a query best."""

from __future__ import annotations

import time
from functools import partial

import streamlit as st

from demo import inputs, models
from demo.heatmap import heatmap
from koclip.patches import MAX_GRID, rank_patches

# Each example board with the cell its query asks for: a different cell each, so that the examples
# show the answer moving.
BOARD_TARGETS = {0: (1, 1), 1: (2, 0), 2: (0, 2)}
PHOTO_QUERIES = {"astronaut": "우주비행사의 얼굴", "coffee": "커피 잔", "chelsea": "고양이의 눈", "rocket": "로켓"}
THUMBNAILS_PER_ROW = 8
SOFTMAX, COSINE = "Softmax over the patches", "Cosine similarity"


def format_score(value: float, percent: bool) -> str:
    return f"{value:.1%}" if percent else f"{value:.3f}"


def board_query(seed: int, cell: tuple[int, int]) -> str:
    """The colour and shape of the object in `cell` of the board: a query with exactly one right cell."""
    target = next(obj for obj in inputs.board(seed).objects if tuple(obj["cell"]) == cell)
    return f"{target['color']} {target['shape']}"


SCENE_EXAMPLES = {
    f"Generated board {seed + 1} (3×3)": inputs.Example(
        lambda seed=seed: inputs.board(seed).image, board_query(seed, cell)
    )
    for seed, cell in BOARD_TARGETS.items()
}
PHOTO_EXAMPLES = {
    f"Photo: {name}": inputs.Example(partial(inputs.photo, name), query) for name, query in PHOTO_QUERIES.items()
}

st.title("Text → Patch")
st.caption("Which part of the image matches the text? The image is cut into a grid and every cell is scored.")
model = models.current_model()
examples = inputs.examples_for(model, SCENE_EXAMPLES, PHOTO_EXAMPLES)

left, right = st.columns([3, 2])
with right:
    image, example = inputs.image_input(examples, key="t2p")
    inputs.follow_example("t2p_query", examples, example)
    query = inputs.query_input(model, "t2p_query")
    rows = st.slider("Rows", 1, MAX_GRID, 3, key="t2p_rows")
    cols = st.slider("Columns", 1, MAX_GRID, 3, key="t2p_cols")
    softmax = (
        st.radio(
            "Patch scores",
            (SOFTMAX, COSINE),
            horizontal=True,
            key="t2p_scores",
            help="Softmax shares 100% among the patches; cosine similarity is each patch's own score.",
        )
        == SOFTMAX
    )
    temperature = st.slider(
        "Softmax temperature",
        0.005,
        0.2,
        0.05,
        step=0.005,
        format="%.3f",
        key="t2p_temperature",
        disabled=not softmax,
        help="Lower is sharper: at the model's own temperature one patch takes almost all. "
        "Higher shows how the other patches compare.",
    )
if image is None or query is None:
    if image is not None:
        left.image(image, width="stretch")
    st.stop()

start = time.perf_counter()
ranking = inputs.answer(model, lambda: rank_patches(model, image, query, rows, cols))
elapsed = time.perf_counter() - start
scores = ranking.softmax(temperature) if softmax else ranking.cosine
scale = f"softmax at temperature {temperature:.3f}" if softmax else "cosine similarity"
best_row, best_col = ranking.cell(ranking.order[0])

with left:
    inputs.warn_if_unfamiliar(model, image)
    heat = heatmap(image, ranking, scores, scale, percent=softmax)
    st.image(heat.figure(), width="stretch")
    st.markdown(f"Best patch for “{inputs.quote(query)}”: **row {best_row + 1}, column {best_col + 1}**")
    st.caption(
        f"Colour: {scale}, from {format_score(heat.low, softmax)} (dark blue) to {format_score(heat.high, softmax)} "
        f"(yellow) · {model.name} · {rows * cols} patches in one batch · {elapsed * 1000:.0f} ms"
    )

st.subheader("Patches, best first")
columns = st.columns(THUMBNAILS_PER_ROW)
for rank, index in enumerate(ranking.order):
    row, col = ranking.cell(index)
    score = format_score(scores[index], softmax)
    with columns[rank % THUMBNAILS_PER_ROW]:
        caption = f"#{rank + 1} · r{row + 1} c{col + 1} · {score}"
        st.image(image.crop(ranking.boxes[index]), caption=caption, width="stretch")
