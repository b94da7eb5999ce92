"""The floor for bench_first_visit.py: a bare Streamlit page that draws one plotly scatter of 400
points in 10 classes (the sample's size), with nothing else on it."""

import numpy as np
import plotly.graph_objects as go
import streamlit as st

rng = np.random.default_rng(0)
labels = rng.integers(0, 10, 400)
xy = rng.normal(size=(10, 2))[labels] * 3 + rng.normal(size=(400, 2))
fig = go.Figure(
    [go.Scatter(x=xy[labels == c, 0], y=xy[labels == c, 1], mode="markers", name=f"class {c}") for c in range(10)]
)
st.plotly_chart(fig, key="bare")
