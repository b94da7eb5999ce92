"""Bottleneck Explorer's server: `streamlit run app.py` (or `bash scripts/run.sh`, the same server).

Streamlit finds `app` below and serves it: the hover thumbnails' route, the libraries imported
before the first visitor, the mode from `EXPLORER_MODE` (explorer/ui/server_app.py). Each visitor's
session runs explorer/ui/page.py.
"""

import logging

import streamlit as st

from explorer.process_setup import SERVER_LOG_FORMAT, configure

configure()  # glibc malloc and numba settings, before any heavy library is imported
logging.basicConfig(level=logging.INFO, format=SERVER_LOG_FORMAT)

from explorer.ui import server_app  # noqa: E402

app = st.App(server_app.PAGE, routes=server_app.routes(), lifespan=server_app.lifespan)
