"""The page every visitor's session runs: the script of app.py's `st.App` (and of AppTest)."""

import logging

import streamlit as st

from explorer.process_setup import SERVER_LOG_FORMAT, configure

configure()
logging.basicConfig(level=logging.INFO, format=SERVER_LOG_FORMAT)
st.set_page_config(page_title="Bottleneck Explorer", page_icon="🔬", layout="wide")

from explorer.ui import main  # noqa: E402  (after configure: numba/malloc settings first)

main.render()
