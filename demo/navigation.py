"""The demo's main script, run for every page view: navigation and the model picker; each page is a
file in pages/. `app.py` serves it."""

import time
from pathlib import Path

import streamlit as st

from demo import models, runlog

# A file, not a material icon or an emoji, which the browser would fetch from Google's font servers.
st.set_page_config(page_title="KoCLIP", page_icon=str(Path(__file__).with_name("icon.png")), layout="wide")
navigation = st.navigation(
    [
        st.Page("../pages/intro.py", title="Intro", icon=":material/home:", default=True),
        st.Page("../pages/image_to_text.py", title="Image → Text", icon=":material/label:"),
        st.Page("../pages/text_to_image.py", title="Text → Image", icon=":material/image_search:"),
        st.Page("../pages/text_to_patch.py", title="Text → Patch", icon=":material/grid_view:"),
    ]
)
models.model_picker()
models.preload()  # on any page, so the model is ready, or nearly, when a demo asks for it
began = time.perf_counter()
try:
    navigation.run()
finally:  # st.stop() and reruns end a run by raising
    runlog.record(navigation.url_path or "intro", time.perf_counter() - began)
