"""Image → Text: zero-shot classification of one image against labels the user types."""

from __future__ import annotations

import re
import time
from functools import partial

import streamlit as st

from demo import inputs, models
from koclip import DEFAULT_TEMPLATE
from koclip.api import MAX_TEXT_CHARS
from koclip.data import scenes

PAGE_LABELS = 20  # labels the page takes: bars a visitor can read (the library takes up to api.MAX_LABELS)
# Templates without particles, so they read correctly whether or not a label ends in a consonant.
ENSEMBLE = (DEFAULT_TEMPLATE, "{} 사진", "{}의 사진이다.", "{}의 그림", "사진 속의 {}")
PHOTO_LABELS = {
    "astronaut": ["우주비행사", "요리사", "축구 선수", "의사", "가수"],
    "coffee": ["커피", "맥주", "우유", "녹차", "수프"],
    "chelsea": ["고양이", "강아지", "호랑이", "토끼", "곰"],
    "rocket": ["로켓", "비행기", "자동차", "배", "기차"],
}
# Each generated example's own label among near misses that share its colour or shape.
SCENE_LABELS = {
    ("삼각형", "파란"): ["빨간 원", "초록 사각형", "파란 삼각형", "노란 별", "보라 하트"],
    ("원", "빨간"): ["파란 원", "빨간 사각형", "빨간 원", "노란 별", "초록 하트"],
    ("별", "노란"): ["주황 별", "노란 원", "보라 하트", "노란 별", "검은 사각형"],
}
SCENE_EXAMPLES = {
    f"Generated: {color} {shape}": inputs.Example(partial(scenes.single_object, shape, color), "\n".join(labels))
    for (shape, color), labels in SCENE_LABELS.items()
}
PHOTO_EXAMPLES = {
    f"Photo: {name}": inputs.Example(partial(inputs.photo, name), "\n".join(labels))
    for name, labels in PHOTO_LABELS.items()
}


def parse_labels(text: str) -> list[str]:
    """Labels one per line or comma-separated, blanks and repeats dropped."""
    return list(dict.fromkeys(part.strip() for part in re.split(r"[,\n]", text) if part.strip()))


st.title("Image → Text")
st.caption("Zero-shot classification: which of your labels fits the image best?")
model = models.current_model()
examples = inputs.examples_for(model, SCENE_EXAMPLES, PHOTO_EXAMPLES)

left, right = st.columns([2, 3])
with left:
    image, example = inputs.image_input(examples, key="i2t")
    if image is not None:
        st.image(image, width="stretch")
with right:
    inputs.follow_example("i2t_labels", examples, example)
    labels_label = f"Labels (1 to {PAGE_LABELS}, one per line or comma-separated)"
    labels = parse_labels(st.text_area(labels_label, key="i2t_labels", height=160, max_chars=MAX_TEXT_CHARS))
    use_template = st.toggle(f"Put each label in the template “{DEFAULT_TEMPLATE}”", value=True, key="i2t_template")
    if not use_template:
        st.session_state["i2t_ensemble"] = False  # no templates, no ensemble: the box must not stay ticked
    ensemble = st.checkbox(
        f"Prompt ensemble: average {len(ENSEMBLE)} templates", key="i2t_ensemble", disabled=not use_template
    )
    if image is None:
        st.stop()
    if not labels:
        st.error("No labels: enter at least one, one per line or separated by commas.")
        st.stop()
    if len(labels) > PAGE_LABELS:
        st.error(f"{len(labels)} labels given; the limit is {PAGE_LABELS}.")
        st.stop()

    # A label made only of words the vocabulary lacks embeds as [UNK]: its score would mean nothing.
    unreadable = [label for label in labels if not model.can_read(label)]
    if unreadable:
        st.warning(
            f"{model.name} does not know {inputs.listed(unreadable)}, so "
            + (
                "it has no answer. "
                if len(unreadable) == len(labels)
                else "it was left out. "
                if len(unreadable) == 1
                else "they were left out. "
            )
            + inputs.vocabulary_hint(model)
        )
        labels = [label for label in labels if label not in unreadable]
        if not labels:
            st.stop()

    template = (list(ENSEMBLE) if ensemble else DEFAULT_TEMPLATE) if use_template else None
    start = time.perf_counter()
    ranking = inputs.answer(model, lambda: model.classify(image, labels, template))
    elapsed = time.perf_counter() - start

    inputs.warn_if_unfamiliar(model, image)
    for label, prob in ranking:  # bars drawn by Streamlit itself: no charting library on the first answer's path
        st.progress(prob, text=inputs.quote(label))
    lines = [f"{rank}. {inputs.quote(label)} — {prob:.1%}" for rank, (label, prob) in enumerate(ranking, 1)]
    st.markdown("\n".join(lines))
    st.caption(f"{model.name} · {elapsed * 1000:.0f} ms")
