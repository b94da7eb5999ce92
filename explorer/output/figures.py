"""Plotly figure builders: arrays and DataFrames in, go.Figure out (no I/O, no Streamlit)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative, sample_colorscale
from plotly.subplots import make_subplots

FONT = dict(family="Inter, system-ui, sans-serif", size=13)
ACCENT = "#4C6EF5"
MUTED = "#ADB5BD"
BOTTLENECK = "#E8590C"
METRIC_COLORS = {"probe_acc": "#4C6EF5", "knn_acc": "#12B886", "silhouette": "#F59F00", "dim": "#868E96"}
METRIC_NAMES = {"probe_acc": "linear probe acc.", "knn_acc": "kNN acc.", "silhouette": "silhouette (cosine)"}
UNLABELED = "(unlabeled)"
WEBGL_ABOVE = 1000  # points per panel


def class_colors(classes: Sequence[str]) -> dict[str, str]:
    """One stable colour per class, the same in every panel and figure."""
    palette = qualitative.Plotly if len(classes) <= 10 else qualitative.Dark24 + qualitative.Light24
    return {c: palette[i % len(palette)] for i, c in enumerate(sorted(classes))}


MAX_COLOUR_GROUPS = 20  # distinct values of a column coloured apart; the rarer ones are "other"
NUMBER_BINS = 8  # a numeric column with more distinct values is coloured by quantile ranges
OTHER, EMPTY = "(other)", "(empty)"


def value_groups(values: Sequence[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Colour groups for a column of text values (a labels.csv column): (each row's group, the groups'
    names, their colours). Up to MAX_COLOUR_GROUPS values are their own groups; a numeric column with
    more is cut into NUMBER_BINS quantile ranges (a sequential scale); any other keeps its most
    frequent values and puts the rest in "(other)"."""
    vals = np.array([v if v else EMPTY for v in values], dtype=object)
    uniq, inverse, counts = np.unique(vals, return_inverse=True, return_counts=True)
    numbers = pd.to_numeric(pd.Series(vals), errors="coerce")
    given = vals != EMPTY
    numeric = given.any() and numbers[given].notna().mean() > 0.95
    if len(uniq) <= MAX_COLOUR_GROUPS:
        if numeric:  # 2, 9, 10 rather than 10, 2, 9
            order = np.argsort(pd.to_numeric(pd.Series(uniq), errors="coerce").fillna(np.inf).to_numpy(), kind="stable")
            rank = np.empty(len(uniq), dtype=np.int64)
            rank[order] = np.arange(len(uniq))
            uniq, inverse = uniq[order], rank[inverse]
        names = [str(u) for u in uniq]
        colors = class_colors(names)
        return inverse.astype(np.int64), names, [colors[n] for n in names]
    if numeric:
        cut, edges = pd.qcut(numbers, NUMBER_BINS, duplicates="drop", retbins=True)
        codes = cut.cat.codes.to_numpy().astype(np.int64)
        names = [f"{a:.4g} to {b:.4g}" for a, b in zip(edges[:-1], edges[1:])]
        scale = sample_colorscale("Viridis", [i / max(len(names) - 1, 1) for i in range(len(names))])
        if (codes < 0).any():  # not a number
            codes[codes < 0] = len(names)
            names.append(OTHER)
            scale.append("#C8C8C8")
        return codes, names, scale
    top = np.argsort(-counts, kind="stable")[: MAX_COLOUR_GROUPS - 1]
    names = [str(uniq[t]) for t in top]
    remap = np.full(len(uniq), len(names), dtype=np.int64)
    remap[top] = np.arange(len(top))
    colors = class_colors(names)
    return remap[inverse], [*names, OTHER], [*(colors[n] for n in names), "#C8C8C8"]


