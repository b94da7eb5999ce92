"""The projection panels at any size: every layer in one WebGL plotly figure drawn in the browser
(scatter.js), every point, the points sent once as one binary blob, selections linked across the
panels in the browser.

Why not `st.plotly_chart`: a figure of 8 x 100,000 points is ~60 MB of JSON with a label per point,
re-sent on every rerun that changes the selection (plotly draws the selection into the figure);
here the blob is ~10 MB of float32 at 100k (sent once: Streamlit caches a message the browser
already has), a selection changes nothing Python sends, and plotly.js comes from the app's static
folder (copied there from the plotly package), loaded once per page.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import streamlit as st

STATIC = Path(__file__).resolve().parents[2] / "static"  # served at app/static/ (.streamlit/config.toml)
# plotly.js: the plotly package's own whole bundle (WebGL traces), and its "basic" bundle of the same
# version, vendored (explorer/ui/vendor/, MIT), a quarter of the size: a first visit to a small
# dataset loads and compiles it ~0.7 s sooner (README)
PLOTLY_FULL = "plotly.min.js"
PLOTLY_BASIC = "plotly-basic.min.js"
VENDOR = Path(__file__).with_name("vendor")
SVG_MAX_POINTS = 20_000  # all panels together: SVG draws these sooner than a software WebGL context starts
PANEL_HEIGHT = 260
CSS = """
.explorer-legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 13px; margin: 0 0 4px 8px; }
.explorer-legend .dot { display: inline-block; width: 10px; height: 10px; border-radius: 5px; margin-right: 5px; }
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


def ensure_plotly_js() -> None:
    """Put both plotly.js bundles where Streamlit serves static files (once)."""
    import plotly

    for src in (Path(plotly.__file__).parent / "package_data" / PLOTLY_FULL, VENDOR / PLOTLY_BASIC):
        dst = STATIC / src.name
        if dst.is_file() and dst.stat().st_size == src.stat().st_size:
            continue
        STATIC.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".tmp")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)


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
) -> tuple[dict, bytes]:
    """The points of every panel as (header, body): float32 coordinates panel by panel (n x 2,
    row-major), uint16 colour codes, then the names joined by newlines.

    Args:
        panels: {title key: n x 2 coordinates}, in display order.
        codes: each point's index into `legend` / `palette`: (n,) for every panel alike, or
            (panels, n), a row per panel.
        legend: the colour groups' names.
        palette: one CSS colour per group.
        names: a hover label per point (None: no hover text).
        titles: a panel title per key (default: the key).
        aligned: whether the panels share orientation (then a picked image's path is drawn).
        cols: panels per row.
    """
    codes = np.asarray(codes)
    n = codes.shape[-1]
    coords = [np.ascontiguousarray(p[:, :2], dtype="<f4") for p in panels.values()]
    if any(c.shape[0] != n for c in coords):
        raise ValueError("every panel needs one row per point")
    name_bytes = "\n".join(s.replace("\n", " ") for s in names).encode() if names is not None else b""
    head = {
        "n": n, "dims": 2, "cols": cols, "panel_height": PANEL_HEIGHT, "aligned": aligned,
        "marker_size": 5 if n <= 2_000 else 3 if n <= 20_000 else 2,
        "panels": [{"title": (titles or {}).get(k, k)} for k in panels], "legend": legend, "palette": palette,
        "names_bytes": len(name_bytes), "codes_per_panel": codes.ndim == 2,
        "svg": n * len(coords) <= SVG_MAX_POINTS,
    }  # fmt: skip
    if codes.ndim == 2 and codes.shape[0] != len(coords):
        raise ValueError("one row of colour codes per panel")
    body = b"".join([*(c.tobytes() for c in coords), np.ascontiguousarray(codes, dtype="<u2").tobytes(), name_bytes])
    return head, body


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
    js=(Path(__file__).with_name("scatter.js")).read_text(),
    isolate_styles=False,  # plotly styles its modebar and drag layers from the page's stylesheet
)
_CONTROL = st.components.v2.component("explorer_scatter_control", js=CONTROL_JS, isolate_styles=False)


def layer_scatter(points: tuple[dict, bytes], *, key: str) -> tuple[list[int], int | None]:
    """Draw the panels of `points` (from `pack`); returns (the indices selected, in any panel; the
    index clicked in this run, or None)."""
    ensure_plotly_js()
    head, body = points
    url = "app/static/" + (PLOTLY_BASIC if head["svg"] else PLOTLY_FULL)
    extra = {"instance": key, "plotly_url": url, "digest": hashlib.sha1(body).hexdigest()}
    result = _SCATTER(key=key, data=frame({**head, **extra}, body), on_selection_change=lambda: None,
                      on_clicked_change=lambda: None, height="content")  # fmt: skip
    selection = getattr(result, "selection", None) or []
    clicked = getattr(result, "clicked", None)
    return [int(i) for i in selection], (int(clicked) if clicked is not None else None)


def control(instance: str, *, highlight: list[int] | None = None, picked: int | None = None) -> None:
    """Tell the panels of `instance` to highlight these images (as a selection) and ring one."""
    data: dict = {"instance": instance, "picked": picked}
    if highlight is not None:
        data["highlight"] = highlight
    _CONTROL(key=f"{instance}_control", data=data, height=0)
