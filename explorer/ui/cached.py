"""Streamlit caches of cheap, shared lookups (model list, weights availability, layer profiles)."""

from __future__ import annotations

import streamlit as st

from .. import layers, models, weights


@st.cache_resource(show_spinner=False)
def model_names() -> list[str]:
    return models.list_models()


@st.cache_resource(show_spinner=False)
def availability() -> dict[str, str]:
    return {n: models.weights_availability(n) for n in models.list_models()}


@st.cache_resource(show_spinner="Reading the network's layers…")
def profile(name: str) -> layers.LayerProfile:
    return layers.profile(name)


def offline_only() -> bool:
    return not weights.downloads_allowed()
