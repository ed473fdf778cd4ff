"""One log line per page run, on the server's stderr: which page, and how long the server took.

This is the server's own time for a run, from the visitor's input to the last element sent; what a
visitor waits for also includes the network and their browser. Lines look like

    2026-12-07 02:41:07 koclip.app run text_to_image 0.412 s
"""

from __future__ import annotations

import logging
import sys

import streamlit as st

LOGGER = "koclip.app"


@st.cache_resource(show_spinner=False)
def _logger() -> logging.Logger:
    logger = logging.getLogger(LOGGER)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def record(page: str, seconds: float) -> None:
    _logger().info("run %s %.3f s", page, seconds)
