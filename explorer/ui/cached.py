"""Streamlit caches of cheap, shared lookups (model list, weights availability, layer profiles)."""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor

import streamlit as st

from ..models import layers, registry, weights


@st.cache_resource(show_spinner=False)
def model_names() -> list[str]:
    return registry.list_models()


@st.cache_resource(show_spinner=False)
def availability() -> dict[str, str]:
    return {n: registry.weights_availability(n) for n in registry.list_models()}


# a model's layers are listed by one background thread for the whole server (at most one model at a
# time: a large RegNet is built and run on the CPU for it), never by a page's script thread
_LISTER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="explorer-layer-lister")
_PROFILES: dict[str, Future] = {}
_PROFILES_LOCK = threading.Lock()


def profile(name: str) -> layers.LayerProfile:
    """The layer profile of a model, listed in the background thread; this page waits for it (other
    visitors' pages do not)."""
    with _PROFILES_LOCK:
        fut = _PROFILES.get(name)
        if fut is None or (fut.done() and fut.exception() is not None):  # a failure is tried again
            fut = _PROFILES[name] = _LISTER.submit(layers.profile, name)
    if not fut.done():
        with st.spinner(f"Reading the layers of {name}…"):
            return fut.result()
    return fut.result()


def offline_only() -> bool:
    return not weights.downloads_allowed()
