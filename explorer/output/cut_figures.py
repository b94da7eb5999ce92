"""The figures that choose a cut: probe accuracy against GFLOPs with the Pareto front drawn, and
the compression curves (top-k principal components against a random projection)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

from .figures import ACCENT, MUTED, styled

FRONT = "#E8590C"


def _hover(row: pd.Series) -> str:
    def num(v: object, fmt: str) -> str:
        return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else format(v, fmt)

    return (
        f"<b>{row['model']}</b> at {row['layer']}<br>probe {num(row['probe_acc'], '.3f')} "
        f"({num(row['probe_acc_low'], '.3f')}–{num(row['probe_acc_high'], '.3f')}) · kNN {num(row['knn_acc'], '.3f')}"
        f" · LogME {num(row['logme'], '.3f')}<br>{num(row['gflops'], '.3g')} GFLOPs · {num(row['params'], ',.0f')} params"
        f"<br>{num(row['latency_ms_b1'], '.2f')} ms/img at batch 1 · {num(row['latency_ms_b32'], '.2f')} at 32"
        f"<br>{int(row['dim'])} dims · {int(row['feature_bytes']):,} bytes/img"
        + ("<br><b>on the Pareto front</b>" if row["pareto"] else "")
    )


def pareto(
    board: pd.DataFrame,
    *,
    highlight: tuple[str, str] | None = None,
    within: pd.DataFrame | None = None,
    height: int = 460,
) -> go.Figure:
    """Probe accuracy (its 95 % interval as error bars) against GFLOPs up to the layer (log axis),
    one point per (model, layer), each model its colour, the front as a step line; every number on
    hover. `highlight` rings one (model, layer); with `within` (the rows inside a budget) the
    others are drawn grey."""
    fig = go.Figure()
    scored = board[board["probe_acc"].notna() & board["gflops"].notna() & (board["gflops"] > 0)]
    if within is not None and len(within) < len(board):
        inside = set(zip(within["model"], within["layer"]))
        outside = scored[[(m, lay) not in inside for m, lay in zip(scored["model"], scored["layer"])]]
        fig.add_trace(
            go.Scatter(
                x=outside["gflops"],
                y=outside["probe_acc"],
                mode="markers",
                name="outside the budget",
                marker=dict(size=7, color="#DEE2E6"),
                hovertext=[_hover(r) for _, r in outside.iterrows()],
                hoverinfo="text",
            )
        )
        scored = scored.drop(outside.index)
    palette = qualitative.Plotly
    for i, (model, rows) in enumerate(scored.groupby("model", sort=False)):
        fig.add_trace(
            go.Scatter(
                x=rows["gflops"],
                y=rows["probe_acc"],
                mode="markers",
                name=str(model),
                marker=dict(
                    size=np.where(rows["pareto"], 12, 8),
                    color=palette[i % len(palette)],
                    line=dict(width=np.where(rows["pareto"], 2, 0), color=FRONT),
                ),
                error_y=dict(
                    type="data",
                    symmetric=False,
                    array=(rows["probe_acc_high"] - rows["probe_acc"]).to_numpy(),
                    arrayminus=(rows["probe_acc"] - rows["probe_acc_low"]).to_numpy(),
                    thickness=1,
                    width=0,
                ),
                customdata=np.stack([rows["model"], rows["layer"]], axis=1),
                hovertext=[_hover(r) for _, r in rows.iterrows()],
                hoverinfo="text",
            )
        )
    front = scored[scored["pareto"]].sort_values("gflops")
    if len(front):
        fig.add_trace(
            go.Scatter(
                x=front["gflops"],
                y=front["probe_acc"],
                mode="lines",
                line=dict(color=FRONT, width=2, shape="hv"),
                name="Pareto front",
                hoverinfo="skip",
            )
        )
    if highlight is not None:
        hit = scored[(scored["model"] == highlight[0]) & (scored["layer"] == highlight[1])]
        if len(hit):
            fig.add_trace(
                go.Scatter(
                    x=hit["gflops"],
                    y=hit["probe_acc"],
                    mode="markers",
                    name="chosen",
                    marker=dict(size=22, color="rgba(0,0,0,0)", line=dict(width=3, color="#212529")),
                    hoverinfo="skip",
                )
            )
    fig.update_xaxes(type="log", title_text="GFLOPs per image up to the layer (log)")
    fig.update_yaxes(title_text="linear probe accuracy")
    return styled(fig, "Accuracy against cost: every (model, layer), the front in orange", height)


def compression(
    curves: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], title: str, height: int | None = None
) -> go.Figure:
    """Small multiples, one per layer: probe accuracy on the top k principal components and on a
    random projection to k dimensions, against k (log axis); a dotted line at 95 % of the full width's."""
    n = max(len(curves), 1)
    cols = min(4, n)
    rows = (n + cols - 1) // cols
    fig = make_subplots(
        rows=rows, cols=cols, subplot_titles=list(curves) or [""], horizontal_spacing=0.06, vertical_spacing=0.16
    )
    for i, (name, (ks, pca, rnd)) in enumerate(curves.items()):
        r, c = i // cols + 1, i % cols + 1
        first = i == 0
        fig.add_trace(
            go.Scatter(
                x=ks,
                y=pca,
                mode="lines+markers",
                name="top-k principal components",
                legendgroup="pca",
                showlegend=first,
                line=dict(color=ACCENT),
                marker=dict(size=5),
                hovertemplate=f"{name}<br>k=%{{x}}: %{{y:.3f}} (PCA)<extra></extra>",
            ),
            row=r,
            col=c,
        )
        fig.add_trace(
            go.Scatter(
                x=ks,
                y=rnd,
                mode="lines+markers",
                name="random projection (control)",
                legendgroup="rnd",
                showlegend=first,
                line=dict(color=MUTED, dash="dot"),
                marker=dict(size=4),
                hovertemplate=f"{name}<br>k=%{{x}}: %{{y:.3f}} (random)<extra></extra>",
            ),
            row=r,
            col=c,
        )
        fig.add_hline(y=0.95 * float(pca[-1]), line=dict(color=FRONT, width=1, dash="dot"), row=r, col=c)
        fig.update_xaxes(type="log", row=r, col=c)
    return styled(fig, title, height or 260 * rows + 80)
