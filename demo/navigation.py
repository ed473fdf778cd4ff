"""The demo's main script, run for every page view: navigation and the model picker; each page is a
file in pages/. `app.py` serves it."""

import streamlit as st

from demo import models

st.set_page_config(page_title="KoCLIP", page_icon=":material/image_search:", layout="wide")
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
navigation.run()
