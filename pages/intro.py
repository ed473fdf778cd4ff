"""Intro: what KoCLIP is and what each demo shows (the text lives in intro.md)."""

import streamlit as st

from pages import common

st.markdown((common.ROOT / "intro.md").read_text(encoding="utf-8"))
