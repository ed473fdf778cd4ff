"""The KoCLIP demo: `streamlit run app.py`.

The server runs demo/navigation.py for every page view. As the server starts, before any visitor
arrives, the default model begins to load and compile in the background, so the first visitor
waits for what is left of that, if anything. With KOCLIP_API set, the search service answers under
/api beside the pages (demo/api.py).
"""

import contextlib

import streamlit as st

from demo import api, models


@contextlib.asynccontextmanager
async def start_loading(_app):
    models.preload_default()
    yield


app = st.App("demo/navigation.py", lifespan=start_loading, routes=api.routes())
