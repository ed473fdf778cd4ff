"""Intro: what KoCLIP is and what each demo shows (the text lives in intro.md).

st.markdown cannot show local images, so each image line of intro.md, `![caption](figures/x.png)`,
is shown with st.image instead.
"""

import re

import streamlit as st

from demo.settings import APP_ROOT

IMAGE_LINE = re.compile(r"^!\[(.*)\]\((.+)\)[ \t]*$", re.MULTILINE)

# With two groups, split gives: text, caption, path, text, caption, path, ..., text.
parts = IMAGE_LINE.split((APP_ROOT / "intro.md").read_text(encoding="utf-8"))
for text, caption, path in zip(parts[::3], parts[1::3] + [None], parts[2::3] + [None]):
    st.markdown(text)
    if path is not None:
        st.image(str(APP_ROOT / path), caption=caption)
