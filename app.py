"""Bottleneck Explorer: `streamlit run app.py`."""

import logging

import streamlit as st

from explorer.process_setup import SERVER_LOG_FORMAT, configure

configure()
logging.basicConfig(level=logging.INFO, format=SERVER_LOG_FORMAT)
st.set_page_config(page_title="Bottleneck Explorer", page_icon="🔬", layout="wide")

from explorer.ui import main  # noqa: E402  (after configure: numba/malloc settings first)

main.render()