_AXIS = dict(
    gridcolor="#EBF0F8",
    linecolor="#EBF0F8",
    ticks="",
    zerolinecolor="#EBF0F8",
    zerolinewidth=2,
    automargin=True,
    title=dict(standoff=15),
)
_SCENE_AXIS = dict(
    backgroundcolor="white",
    gridcolor="#DFE8F3",
    linecolor="#EBF0F8",
    showbackground=True,
    ticks="",
    zerolinecolor="#EBF0F8",
    gridwidth=2,
)
TEMPLATE = go.layout.Template(
    layout=dict(
        paper_bgcolor="white",
        plot_bgcolor="white",
        font=dict(color="#2a3f5f"),
        colorway=qualitative.Plotly,
        hovermode="closest",
        hoverlabel=dict(align="left"),
        xaxis=_AXIS,
        yaxis=_AXIS,
        scene=dict(xaxis=_SCENE_AXIS, yaxis=_SCENE_AXIS, zaxis=_SCENE_AXIS),
    )
)
"""The layout part of plotly's `plotly_white`. The named template carries defaults for every trace type:
validating and copying it cost 0.4 s of a cold `compare` and 0.2 s per report after that."""


def styled(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    """The house style on a figure: title, font, template, margins and height."""
    fig.update_layout(
        title=dict(text=title, x=0.01, xanchor="left"),
        font=FONT,
        height=height,
        template=TEMPLATE,
        margin=dict(l=60, r=30, t=60, b=60),
        legend=dict(orientation="h", yanchor="bottom", y=1.02, x=1, xanchor="right"),
    )
    return fig


def dimension_profile(profile: object, chosen: Sequence[str] = (), intrinsic: pd.DataFrame | None = None) -> go.Figure:
    """Pooled dimension and full C x H x W size of every layer across depth (log scale), and for
    the analysed layers their intrinsic dimension and RankMe.

    Args:
        profile: a layers.LayerProfile.
        chosen: node names to highlight.
        intrinsic: rows of tables.dimension_table for this model, with a `node` column (None: not drawn).
    """
    layers = list(profile.layers)  # type: ignore[attr-defined]
    x = [i.index for i in layers]
    names = [i.node for i in layers]
    shapes = ["x".join(map(str, i.shape)) for i in layers]
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[i.size for i in layers],
            name="full size (C×H×W)",
            mode="lines",
            line=dict(color=MUTED, width=1.5),
            customdata=np.stack([names, shapes], axis=1),
            hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>size %{y:,}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=[i.dim for i in layers],
            name="pooled dimension",
            mode="lines+markers",
            line=dict(color=ACCENT, width=2),
            marker=dict(size=4),
            customdata=np.stack([names, shapes], axis=1),
            hovertemplate="%{customdata[0]}<br>%{customdata[1]}<br>dim %{y:,}<extra></extra>",
        )
    )
    bn = [i for i in layers if i.is_bottleneck]
    if bn:
        fig.add_trace(
            go.Scatter(
                x=[i.index for i in bn],
                y=[i.dim for i in bn],
                name="bottleneck",
                mode="markers",
                marker=dict(symbol="triangle-down", size=10, color=BOTTLENECK),
                text=[i.node for i in bn],
                hovertemplate="bottleneck %{text}<br>dim %{y:,}<extra></extra>",
            )
        )
    sel = [i for i in layers if i.node in set(chosen)]
    if sel:
        fig.add_trace(
            go.Scatter(
                x=[i.index for i in sel],
                y=[i.dim for i in sel],
                name="chosen layers",
                mode="markers+text",
                marker=dict(size=13, color="rgba(0,0,0,0)", line=dict(color="#212529", width=2)),
                text=[i.node for i in sel],
                textposition="top center",
                textfont=dict(size=10),
                hovertemplate="%{text}<br>dim %{y:,}<extra></extra>",
            )
        )
    if intrinsic is not None and not intrinsic.empty:
        where = {i.node: i.index for i in layers}
        rows = intrinsic[intrinsic["node"].isin(where) & intrinsic["twonn_id"].notna()]
        xs = [where[n] for n in rows["node"]]
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=rows["twonn_id"],
                name="intrinsic dimension (TwoNN)",
                mode="lines+markers",
                line={"color": "#E8590C", "width": 2},
                error_y={
                    "type": "data",
                    "symmetric": False,
                    "array": (rows["twonn_high"] - rows["twonn_id"]).to_numpy(),
                    "arrayminus": (rows["twonn_id"] - rows["twonn_low"]).to_numpy(),
                    "thickness": 1,
                },
                text=rows["layer"],
                hovertemplate="%{text}<br>TwoNN %{y:.1f}<extra></extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=rows["rankme"],
                name="RankMe (effective rank)",
                mode="lines+markers",
                line={"color": "#2B8A3E", "width": 1.5, "dash": "dot"},
                text=rows["layer"],
                hovertemplate="%{text}<br>RankMe %{y:.1f}<extra></extra>",
            )
        )
        low = rows[rows["minimum"]]
        if not low.empty:
            fig.add_trace(
                go.Scatter(
                    x=[where[n] for n in low["node"]],
                    y=low["twonn_id"],
                    name="intrinsic dimension's minimum",
                    mode="markers",
                    marker={"symbol": "star", "size": 16, "color": "#E8590C"},
                    text=low["layer"],
                    hovertemplate="the minimum: %{text}<br>TwoNN %{y:.1f}<extra></extra>",
                )
            )
    fig.update_yaxes(type="log", title="values per image (log)")
    fig.update_xaxes(title="layer (execution order)")
    return styled(fig, f"Dimension profile — {profile.model}")  # type: ignore[attr-defined]


