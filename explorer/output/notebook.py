"""What a Comparison shows as a notebook cell's output (`Comparison._repr_html_`): one line on what
was compared, the separability chart and the metrics table's main columns."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from . import figures

if TYPE_CHECKING:
    from ..record import Comparison

SUMMARY_COLUMNS = [
    "model",
    "layer",
    "dim",
    "probe_acc",
    "probe_acc_low",
    "probe_acc_high",
    "knn_acc",
    "silhouette",
    "eff_dim",
]
_plotly_sent = False  # plotly.js goes into the first chart this kernel shows (the page keeps it for the others)


def summary_html(comp: Comparison) -> str:
    """The cell output of a Comparison: what it holds, the chart, the table; `comp.show()` for the view."""
    global _plotly_sent
    ds = comp.dataset
    head = (
        f"<b>Comparison</b>: {len(comp.runs)} model{'s' if comp.multi else ''} "
        f"({html.escape(', '.join(r.label for r in comp.runs))}), {len(comp.layer_keys())} layers, "
        f"{len(ds):,} images"
        + (f" in {len(ds.classes)} classes" if ds.labels is not None else ", unlabelled")
        + (f"; {len(ds.skipped)} skipped" if ds.skipped else "")
        + ". "
        "<code>.metrics</code>, <code>.similarity()</code>, <code>.projection(layer)</code>, <code>.show()</code>."
    )
    chart = ""
    if ds.labels is not None:
        fig = figures.separability(comp.metrics, chance=comp.chance_accuracy)
        chart = fig.to_html(full_html=False, include_plotlyjs=not _plotly_sent, config={"displaylogo": False})
        _plotly_sent = True
    cols = [c for c in SUMMARY_COLUMNS if c in comp.metrics and (comp.multi or c != "model")]
    table = comp.metrics[cols].to_html(index=False, float_format=lambda v: f"{v:.3f}", na_rep="", escape=True)
    return f"<div><p>{head}</p>{chart}{table}</div>"
