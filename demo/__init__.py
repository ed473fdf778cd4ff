"""The Streamlit demo's shared parts; the pages themselves live in pages/.

  models   the sidebar's model picker, and the server's models: loaded once, in the background,
           then compiled for every input shape before visitors need them
  inputs   images (examples, uploads, URLs) and texts (labels, queries), checked before use
  results  search results as cards with an enlarged view
"""

import os

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

# The app runs the Flax backend only. transformers imports PyTorch whenever it is installed (seconds
# on the first answer's path) and decides so once, when first imported: before any page imports koclip.
os.environ.setdefault("USE_TORCH", "0")


def through_app() -> None:
    """Make sure this page runs inside app.py, under its navigation, page settings and model picker.

    Streamlit runs a folder named pages/ as old-style pages (each script on its own) until app.py first
    calls st.navigation. On a fresh server the first visitor who opens a page's own address would get
    the page alone; instead, that run ends here and starts again through app.py, on the same page.
    """
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False
        st.rerun()
