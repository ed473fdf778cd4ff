"""The KoCLIP demo: `streamlit run app.py`. Navigation and the model picker; each demo is a file in pages/."""

import streamlit as st

from pages import common

st.set_page_config(page_title="KoCLIP", page_icon="🔎", layout="wide")
navigation = st.navigation(
    [
        st.Page("pages/intro.py", title="Intro", icon="🏠", default=True),
        st.Page("pages/image_to_text.py", title="Image → Text", icon="🏷️"),
        st.Page("pages/text_to_image.py", title="Text → Image", icon="🔎"),
        st.Page("pages/text_to_patch.py", title="Text → Patch", icon="🧩"),
    ]
)
common.model_picker()
navigation.run()
