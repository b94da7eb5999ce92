"""The figures of recognising new classes: retrieval and verification along depth, the few-shot
curves of each layer, and the compression curve on classes a projection never saw. Each draws
from the tidy tables (tables.retrieval_table, few_shot_table, unseen_table)."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale

from .figures import ACCENT, MUTED, styled

SHOT_ORDER = ["1", "2", "5", "10", "20", "all"]


def _bars(rows: pd.DataFrame, value: str, low: str, high: str) -> dict:
    """Plotly's asymmetric error bars from a value's interval columns."""
    return {
        "type": "data",
        "symmetric": False,
        "array": (rows[high] - rows[value]).to_numpy(),
        "arrayminus": (rows[value] - rows[low]).to_numpy(),
        "thickness": 1,
    }


def retrieval_along_depth(table: pd.DataFrame, title: str = "Retrieval and verification along depth") -> go.Figure:
    """MAP@R with its 95 % interval, precision@1 and verification ROC AUC at each layer, a colour
    per model (MAP@R solid, precision@1 dashed, AUC dotted)."""
    fig = go.Figure()
    palette = qualitative.Plotly
    for i, (model, rows) in enumerate(table.groupby("model", sort=False)):
        color = palette[i % len(palette)]
        suffix = f" — {model}" if table["model"].nunique() > 1 else ""
        fig.add_trace(
            go.Scatter(
                x=rows["layer"],
                y=rows["map_at_r"],
                mode="lines+markers",
                name="MAP@R" + suffix,
                line={"color": color, "width": 2.5},
                error_y=_bars(rows, "map_at_r", "map_at_r_low", "map_at_r_high"),
                hovertemplate="%{x}<br>MAP@R %{y:.3f}<extra>" + str(model) + "</extra>",
            )
        )
        for column, name, dash in (
            ("precision_at_1", "precision@1", "dash"),
            ("verification_auc", "verification AUC", "dot"),
        ):
            fig.add_trace(
                go.Scatter(
                    x=rows["layer"],
                    y=rows[column],
                    mode="lines+markers",
                    name=name + suffix,
                    line={"color": color, "dash": dash, "width": 1.5},
                    opacity=0.75,
                    hovertemplate="%{x}<br>" + name + " %{y:.3f}<extra>" + str(model) + "</extra>",
                )
            )
    fig.update_yaxes(range=[0, 1.02], title="score")
    return styled(fig, title, 420)


def few_shot_curves(table: pd.DataFrame, title: str) -> go.Figure:
    """Accuracy against labelled images per class, one line per layer (coloured by depth):
    the nearest class mean solid, the trained probe dotted; 95 % intervals as error bars."""
    fig = go.Figure()
    layers = list(dict.fromkeys(table["layer"]))
    colors = sample_colorscale("Viridis", [i / max(len(layers) - 1, 1) for i in range(len(layers))])
    for layer, color in zip(layers, colors):
        for method, dash in (("prototype", "solid"), ("probe", "dot")):
            rows = table[(table["layer"] == layer) & (table["method"] == method)]
            if rows.empty:
                continue
            rows = rows.assign(order=rows["shots"].astype(str).map(SHOT_ORDER.index)).sort_values("order")
            fig.add_trace(
                go.Scatter(
                    x=rows["shots"].astype(str),
                    y=rows["accuracy"],
                    mode="lines+markers",
                    name=f"{layer} ({'class mean' if method == 'prototype' else 'probe'})",
                    legendgroup=layer,
                    line={"color": color, "dash": dash, "width": 2 if method == "prototype" else 1.5},
                    error_y=_bars(rows, "accuracy", "accuracy_low", "accuracy_high") | {"width": 2},
                    hovertemplate=f"{layer}, {method}<br>" + "%{x} shots: %{y:.3f}<extra></extra>",
                )
            )
    fig.update_xaxes(
        type="category", categoryorder="array", categoryarray=SHOT_ORDER, title="labelled images per class"
    )
    fig.update_yaxes(title="accuracy on held-out images")
    fig = styled(fig, title, 460)
    fig.update_layout(legend={"orientation": "v", "x": 1.02, "xanchor": "left", "y": 1, "yanchor": "top"})
    return fig


def unseen_compression(table: pd.DataFrame, title: str) -> go.Figure:
    """MAP@R on the held-out classes against the dimensions kept (log axis), PCA and LDA fitted on
    the other classes, the unprojected layer as a dotted line."""
    fig = go.Figure()
    for method, color in (("pca", ACCENT), ("lda", "#E8590C")):
        rows = table[table["projection"] == method]
        if rows.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=rows["k"],
                y=rows["map_at_r"],
                mode="lines+markers",
                name=method.upper() + " fitted on the other classes",
                line={"color": color},
                error_y=_bars(rows, "map_at_r", "map_at_r_low", "map_at_r_high"),
                hovertemplate="k=%{x}: MAP@R %{y:.3f}<extra>" + method.upper() + "</extra>",
            )
        )
    full = table[table["projection"] == "none"]
    if not full.empty:
        value = float(full["map_at_r"].iloc[0])
        fig.add_hline(
            y=value,
            line={"color": MUTED, "dash": "dot"},
            annotation_text=f"the layer, unprojected: {value:.3f}",
            annotation_position="bottom right",
        )
    fig.update_xaxes(type="log", title="dimensions kept (k)")
    fig.update_yaxes(title="MAP@R on unseen classes", rangemode="tozero")
    return styled(fig, title, 380)
