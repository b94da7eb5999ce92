"""The projection panels of a comparison as one binary message for scatter.js, the point view the
dashboard (ui/scatter.py) and the notebook widget (output/widget.py) both draw: coordinates, colour
groups, hover fields and names, packed once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..analysis.movers import neighbours_changed
from . import figures

if TYPE_CHECKING:
    from ..record import Comparison

ASSETS = Path(__file__).with_name("scatter")  # scatter.js and its parts, scatter.css: the view both draw with
PANEL_HEIGHT = 260
NOT_SCORED_CODE = 0xFFFF  # a predicted class code: the probe did not score this image
COLOUR_BY = ("class", "probe prediction", "probe correct / wrong")
NEIGHBOURS_CHANGED = "neighbours changed"  # each panel: the share of an image's neighbours new since the panel before
COLUMN = "column: "  # + a further column's name (labels.csv's, a table's, a shard's json): colour by its values
NOT_SCORED = "not scored"
CHANGE_BINS = ("0-20 %", "20-40 %", "40-60 %", "60-80 %", "80-100 %")
CHANGE_COLOURS = ("#440154", "#3B528B", "#21918C", "#5EC962", "#FDE725")  # viridis: new neighbours are bright
FIRST_PANEL = "first layer"


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
        "n": n,
        "cols": min(cols, 4),
        "panel_height": PANEL_HEIGHT,
        "aligned": aligned,
        "marker_size": 6 if n <= 2_000 else 4 if n <= 20_000 else 2,
        "panels": [{"title": (titles or {}).get(k, k)} for k in panels],
        "legend": legend,
        "palette": palette,
        "names_bytes": len(name_bytes),
        "codes_per_panel": codes.ndim == 2,
        "classes": classes,
        "has_truth": truth is not None and classes is not None,
        "has_predicted": predicted is not None and classes is not None,
    }

    def u16(a: np.ndarray) -> bytes:
        a = np.asarray(a, dtype=np.int64)
        return np.where(a < 0, NOT_SCORED_CODE, a).astype("<u2").tobytes()

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


def _change_groups(comp: Comparison, keys: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Per panel, each image's share of its 10 nearest neighbours that are new since the panel
    before, in five ranges (the first panel has none before it)."""

    codes = np.full((len(keys), len(comp.dataset)), len(CHANGE_BINS), np.int64)
    for j in range(1, len(keys)):
        change = neighbours_changed(comp.graphs[keys[j - 1]], comp.graphs[keys[j]])
        codes[j] = np.minimum((change * len(CHANGE_BINS)).astype(np.int64), len(CHANGE_BINS) - 1)
    return codes, [*CHANGE_BINS, FIRST_PANEL], [*CHANGE_COLOURS, "#C8C8C8"]


def colour_groups(
    comp: Comparison, keys: list[str] | None = None, by: str = "class"
) -> tuple[np.ndarray, list[str], list[str]]:
    """(each image's group index, per panel when the groups are the layer's own; the groups' names;
    their colours): by class, by each layer's out-of-fold probe prediction, by whether it was right, or
    by a further column of labels.csv (`COLUMN` + its name)."""
    ds = comp.dataset
    if by.startswith(COLUMN) and by[len(COLUMN) :] in ds.metadata:
        return figures.value_groups(ds.metadata[by[len(COLUMN) :]])
    if by == NEIGHBOURS_CHANGED and keys and len(keys) >= 2:
        return _change_groups(comp, keys)
    legend = ds.classes or ["all images"]
    colors = figures.class_colors(legend)
    truth = (
        np.searchsorted(np.array(legend), np.asarray(ds.labels)) if ds.labels is not None else np.zeros(len(ds), int)
    )
    predicted = [comp.scores[k].predicted for k in keys or []]
    if by == "class" or not keys or any(p is None for p in predicted):
        return truth, legend, [colors[c] for c in legend]
    pred = np.stack([np.asarray(p, dtype=np.int64) for p in predicted])  # (panels, n); -1: not scored
    if by == "probe prediction":
        return np.where(pred < 0, len(legend), pred), [*legend, NOT_SCORED], [*(colors[c] for c in legend), "#C8C8C8"]
    return (
        np.where(pred < 0, 2, (pred != truth).astype(np.int64)),
        ["correct", "wrong", NOT_SCORED],
        ["#2CA02C", "#D62728", "#C8C8C8"],
    )


def hover_fields(comp: Comparison, keys: list[str]) -> dict:
    """What the hover card shows besides the name: each image's class and each layer's probe prediction."""
    ds = comp.dataset
    if ds.labels is None:
        return {}
    classes = list(ds.classes)
    truth = np.searchsorted(np.array(classes), np.asarray(ds.labels))
    predicted = [comp.scores[k].predicted for k in keys]
    if not keys or any(p is None for p in predicted):
        return {"classes": classes, "truth": truth}
    return {"classes": classes, "truth": truth, "predicted": [np.asarray(p) for p in predicted]}


def panel_title(comp: Comparison, key: str) -> str:
    """A panel's title: its layer key and dimension."""
    return f"{key} · {comp.scores[key].dim}-d"


def comparison_points(
    comp: Comparison,
    panels: dict[str, np.ndarray],
    by: str = "class",
    *,
    titles: dict[str, str] | None = None,
    aligned: bool = False,
    cols: int = 4,
) -> tuple[dict, bytes]:
    """`pack` for the comparison's panels coloured `by` (colour_groups), with the names and hover fields."""
    keys = list(panels)
    return pack(
        panels,
        *colour_groups(comp, keys, by),
        comp.dataset.names,
        titles=titles,
        aligned=aligned,
        cols=cols,
        **hover_fields(comp, keys),
    )
