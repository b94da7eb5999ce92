"""The result tabs and the small ones: dataset, architecture, export (projections_view.py,
separability_view.py, new_classes_view.py, cut_view.py and similarity_view.py hold the others)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import replace
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ..output import export, figures, tables
from ..record import Comparison
from . import pending, reproduce, sidebar
from .cut_view import cut_tab
from .images import image_grid
from .new_classes_view import new_classes_tab
from .plots import PLOT_CONFIG
from .projections_view import projections_tab
from .separability_view import separability_tab
from .similarity_view import shown_alignment, similarity_tab
from .text import code


def dataset_tab(comp: Comparison) -> None:
    ds = comp.dataset
    c1, c2, c3 = st.columns(3)
    c1.metric("Images", len(ds))
    c2.metric("Classes", len(ds.classes) or "unlabeled")
    c3.metric("Skipped files", len(ds.skipped))
    if ds.labels is not None:
        counts = ds.class_counts
        colors = figures.class_colors(list(counts))
        fig = go.Figure(go.Bar(x=list(counts), y=list(counts.values()), marker_color=[colors[c] for c in counts]))
        fig.update_layout(
            height=260, margin=dict(l=40, r=10, t=30, b=40), template=figures.TEMPLATE, yaxis_title="images"
        )
        st.plotly_chart(fig, config=PLOT_CONFIG, key="class_counts")
    labels = np.asarray(ds.labels) if ds.labels is not None else np.array(["all"] * len(ds))
    for cls in sorted(set(labels.tolist()))[:20]:
        st.markdown(code(cls))
        image_grid(comp, np.flatnonzero(labels == cls)[:8].tolist(), caption=False)
    if ds.skipped:
        st.markdown("#### Skipped files")
        st.dataframe(
            pd.DataFrame([(s.file, s.reason) for s in ds.skipped], columns=["file", "reason"]),
            hide_index=True,
            key="skipped_table",
        )
    if ds.duplicates:
        st.markdown("#### Duplicates (left out)")
        st.dataframe(pd.DataFrame(ds.duplicates, columns=["file", "same bytes as"]), hide_index=True, key="dup_table")


def architecture_tab(comp: Comparison) -> None:
    dimension = tables.dimension_table(comp)
    for r in comp.runs:
        if r.label.endswith("[random]"):
            continue
        st.plotly_chart(
            figures.dimension_profile(r.profile, list(r.nodes.values()), dimension[dimension["model"] == r.label]),
            config=PLOT_CONFIG,
            key=f"profile_{r.label}",
        )
    st.caption(
        "Pooled dimension (what the probe sees) and the full C×H×W size per layer. ▼ bottlenecks are narrower "
        "than the layers on either side; circled layers are the ones analysed. For those: the intrinsic "
        "dimension by TwoNN (Facco et al. 2017; 95 % bootstrap interval, read on a sample of at most 2,000 images, "
        "★ its minimum) and RankMe, the effective rank (Garrido et al. 2023). dimension.csv has every number."
    )


def _asked_selection(comp: Comparison) -> tuple[str, list[int]] | None:
    """The selection whose emergence this session last asked about for this result, as the
    report names it and its rows; None if none."""
    stored = st.session_state.get("emergence")  # projections_view.EmergenceAnswer
    if stored is None or stored.tag[0] != id(comp):
        return None
    rows = list(stored.tag[2])
    return f"the {len(rows):,} images selected", rows


def export_tab(comp: Comparison, inputs: sidebar.Inputs) -> None:
    # Files are made when clicked (callables), not on every rerun, and not kept in session memory.
    if pending.says_files_pending(comp):
        return
    selection = _asked_selection(comp)
    files = [
        ("metrics.csv", export.metrics_csv, "text/csv"),
        ("leaderboard.csv", export.leaderboard_csv, "text/csv"),
        ("compression.csv", export.compression_csv, "text/csv"),
        ("dimension.csv", export.dimension_csv, "text/csv"),
        ("retrieval.csv", export.retrieval_csv, "text/csv"),
        ("few_shot.csv", export.few_shot_csv, "text/csv"),
        ("unseen_compression.csv", export.unseen_compression_csv, "text/csv"),
        ("cka.csv", export.cka_csv, "text/csv"),
        ("cka_debiased.csv", export.cka_debiased_csv, "text/csv"),
        ("cka_intervals.csv", export.cka_intervals_csv, "text/csv"),
        ("neighbour_overlap.csv", export.neighbour_overlap_csv, "text/csv"),
        ("movers.csv", export.movers_csv, "text/csv"),
        ("class_pairs.csv", export.class_pairs_csv, "text/csv"),
        ("features.npz", export.features_npz, "application/octet-stream"),
        ("projections.csv", export.projections_csv, "text/csv"),
        ("report.html", functools.partial(export.report.render, selection=selection), "text/html"),
        ("skipped.csv", export.skipped_csv, "text/csv"),
    ]
    alignment = shown_alignment(comp)
    if alignment:  # the measures against their nulls, from the run or asked for in Layer similarity
        files.append(("similarity.csv", lambda c: export.similarity_csv(replace(c, alignment=alignment)), "text/csv"))
    if selection is not None:  # where the selection asked about in Projections emerges
        files.append(
            ("selection_emergence.csv", functools.partial(export.emergence_csv, selected=selection[1]), "text/csv")
        )
    cols = st.columns(3)
    for i, (name, make, mime) in enumerate(files):
        cols[i % 3].download_button(
            name, functools.partial(make, comp), name, mime, key=f"dl_{name.split('.')[0]}", on_click="ignore"
        )
    st.markdown("#### Share this view")
    st.code("?" + urlencode(reproduce.share_params(inputs)), language=None)
    st.caption(
        "Append to this app's address: it reopens with the same data, model, layers, weights, baseline, "
        "second model, pooling and projection settings. Uploaded data is never part of a link."
    )
    st.caption(
        "The same analysis from the command line (same numbers; an upload is named by a placeholder for your copy):"
    )
    st.code(reproduce.cli_command(inputs), language="bash")


VIEWS = (
    "Projections",
    "Separability",
    "New classes",
    "Choose a cut",
    "Layer similarity",
    "Architecture",
    "Dataset",
    "Export",
)


def render(
    comp: Comparison,
    inputs: sidebar.Inputs,
    export_cut: Callable[[str, str], None] | None = None,
    ask_emergence: Callable[[str, tuple[int, ...]], None] | None = None,
    ask_nulls: Callable[[], None] | None = None,
) -> None:
    """The result views; only the open tab's figures are built (lazy tabs: a rerun builds one view).
    `export_cut(model, layer)` queues a cut's export (None: not offered); `ask_emergence(run,
    images)` queues the job that finds where those images emerge; `ask_nulls()` the one that tests
    every pair of layers against its null (None: not offered)."""
    align = bool(getattr(inputs, "align", True))
    pending.banner(comp)
    tabs = st.tabs(list(VIEWS), key="view", on_change="rerun")
    draw = {
        "Projections": lambda: projections_tab(comp, align, ask_emergence),
        "Separability": lambda: separability_tab(comp),
        "New classes": lambda: new_classes_tab(comp),
        "Choose a cut": lambda: cut_tab(comp, export_cut),
        "Layer similarity": lambda: similarity_tab(comp, align, ask_nulls),
        "Architecture": lambda: architecture_tab(comp),
        "Dataset": lambda: dataset_tab(comp),
        "Export": lambda: export_tab(comp, inputs),
    }
    for name, tab in zip(VIEWS, tabs):
        if tab.open:
            with tab:
                draw[name]()
