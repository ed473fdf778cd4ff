"""Intro: what KoCLIP is and what each demo shows (the text lives in intro.md)."""

import streamlit as st

from koclip.settings import APP_ROOT

st.markdown((APP_ROOT / "intro.md").read_text(encoding="utf-8"))