def _interval(df: pd.DataFrame, col: str) -> dict | None:
    """Asymmetric error bars from the metric's `_low` / `_high` columns (its bootstrap interval)."""
    if f"{col}_low" not in df or df[f"{col}_low"].isna().all():
        return None
    acc = df[col].to_numpy(dtype=float)
    return dict(
        type="data",
        symmetric=False,
        visible=True,
        thickness=1.2,
        width=4,
        array=np.nan_to_num(df[f"{col}_high"].to_numpy(dtype=float) - acc).tolist(),
        arrayminus=np.nan_to_num(acc - df[f"{col}_low"].to_numpy(dtype=float)).tolist(),
    )


CONTROL_NAMES = {"probe_acc": ("probe_control", "probe control (labels permuted)"),
                 "knn_acc": ("knn_control", "kNN control (labels permuted)")}  # fmt: skip


def separability(metrics: pd.DataFrame, *, show_dim: bool = True, chance: float | None = None) -> go.Figure:
    """Probe and kNN accuracy with their 95 % bootstrap intervals and their label-permutation
    controls, silhouette, across depth; layer dimension on a second axis.

    Args:
        metrics: the metrics table (columns of record.METRIC_COLUMNS).
        show_dim: draw the dimension on the right axis.
        chance: the accuracy of always answering the most frequent class, drawn as a line.
    """
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    models = list(dict.fromkeys(metrics["model"]))
    dashes = ["solid", "dash", "dot", "dashdot"]
    for mi, model in enumerate(models):
        df = metrics[metrics["model"] == model].sort_values("depth")
        suffix = f" — {model}" if len(models) > 1 else ""
        text = df["layer"].tolist()
        for col in ("probe_acc", "knn_acc", "silhouette"):
            if df[col].isna().all():
                continue
            hover = "%{text}<br>" + METRIC_NAMES[col] + " %{y:.3f}"
            custom = None
            if f"{col}_low" in df and f"{col}_std" in df:
                custom = df[[f"{col}_low", f"{col}_high", f"{col}_std"]].to_numpy(dtype=float)
                hover += (
                    "<br>95 % interval %{customdata[0]:.3f}–%{customdata[1]:.3f}<br>± %{customdata[2]:.3f} over folds"
                )
            fig.add_trace(
                go.Scatter(
                    x=df["depth"],
                    y=df[col],
                    name=METRIC_NAMES[col] + suffix,
                    mode="lines+markers",
                    error_y=_interval(df, col),
                    line=dict(color=METRIC_COLORS[col], dash=dashes[mi % 4], width=2),
                    text=text,
                    customdata=custom,
                    hovertemplate=hover + "<extra>" + model + "</extra>",
                ),
                secondary_y=False,
            )
            control, name = CONTROL_NAMES.get(col, (None, ""))
            if control in df and not df[control].isna().all():
                fig.add_trace(
                    go.Scatter(
                        x=df["depth"],
                        y=df[control],
                        name=name + suffix,
                        mode="lines",
                        opacity=0.6,
                        line=dict(color=METRIC_COLORS[col], dash="dot", width=1.5),
                        text=text,
                        hovertemplate="%{text}<br>" + name + " %{y:.3f}<extra>" + model + "</extra>",
                    ),
                    secondary_y=False,
                )
    if show_dim:
        fig.add_trace(
            go.Scatter(
                x=df["depth"],
                y=df["dim"],
                name="dimension" + suffix,
                mode="lines+markers",
                line=dict(color=METRIC_COLORS["dim"], dash=dashes[mi % 4], width=1),
                marker=dict(symbol="square", size=6),
                text=text,
                hovertemplate="%{text}<br>dim %{y:,}<extra>" + model + "</extra>",
            ),
            secondary_y=True,
        )
    fig.update_yaxes(
        title="score",
        range=[min(-0.05, float(np.nanmin(metrics["silhouette"].to_numpy(dtype=float), initial=0)) - 0.05), 1.05],
        secondary_y=False,
    )
    dims = metrics["dim"].dropna().to_numpy(dtype=float)
    dims = dims[dims > 0]
    lo, hi = (int(np.floor(np.log2(dims.min()))), int(np.ceil(np.log2(dims.max())))) if len(dims) else (0, 12)
    ticks = [2**k for k in range(lo, hi + 1)]  # layer widths are mostly powers of two: label those
    fig.update_yaxes(
        title="dimension (log₂)",
        type="log",
        secondary_y=True,
        showgrid=False,
        tickvals=ticks,
        ticktext=[f"{t:,}" for t in ticks],
    )
    fig.update_xaxes(title="relative depth (0 = input, 1 = output)")
    if chance is not None and not metrics["probe_acc"].isna().all():
        fig.add_hline(
            y=chance,
            line=dict(color="#888", dash="dot", width=1),
            secondary_y=False,
            annotation_text=f"chance {chance:.2f} (most frequent class)",
            annotation_position="bottom left",
            annotation_font=dict(size=11, color="#666"),
        )
    if metrics["probe_acc"].isna().all():
        fig.add_annotation(
            text="no labels: accuracy metrics not applicable", showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper"
        )
    fig = styled(fig, "Separability across depth")
    fig.update_layout(margin=dict(r=80))  # room for the right axis' labels
    return fig


