"""The projection panels at any size: every layer's panel, every point, drawn in the browser
(scatter.js: points splatted into each panel's pixels), the points sent once as one binary blob,
selections made and linked across the panels in the browser.

Why not `st.plotly_chart`: a figure of 8 x 100,000 points is ~60 MB of JSON with a label per point,
re-sent on every rerun that changes the selection, and plotly's WebGL scatter selects live on every
mouse move over every trace (a lasso took 25-30 s at that size in software WebGL). Here the blob is
~10 MB of float32 and uint16 at 100k (sent once: Streamlit caches a message the browser already has),
the lasso is drawn on an overlay and resolved once on release through a grid index, and a selection
changes nothing Python sends. docs/benchmarks.md has the measurements.
"""

from __future__ import annotations

import hashlib

import streamlit as st

from ..output.points import ASSETS, frame
from . import thumbs

CSS = (ASSETS / "scatter.css").read_text()
JS_FILES = ("scatter_points.js", "scatter_index.js", "scatter.js", "scatter_streamlit.js")  # one module, in this order
CONTROL_JS = """
export default function (component) {
  const d = component.data;
  if (!d) return;
  window.__explorerScatterCommands = window.__explorerScatterCommands || new Map();
  window.__explorerScatterCommands.set(d.instance, d);
  if (window.__explorerScatterControl) window.__explorerScatterControl(d);
}
"""


_SCATTER = st.components.v2.component(
    "explorer_scatter",
    html='<div class="explorer-scatter">Drawing the projections…</div>',
    css=CSS,
    js="\n".join((ASSETS / f).read_text() for f in JS_FILES),
    isolate_styles=False,  # the hover card is placed over the page, outside the component's box
)
_CONTROL = st.components.v2.component("explorer_scatter_control", js=CONTROL_JS, isolate_styles=False)


def thumbnail_url(token: str | None) -> str | None:
    """Where the browser asks for image i's thumbnail (+ "/i"), relative to the page; None without the route."""
    return f"{thumbs.PATH}/{token}" if token and thumbs.is_installed() else None


def layer_scatter(
    points: tuple[dict, bytes], *, key: str, thumb_token: str | None = None
) -> tuple[list[int], int | None]:
    """Draw the panels of `points` (from `pack`); returns (the indices selected, in any panel; the
    index clicked in this run, or None)."""
    head, body = points
    extra = {"instance": key, "digest": hashlib.sha1(body).hexdigest(), "thumb_url": thumbnail_url(thumb_token)}
    result = _SCATTER(
        key=key,
        data=frame({**head, **extra}, body),
        on_selection_change=lambda: None,
        on_clicked_change=lambda: None,
        height="content",
    )
    selection = getattr(result, "selection", None) or []
    clicked = getattr(result, "clicked", None)
    return [int(i) for i in selection], (int(clicked) if clicked is not None else None)


def control(instance: str, *, highlight: list[int] | None = None, picked: int | None = None) -> None:
    """Tell the panels of `instance` to highlight these images (None: no highlight) and ring one."""
    _CONTROL(key=f"{instance}_control", data={"instance": instance, "picked": picked, "highlight": highlight}, height=0)
