"""The KoCLIP demo: `streamlit run app.py`. Navigation and the model picker; each demo is a file in pages/."""

import os

# The app runs the Flax backend only: without torch, transformers imports in a third of the time.
os.environ.setdefault("USE_TORCH", "0")

import streamlit as st  # noqa: E402

from demo import models  # noqa: E402

st.set_page_config(page_title="KoCLIP", page_icon=":material/image_search:", layout="wide")
navigation = st.navigation(
    [
        st.Page("pages/intro.py", title="Intro", icon=":material/home:", default=True),
        st.Page("pages/image_to_text.py", title="Image → Text", icon=":material/label:"),
        st.Page("pages/text_to_image.py", title="Text → Image", icon=":material/image_search:"),
        st.Page("pages/text_to_patch.py", title="Text → Patch", icon=":material/grid_view:"),
    ]
)
models.model_picker()
models.preload()  # on any page, so the model is ready, or nearly, when a demo asks for it
navigation.run()