LAYER_MATRICES = {
    "cka": ("Layer similarity (linear CKA)", "CKA"),
    "cka_debiased": ("Layer similarity (debiased linear CKA)", "debiased<br>CKA"),
    "overlap": ("Neighbourhood overlap (share of the 10 nearest neighbours kept)", "overlap"),
    **{
        f"calibrated_{m}": (
            f"{name} above its permutation null (0 = what unrelated layers score, 1 = identical)",
            label,
        )
        for m, name, label in (
            ("cka", "Linear CKA", "calibrated<br>CKA"),
            ("cknna", "CKNNA", "calibrated<br>CKNNA"),
            ("mutual_knn", "Mutual k-NN alignment", "calibrated<br>mutual k-NN"),
            ("rsa", "RSA", "calibrated<br>RSA"),
            ("procrustes", "Procrustes shape distance", "calibrated<br>Procrustes"),
        )
    },
}


def cka_heatmap(
    names: Sequence[str],
    matrix: np.ndarray,
    *,
    kind: str = "cka",
    clickable: bool = False,
    interval: tuple[np.ndarray, np.ndarray] | None = None,
    inside: np.ndarray | None = None,
    details: np.ndarray | None = None,
) -> go.Figure:
    """A layer-by-layer matrix: linear CKA, debiased CKA, neighbourhood overlap, or a measure
    calibrated against its permutation null.

    Args:
        names: layer keys (rows and columns).
        matrix: (L, L) values.
        kind: a key of LAYER_MATRICES (title and colour-bar label).
        clickable: overlay one invisible marker per cell carrying `customdata` = (row, column), so a
            click selects the cell (plotly heatmaps themselves emit no selection events).
        interval: (low, high) (L, L) 95 % intervals, shown on hover.
        inside: (L, L) bool, the cells whose score is inside its null: marked with a grey cross, a
            legend entry "inside the null".
        details: (L, L) text, one more hover line per cell (the raw score and its null).
    """
    title, label = LAYER_MATRICES[kind]
    short = label.replace("<br>", " ")
    hover = f"%{{y}}<br>%{{x}}<br>{short} %{{z:.3f}}"
    custom = None
    if interval is not None:
        custom = np.stack(interval, axis=-1)
        hover += "<br>95 % interval %{customdata[0]:.3f}–%{customdata[1]:.3f}"
    if details is not None:
        hover += "<br>%{text}"
    fig = go.Figure(
        go.Heatmap(
            z=matrix,
            x=list(names),
            y=list(names),
            zmin=0,
            zmax=1,
            colorscale="Viridis",
            customdata=custom,
            colorbar=dict(title=label),
            hovertemplate=hover + "<extra></extra>",
            text=details if details is not None else np.round(matrix, 2),
            texttemplate=("%{z:.2f}" if details is not None else "%{text}") if len(names) <= 12 else None,
        )
    )
    if inside is not None and inside.any():
        rows, cols = np.nonzero(inside)
        fig.add_trace(
            go.Scatter(
                x=[names[j] for j in cols],
                y=[names[i] for i in rows],
                mode="markers",
                name="inside the null",
                showlegend=True,
                marker=dict(symbol="x-thin-open", size=max(10, min(36, 500 // max(1, len(names)))), color="#9e9e9e"),
                marker_line_width=2,
                hoverinfo="skip",
            )
        )
        fig.update_layout(legend=dict(orientation="h", y=-0.15))
    if clickable and len(names):
        rows, cols = np.indices(matrix.shape).reshape(2, -1)
        said = [
            f"{short} {matrix[i, j]:.3f}"
            + (f"<br>95 % interval {interval[0][i, j]:.3f}–{interval[1][i, j]:.3f}" if interval is not None else "")
            + (f"<br>{details[i, j]}" if details is not None else "")
            for i, j in zip(rows, cols)
        ]
        fig.add_trace(
            go.Scatter(  # on top of the heatmap, so it carries the hover text too
                x=[names[j] for j in cols],
                y=[names[i] for i in rows],
                mode="markers",
                showlegend=False,
                text=said,
                marker=dict(size=max(8, min(40, 600 // max(1, len(names)))), symbol="square", color="rgba(0,0,0,0)"),
                customdata=np.stack([rows, cols], axis=1),
                hovertemplate="%{y}<br>%{x}<br>%{text}<br>click to compare<extra></extra>",
            )
        )
        fig.update_layout(clickmode="event+select", dragmode=False)
    fig.update_yaxes(autorange="reversed")
    return styled(fig, title, height=max(420, 40 * len(names) + 160))


def emergence(curves: dict[str, tuple[Sequence[str], np.ndarray, np.ndarray]], title: str) -> go.Figure:
    """Accuracy along depth of the probe telling a selection from the rest, one line per curve
    ({name: (layer names, accuracy, std)}), with its fold spread as error bars and chance at 0.5."""
    fig = go.Figure()
    for i, (name, (layers, acc, std)) in enumerate(curves.items()):
        fig.add_trace(
            go.Scatter(
                x=list(layers),
                y=np.asarray(acc, float).tolist(),
                error_y={"type": "data", "array": np.asarray(std, float).tolist(), "visible": True},
                mode="lines+markers",
                name=name,
                line={"dash": "dash" if "random" in name or i > 1 else "solid"},
            )
        )
    fig.add_hline(
        y=0.5, line_dash="dot", line_color="#888", annotation_text="chance", annotation_position="bottom right"
    )
    fig.update_yaxes(title="accuracy (balanced)", range=[0.3, 1.02])
    fig.update_xaxes(title="layer")
    return styled(fig, title, height=380)


def drawing_order(n: int, random_state: int = 0) -> np.ndarray:
    """A fixed permutation of n points: the order projection panels draw them in, so that no class
    is always drawn last (on top)."""
    return np.random.default_rng(random_state).permutation(n)


def projections(
    panels: dict[str, np.ndarray],
    labels: Sequence[str] | None,
    names: Sequence[str],
    *,
    titles: dict[str, str] | None = None,
    cols: int = 4,
    selected: Sequence[int] = (),
) -> go.Figure:
    """One scatter panel per layer, one colour per class across all panels.

    Each point carries its dataset index in `customdata[0]` (not plotly's point index), so a
    selection maps back to images whatever the trace order.

    Args:
        panels: {layer key: (N, 2 or 3) coordinates}.
        labels: class per point, or None.
        names: file name per point (hover text).
        titles: optional panel titles.
        cols: panels per row.
        selected: dataset indices to ring.
    """
    keys = list(panels)
    if not keys:
        return styled(go.Figure(), "No projections")
    dim3 = panels[keys[0]].shape[1] == 3
    cols = max(1, min(cols, len(keys)))
    rows = math.ceil(len(keys) / cols)
    titles = titles or {}
    spec_type = "scene" if dim3 else "xy"
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=[titles.get(k, k) for k in keys],
        specs=[[{"type": spec_type}] * cols for _ in range(rows)],
        horizontal_spacing=0.04,
        vertical_spacing=0.12 / rows,
    )
    labs = np.asarray(labels if labels is not None else [UNLABELED] * len(names))
    colors = class_colors(sorted(set(labs.tolist())))
    idx = np.arange(len(names))
    name_arr = np.asarray(names)
    # SVG draws a few thousand points faster than WebGL sets up one context per panel (browsers
    # without a GPU emulate WebGL); WebGL only pays off for large datasets.
    scatter = go.Scattergl if len(names) > WEBGL_ABOVE else go.Scatter
    if not dim3:  # the legend: one entry per class, drawn nowhere
        for cls, color in colors.items():
            fig.add_trace(
                scatter(
                    x=[None],
                    y=[None],
                    mode="markers",
                    name=str(cls),
                    legendgroup=str(cls),
                    marker=dict(size=6, color=color),
                ),
                row=1,
                col=1,
            )
    order = drawing_order(len(names))
    classes = list(colors)
    codes = np.searchsorted(np.array(classes), labs) if len(classes) else np.zeros(len(labs), int)
    steps = [[(c + e) / len(classes), colors[k]] for c, k in enumerate(classes) for e in (0, 1)]
    for pi, key in enumerate(keys):
        r, c = pi // cols + 1, pi % cols + 1
        xy = panels[key]
        if not dim3:
            # every point in one trace, in an order that favours no class (one trace per class drew
            # the last class over all the others where they overlap)
            # colours as class codes on a stepped colour scale: plotly validates a list of colour
            # strings one by one (4 s for 8 x 10,000 points, against 0.5 s for numbers)
            fig.add_trace(
                scatter(
                    x=xy[order, 0],
                    y=xy[order, 1],
                    mode="markers",
                    showlegend=False,
                    customdata=np.stack([idx[order], name_arr[order], labs[order]], axis=1),
                    hovertemplate="%{customdata[1]}<br>%{customdata[2]}<extra></extra>",
                    marker=dict(
                        size=6, color=codes[order], colorscale=steps, cmin=-0.5, cmax=len(classes) - 0.5, opacity=0.85
                    ),
                ),
                row=r,
                col=c,
            )
        for cls, color in colors.items() if dim3 else ():  # 3-D: a trace per class (plotly sorts by depth)
            m = labs == cls
            fig.add_trace(
                go.Scatter3d(
                    x=xy[m, 0],
                    y=xy[m, 1],
                    z=xy[m, 2],
                    mode="markers",
                    marker=dict(size=3, color=color),
                    name=str(cls),
                    legendgroup=str(cls),
                    showlegend=pi == 0,
                    customdata=np.stack([idx[m], name_arr[m]], axis=1),
                    hovertemplate="%{customdata[1]}<br>" + str(cls) + "<extra></extra>",
                ),
                row=r,
                col=c,
            )
        if selected and not dim3:
            s = np.asarray(selected, dtype=int)
            fig.add_trace(
                go.Scatter(
                    x=xy[s, 0],
                    y=xy[s, 1],
                    mode="markers",
                    showlegend=False,
                    hoverinfo="skip",
                    marker=dict(size=12, color="rgba(0,0,0,0)", line=dict(color="#212529", width=2)),
                ),
                row=r,
                col=c,
            )
    fig.update_xaxes(showticklabels=False, zeroline=False)
    fig.update_yaxes(showticklabels=False, zeroline=False)
    fig.update_layout(dragmode="lasso" if not dim3 else "orbit", hovermode="closest")
    fig = styled(fig, "Projections by layer", height=max(400, 330 * rows + 120))
    # title at the very top, the class legend in its own row below it, then the panel titles
    fig.update_layout(
        margin=dict(t=110),
        title=dict(y=1, yref="container", yanchor="top", pad=dict(t=12)),
        legend=dict(y=1.0 + 36 / fig.layout.height, yanchor="bottom", x=0, xanchor="left"),
    )
    return fig
