"""Per-class figures of the probe: accuracy per class, its confusion matrix at one layer and at
every layer side by side, and where each pair of classes comes apart."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .figures import class_colors, styled


def per_class_accuracy(confusion: np.ndarray, classes: Sequence[str], title: str) -> go.Figure:
    """The probe's out-of-fold accuracy for each class (the confusion matrix's diagonal over its rows)."""
    cm = np.asarray(confusion, dtype=float)
    counts = cm.sum(1)
    keep = counts > 0  # classes left out of the label metrics have no row
    acc = np.diag(cm)[keep] / counts[keep]
    names = [c for c, k in zip(classes, keep) if k]
    colors = class_colors(list(classes))
    order = np.argsort(acc)
    fig = go.Figure(
        go.Bar(
            x=acc[order],
            y=[names[i] for i in order],
            orientation="h",
            marker_color=[colors[names[i]] for i in order],
            text=[f"{a:.2f}" for a in acc[order]],
            textposition="outside",
            customdata=counts[keep][order],
            hovertemplate="%{y}: %{x:.3f} of %{customdata:.0f} images<extra></extra>",
        )
    )
    fig.update_xaxes(range=[0, 1.08], title="out-of-fold probe accuracy")
    fig = styled(fig, title)
    fig.update_layout(height=max(260, 26 * len(names) + 110))
    return fig


def confusion(matrix: np.ndarray, classes: Sequence[str], title: str) -> go.Figure:
    """A confusion matrix (rows: true class, columns: predicted)."""
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=list(classes),
            y=list(classes),
            colorscale="Blues",
            text=matrix,
            texttemplate="%{text}",
            hovertemplate="true %{y}<br>predicted %{x}<br>%{z} images<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed", title="true class")
    fig.update_xaxes(title="predicted class")
    return styled(fig, title, height=460)


def class_pairs_apart(
    first_apart: np.ndarray, classes: Sequence[str], layers: Sequence[str], threshold: float, title: str
) -> go.Figure:
    """Class x class: the depth of the first layer where the probe takes under `threshold` of a
    pair's images for the other class (dark: early; blank: never)."""
    never = first_apart < 0
    z = np.where(never, np.nan, first_apart.astype(float) + 1)
    text = np.where(never, "never", np.array(list(layers) + ["never"], dtype=object)[first_apart])
    np.fill_diagonal(text, "")
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=list(classes),
            y=list(classes),
            zmin=1,
            zmax=max(len(layers), 1),
            colorscale="Viridis",
            customdata=text,
            colorbar={"title": "layer #"},
            hovertemplate=f"%{{y}} / %{{x}}<br>apart (< {threshold:.0%} confused) from %{{customdata}}<extra></extra>",
        )
    )
    fig.update_yaxes(autorange="reversed")
    return styled(fig, title, height=460)


SMALL_MULTIPLES_PER_ROW = 4


def confusions_along_depth(
    confusions: Sequence[np.ndarray], classes: Sequence[str], layers: Sequence[str], title: str
) -> go.Figure:
    """The probe's out-of-fold confusion matrix at each layer, side by side (four to a row), each
    row the share of a true class's images given to each class: off-diagonal mass that fades along
    depth is confusion the network resolves."""
    n = len(layers)
    cols = min(SMALL_MULTIPLES_PER_ROW, max(n, 1))
    rows = math.ceil(n / cols) if n else 1
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=list(layers), horizontal_spacing=0.04, vertical_spacing=0.12
    )
    ticks = len(classes) <= 12
    for j, cm in enumerate(confusions):
        counts = np.asarray(cm, dtype=float)
        with np.errstate(invalid="ignore", divide="ignore"):
            share = counts / counts.sum(1, keepdims=True)  # classes left out have no row: blank
        fig.add_trace(
            go.Heatmap(
                z=share,
                x=list(classes),
                y=list(classes),
                zmin=0,
                zmax=1,
                colorscale="Blues",
                showscale=j == 0,
                colorbar={"title": "share", "len": 0.6},
                customdata=counts,
                hovertemplate=f"{layers[j]}<br>true %{{y}}<br>predicted %{{x}}<br>%{{z:.0%}} (%{{customdata:.0f}} images)<extra></extra>",
            ),
            row=j // cols + 1,
            col=j % cols + 1,
        )
    fig.update_yaxes(autorange="reversed", showticklabels=ticks)
    fig.update_xaxes(showticklabels=False)
    fig.update_yaxes(showticklabels=False)
    for r in range(1, rows + 1):  # class names on the first panel of each row only
        fig.update_yaxes(showticklabels=ticks, row=r, col=1)
    return styled(fig, title, height=max(300, 260 * rows + 80))
