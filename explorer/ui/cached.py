"""Streamlit caches of cheap, shared lookups (model list, weights availability, layer profiles)."""

from __future__ import annotations

import functools
import threading
from concurrent.futures import Future

import streamlit as st

from ..networks import catalog, layers, registry, sources, weights
from . import runtime

# the models of every source and their weights' availability, listed once per server in the
# background (importing timm takes seconds): until then the picker lists torchvision's
_CATALOG_JOB: list[Future] = []
_CATALOG_LOCK = threading.Lock()


def _list_catalog() -> dict[str, str]:
    return {n: catalog.availability(n) for n in catalog.all_names()}


def start_catalog() -> Future:
    """Start listing every source's models (once per process); the server calls it at start."""
    with _CATALOG_LOCK:
        if not _CATALOG_JOB or (_CATALOG_JOB[0].done() and _CATALOG_JOB[0].exception() is not None):
            _CATALOG_JOB[:] = [runtime.current().catalog_pool.submit(_list_catalog)]
        return _CATALOG_JOB[0]


@st.cache_resource(show_spinner=False)
def _torchvision_availability() -> dict[str, str]:
    return {n: registry.weights_availability(n) for n in registry.list_models()}


def availability() -> dict[str, str]:
    """{model: offline | download | none} of every listed model: torchvision's at once, the other
    sources' once their listing is done."""
    job = start_catalog()
    if job.done() and job.exception() is None:
        return job.result()
    return _torchvision_availability()


def catalog_complete() -> bool:
    job = start_catalog()
    return job.done() and job.exception() is None


def model_names(offline_weights_only: bool) -> list[str]:
    """The picker's models: every listed model, or with `offline_weights_only` (the demo) torchvision's
    (their random-init baseline needs no file) and the others' whose pretrained weights are here."""
    avail = availability()
    return [
        n for n in avail if not offline_weights_only or avail[n] == "offline" or sources.source_name(n) == "torchvision"
    ]


@functools.lru_cache(maxsize=256)
def model_availability(name: str) -> str:
    """Availability of one model, listed or not (a typed hf: repo, a checkpoint folder)."""
    got = availability().get(name)
    return got if got is not None else catalog.availability(name)


# a model's layers are listed by one background thread for the whole server (at most one model at a
# time: a large RegNet is built and run on the CPU for it), never by a page's script thread
_PROFILES: dict[str, Future] = {}
_PROFILES_LOCK = threading.Lock()


def profile(name: str) -> layers.LayerProfile:
    """The layer profile of a model, listed in the background thread; this page waits for it (other
    visitors' pages do not)."""
    with _PROFILES_LOCK:
        fut = _PROFILES.get(name)
        if fut is None or (fut.done() and fut.exception() is not None):  # a failure is tried again
            fut = _PROFILES[name] = runtime.current().layer_pool.submit(layers.profile, name)
    if not fut.done():
        with st.spinner(f"Reading the layers of {name}…"):
            return fut.result()
    return fut.result()


def offline_only() -> bool:
    return not weights.downloads_allowed()
