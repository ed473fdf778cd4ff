"""The model picker and the server's models.

A server loads each model once, on a background thread: the default model as the server starts
(app.py), any other as soon as a visitor picks it (on any page); and then compiles it for every
input shape a query can take (`KoCLIP.warm_up`). A page that needs the model waits only for what is
not done yet.
"""

from __future__ import annotations

import collections
import gc
import threading
from concurrent.futures import Future

import streamlit as st

import koclip
from demo import settings
from koclip import hub, registry
from koclip.errors import KoCLIPError

MODEL_KEY = "model_name"
READY, DOWNLOAD, OFFLINE, MISSING = "ready", "download", "offline", "not installed"  # short: the sidebar is narrow
LOADED_AT_ONCE = 2  # two full-size models already take ~6 GiB
WARM_UP_DELAY = 2.0  # seconds after a load


@st.cache_resource(show_spinner=False)
def hub_reachable() -> bool:
    """Whether the Hugging Face Hub answers; checked once per process."""
    return hub.reachable()


def availability(name: str) -> str:
    """READY (shipped or in the cache), DOWNLOAD (the Hub is reachable), OFFLINE or MISSING."""
    info = registry.MODELS[name]
    if info.path is not None:
        return READY if (info.path / "config.json").is_file() else MISSING
    if hub.is_cached(info.repo_id):
        return READY
    return OFFLINE if hub.offline() or not hub_reachable() else DOWNLOAD


class ServerModels:
    """The models of this server, each loaded once on its own thread and then warmed up.

    Safe to use from every session's thread; at most LOADED_AT_ONCE models are kept.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loads: collections.OrderedDict[str, Future] = collections.OrderedDict()
        self._answered: set[str] = set()  # models that have answered a query on this server

    def get(self, name: str) -> Future:
        """The load of `name`, started now unless it already was; its result is the model."""
        with self._lock:
            if name in self._loads:
                self._loads.move_to_end(name)
                return self._loads[name]
            future: Future = Future()
            self._loads[name] = future
            while len(self._loads) > LOADED_AT_ONCE:
                self._loads.popitem(last=False)
        threading.Thread(target=self._load, args=(name, future), name=f"load {name}", daemon=True).start()
        return future

    def answered(self, name: str) -> bool:
        """Whether `name` has answered here before: until then, a query may wait for its first compile."""
        with self._lock:
            return name in self._answered

    def mark_answered(self, name: str) -> None:
        with self._lock:
            self._answered.add(name)

    def loading(self) -> list[str]:
        """The models loaded or being loaded, least recently asked for first."""
        with self._lock:
            return list(self._loads)

    def _load(self, name: str, future: Future) -> None:
        try:
            model = koclip.load(name)
        except KoCLIPError as exc:
            with self._lock:  # a later visit tries again: the cache or the network may have changed
                if self._loads.get(name) is future:
                    del self._loads[name]
            future.set_exception(exc)
            return
        future.set_result(model)
        # The imports and the model live as long as the server: leave them out of every later garbage
        # collection, which would otherwise walk their ~200,000 objects (over 100 ms) each time.
        gc.freeze()
        # The query that asked for the model runs first, alone; then every other shape is compiled.
        timer = threading.Timer(WARM_UP_DELAY, model.warm_up_in_background)
        timer.daemon = True
        timer.start()


@st.cache_resource(show_spinner=False)
def server_models() -> ServerModels:
    return ServerModels()


def picked() -> str:
    """The model this session uses: its sidebar choice, else the one the link names, else the default."""
    name = st.session_state.get(MODEL_KEY) or st.query_params.get("model")
    return name if name in registry.DEMO_MODELS else default_model()


def default_model() -> str:
    """The operator's KOCLIP_MODEL, else koclip-base when it can be had, else koclip-mini."""
    chosen = settings.default_model()
    if chosen in registry.DEMO_MODELS:
        return chosen
    return "koclip-base" if availability("koclip-base") in (READY, DOWNLOAD) else "koclip-mini"


def preload(name: str | None = None) -> None:
    """Start loading `name` (default: the session's model), unless it is not here to load (it would
    download)."""
    name = name or picked()
    if availability(name) == READY:
        server_models().get(name)


def preload_default() -> None:
    """As the server starts, before any visitor: load the default model on a thread of its own (finding
    the default may wait on the Hub)."""
    threading.Thread(target=lambda: preload(default_model()), name="preload", daemon=True).start()


def _describe(name: str) -> str:
    status = availability(name)
    if status == DOWNLOAD:
        return f"{name} — {registry.MODELS[name].size_note.removeprefix('about ')} download"
    return f"{name} — {status}"


def _explain(name: str) -> str:
    """What the sidebar's short status of `name` means, for the model picked."""
    status = availability(name)
    if status == DOWNLOAD:
        return f"Its weights ({registry.MODELS[name].size_note}) download from the Hugging Face Hub once per server."
    if status == OFFLINE:
        return f"Not in this server's Hugging Face cache ({hub.cache_dir()}), and the Hub cannot be reached."
    return ""


def model_picker() -> None:
    """The sidebar's model choice, stored under MODEL_KEY and in the page's link."""
    name = picked()
    st.session_state[MODEL_KEY] = name
    st.sidebar.selectbox("Model", registry.DEMO_MODELS, format_func=_describe, key=MODEL_KEY)
    st.sidebar.caption(f"{registry.MODELS[name].description}. {_explain(name)}".strip())
    if st.query_params.get("model") != name:
        st.query_params["model"] = name


def current_model() -> koclip.KoCLIP:
    """The model picked in the sidebar, once it is loaded; on failure, an error and a stop."""
    name = picked()
    info = registry.MODELS[name]
    if info.vocabulary is not None:
        st.info(
            f"**{name}** is {info.description}. It knows {info.vocabulary}; words it cannot read are named, "
            "and get no answer.",
            icon=":material/info:",
        )
    load = server_models().get(name)
    doing = "Downloading and loading" if availability(name) == DOWNLOAD else "Loading"
    try:
        if load.done():
            return load.result()
        with st.spinner(f"{doing} {name}; this happens once per server…"):
            return load.result()
    except KoCLIPError as exc:
        st.error(str(exc))
        st.info("Pick **koclip-mini** in the sidebar: it ships with koclip and works offline.")
        st.stop()
