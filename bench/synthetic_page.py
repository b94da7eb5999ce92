"""A Streamlit page for bench_dashboard_scale.py --synthetic: the real projection view on N made-up
points per panel (10 classes of Gaussian clusters, seeded), the selection's image grid and the hover
thumbnails as the dashboard shows them, with a few real photos of the bundled sample reused.

Run from a tree's root (the bench runs it against this tree and against an older commit's, which
is why it asks what that tree's `scatter` accepts): env SYNTH_N, SYNTH_PANELS.
"""

from __future__ import annotations

import inspect
import io
import os
import sys

import numpy as np
import streamlit as st

sys.path.insert(0, os.getcwd())  # the tree under test (its explorer/)
from explorer.config import DataSpec  # noqa: E402

try:
    from explorer.data.datasets import load_dataset
except ImportError:  # a tree from before the stage packages (--before an older commit)
    from explorer.datasets import load_dataset  # type: ignore[no-redef]
from explorer.ui import scatter  # noqa: E402

try:
    from explorer.output.points import pack  # noqa: E402
except ImportError:  # a tree from before the points module (--before an older commit)
    pack = scatter.pack  # type: ignore[attr-defined]

N = int(os.environ.get("SYNTH_N", "100000"))
P = int(os.environ.get("SYNTH_PANELS", "8"))
CLASSES = [f"class {c}" for c in range(10)]
PALETTE = ["#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880", "#FF97FF", "#FECB52"]


@st.cache_resource
def data() -> tuple[dict, bytes, list[bytes]]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, N)
    panels = {}
    for k in range(P):  # clusters that come apart with depth
        centres = rng.normal(size=(10, 2)) * (1 + k)
        panels[f"layer{k}"] = (centres[labels] + rng.normal(size=(N, 2))).astype(np.float32)
    names = [f"synthetic/{CLASSES[c]}/img_{i:07d}.jpg" for i, c in enumerate(labels)]
    kwargs = {}
    if "classes" in inspect.signature(pack).parameters:
        kwargs = {"classes": CLASSES, "truth": labels}
    points = pack(panels, labels, CLASSES, PALETTE, names, aligned=True, **kwargs)
    sample = load_dataset(DataSpec(source="sample:clothing", max_images=48))
    thumbs = [bytes(t) for t in sample.thumbnails]
    return points, thumbs


class Owner:  # what a hover token lives as long as
    pass


@st.cache_resource
def owner() -> Owner:
    return Owner()


points, thumbs = data()
extra = {}
if "thumb_token" in inspect.signature(scatter.layer_scatter).parameters:
    from explorer.ui import thumbs as routes

    extra["thumb_token"] = routes.publish(owner(), lambda i: thumbs[i % len(thumbs)])
st.markdown(f"#### {N:,} points x {P} panels")
selection, clicked = scatter.layer_scatter(points, key="proj", **extra)
if selection:
    st.markdown(f"#### {len(selection):,} selected images" + (" (the first 48)" if len(selection) > 48 else ""))
    cols = st.columns(8)
    for j, i in enumerate(selection[:48]):
        cols[j % 8].image(io.BytesIO(thumbs[i % len(thumbs)]), width="stretch")
scatter.control("proj", highlight=selection or None, picked=clicked)
