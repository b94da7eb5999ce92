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
import json
from pathlib import Path

import numpy as np
import streamlit as st

from . import thumbs

PANEL_HEIGHT = 260
NOT_SCORED = 0xFFFF  # a predicted class code: the probe did not score this image
CSS = """
.explorer-legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 13px; margin: 0 0 4px 8px; }
.explorer-legend .dot { display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 5px; }
.explorer-toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px 10px; font-size: 13px; margin: 0 0 6px 8px; }
.explorer-toolbar button { font: inherit; padding: 2px 9px; border: 1px solid #ced4da; border-radius: 4px; background: white; cursor: pointer; }
.explorer-toolbar button[aria-pressed="true"] { background: #4C6EF5; border-color: #4C6EF5; color: white; }
.explorer-toolbar .hint { color: #6c757d; font-size: 12px; }
.explorer-projections { display: grid; gap: 6px 10px; }
.explorer-panel { position: relative; overflow: hidden; }
.explorer-panel .title { font-size: 12px; text-align: center; white-space: nowrap; overflow: hidden; text-overflow: ellipsis; height: 16px; }
.explorer-panel canvas { position: absolute; left: 0; top: 16px; }
.explorer-panel canvas.overlay { border: 1px solid #e9ecef; box-sizing: border-box; }
.explorer-tip { position: fixed; z-index: 1000; pointer-events: none; background: white; border: 1px solid #adb5bd;
  border-radius: 4px; padding: 4px; font-size: 12px; max-width: 180px; box-shadow: 0 2px 6px rgba(0,0,0,.15); }
.explorer-tip img { display: block; max-width: 160px; max-height: 160px; margin-bottom: 3px; }
.explorer-tip div { overflow-wrap: anywhere; }
"""
CONTROL_JS = """
export default function (component) {
  const d = component.data;
  if (!d) return;
  window.__explorerScatterCommands = window.__explorerScatterCommands || new Map();
  window.__explorerScatterCommands.set(d.instance, d);
  if (window.__explorerScatterControl) window.__explorerScatterControl(d);
}
"""


def pack(
    panels: dict[str, np.ndarray],
    codes: np.ndarray,
    legend: list[str],
    palette: list[str],
    names: list[str] | None,
    *,
    titles: dict[str, str] | None = None,
    aligned: bool = False,
    cols: int = 4,
    classes: list[str] | None = None,
    truth: np.ndarray | None = None,
    predicted: list[np.ndarray] | None = None,
) -> tuple[dict, bytes]:
    """The points of every panel as (header, body): float32 coordinates panel by panel (n x 2,
    row-major), uint16 colour codes, the classes and predictions shown on hover, then the names
    joined by newlines.

    Args:
        panels: {title key: n x 2 coordinates}, in display order.
        codes: each point's index into `legend` / `palette`: (n,) for every panel alike, or
            (panels, n), a row per panel.
        legend: the colour groups' names.
        palette: one CSS colour per group (#rrggbb).
        names: a hover label per point (None: no hover text).
        titles: a panel title per key (default: the key).
        aligned: whether the panels share orientation (then a picked image's path is drawn).
        cols: panels per row (at most 4 are shown in a row whatever this says).
        classes: the class names `truth` and `predicted` index (hover text).
        truth: each image's class index (n,), or None.
        predicted: per panel, each image's out-of-fold probe prediction (n,), -1 where not scored.
    """
    codes = np.asarray(codes)
    n = codes.shape[-1]
    coords = [np.ascontiguousarray(p[:, :2], dtype="<f4") for p in panels.values()]
    if any(c.shape[0] != n for c in coords):
        raise ValueError("every panel needs one row per point")
    if codes.ndim == 2 and codes.shape[0] != len(coords):
        raise ValueError("one row of colour codes per panel")
    if predicted is not None and len(predicted) != len(coords):
        raise ValueError("one row of predictions per panel")
    name_bytes = "\n".join(s.replace("\n", " ") for s in names).encode() if names is not None else b""
    head = {
        "n": n, "cols": min(cols, 4), "panel_height": PANEL_HEIGHT, "aligned": aligned,
        "marker_size": 6 if n <= 2_000 else 4 if n <= 20_000 else 2,
        "panels": [{"title": (titles or {}).get(k, k)} for k in panels], "legend": legend, "palette": palette,
        "names_bytes": len(name_bytes), "codes_per_panel": codes.ndim == 2, "classes": classes,
        "has_truth": truth is not None and classes is not None, "has_predicted": predicted is not None and classes is not None,
    }  # fmt: skip

    def u16(a: np.ndarray) -> bytes:
        a = np.asarray(a, dtype=np.int64)
        return np.where(a < 0, NOT_SCORED, a).astype("<u2").tobytes()

    parts = [*(c.tobytes() for c in coords), np.ascontiguousarray(codes, dtype="<u2").tobytes()]
    if head["has_truth"]:
        parts.append(u16(truth))  # type: ignore[arg-type]
    if head["has_predicted"]:
        parts.extend(u16(p) for p in predicted)  # type: ignore[union-attr]
    return head, b"".join([*parts, name_bytes])


def frame(head: dict, body: bytes) -> bytes:
    """One message: a 4-byte length, the JSON header (with `data_offset`), padding to 4, the body."""
    head = {**head, "data_offset": 0}
    for _ in range(2):  # the offset is part of the header: settle it, aligned to 4 bytes
        head["data_offset"] = (4 + len(json.dumps(head).encode()) + 3) // 4 * 4
    raw = json.dumps(head).encode()
    return len(raw).to_bytes(4, "little") + raw + b"\0" * (head["data_offset"] - 4 - len(raw)) + body


_SCATTER = st.components.v2.component(
    "explorer_scatter",
    html='<div class="explorer-scatter">Drawing the projections…</div>',
    css=CSS,
    js="\n".join(Path(__file__).with_name(f).read_text() for f in ("scatter_points.js", "scatter_index.js", "scatter.js")),
    isolate_styles=False,  # the hover card is placed over the page, outside the component's box
)
_CONTROL = st.components.v2.component("explorer_scatter_control", js=CONTROL_JS, isolate_styles=False)


def thumbnail_url(token: str | None) -> str | None:
    """Where the browser asks for image i's thumbnail (+ "/i"), relative to the page; None without the route."""
    return f"{thumbs.PATH}/{token}" if token and thumbs.is_installed() else None


def layer_scatter(points: tuple[dict, bytes], *, key: str, thumb_token: str | None = None) -> tuple[list[int], int | None]:
    """Draw the panels of `points` (from `pack`); returns (the indices selected, in any panel; the
    index clicked in this run, or None)."""
    head, body = points
    extra = {"instance": key, "digest": hashlib.sha1(body).hexdigest(), "thumb_url": thumbnail_url(thumb_token)}
    result = _SCATTER(key=key, data=frame({**head, **extra}, body), on_selection_change=lambda: None,
                      on_clicked_change=lambda: None, height="content")  # fmt: skip
    selection = getattr(result, "selection", None) or []
    clicked = getattr(result, "clicked", None)
    return [int(i) for i in selection], (int(clicked) if clicked is not None else None)


def control(instance: str, *, highlight: list[int] | None = None, picked: int | None = None) -> None:
    """Tell the panels of `instance` to highlight these images (None: no highlight) and ring one."""
    _CONTROL(key=f"{instance}_control", data={"instance": instance, "picked": picked, "highlight": highlight}, height=0)
