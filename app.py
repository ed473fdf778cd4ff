"""The KoCLIP demo: `streamlit run app.py`.

The server runs demo/navigation.py for every page view. As the server starts, before any visitor
arrives, the default model begins to load and compile in the background, so the first visitor
waits for what is left of that, if anything. With KOCLIP_API set, the search service answers under
/api beside the pages (demo/api.py).
"""

import contextlib

import streamlit as st

from demo import models, settings


@contextlib.asynccontextmanager
async def start_loading(_app):
    models.preload_default()
    yield


routes = []
if settings.api_enabled():  # FastAPI and the service are imported only then: a plain server starts without them
    from demo import api

    routes = api.routes()
app = st.App("demo/navigation.py", lifespan=start_loading, routes=routes)
