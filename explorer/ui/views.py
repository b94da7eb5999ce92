"""The result tabs: dataset, architecture, projections, separability, layer similarity, export."""

from __future__ import annotations

import functools
import io
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from .. import export, figures, report
from ..pipeline import Comparison

PLOT_CONFIG = {"displaylogo": False}


def _customdata(point: dict) -> list:
    """A selected point's customdata as a list (Streamlit hands arrays over as {"0": .., "1": ..})."""
    cd = point.get("customdata")
    if isinstance(cd, dict):
        return [cd[k] for k in sorted(cd, key=int)]
    return list(cd) if isinstance(cd, (list, tuple)) else []


def _thumbs(comp: Comparison, indices: list[int], caption: bool = True, cols: int = 8) -> None:
    ds = comp.dataset
    if not indices:
        return
    grid = st.columns(cols)
    for j, i in enumerate(indices):
        with grid[j % cols]:
            label = ds.labels[i] if ds.labels is not None else ""
            st.image(io.BytesIO(ds.thumbnails[i]), caption=f"{label}" if caption else None, width="stretch")


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
        fig.update_layout(height=260, margin=dict(l=40, r=10, t=30, b=40), template=figures.TEMPLATE, yaxis_title="images")
        st.plotly_chart(fig, config=PLOT_CONFIG, key="class_counts")
    labels = np.asarray(ds.labels) if ds.labels is not None else np.array(["all"] * len(ds))
    for cls in sorted(set(labels.tolist()))[:20]:
        st.markdown(f"**{cls}**")
        _thumbs(comp, np.flatnonzero(labels == cls)[:8].tolist(), caption=False)
    if ds.skipped:
        st.markdown("#### Skipped files")
        st.dataframe(pd.DataFrame([(s.file, s.reason) for s in ds.skipped], columns=["file", "reason"]),
                     hide_index=True, key="skipped_table")  # fmt: skip
    if ds.duplicates:
        st.markdown("#### Duplicates (left out)")
        st.dataframe(pd.DataFrame(ds.duplicates, columns=["file", "same bytes as"]), hide_index=True, key="dup_table")


def architecture_tab(comp: Comparison) -> None:
    for r in comp.runs:
        if r.label.endswith("[random]"):
            continue
        st.plotly_chart(figures.dimension_profile(r.profile, list(r.nodes.values())), config=PLOT_CONFIG, key=f"profile_{r.label}")
    st.caption("Pooled dimension (what the probe sees) and the full C×H×W size per layer. ▼ bottlenecks are narrower "
               "than the layers on either side; circled layers are the ones analysed.")  # fmt: skip


def projections_tab(comp: Comparison, align: bool) -> None:
    ds = comp.dataset
    if not comp.projections:
        st.info("No projections were computed.")
        return
    run = comp.runs[0]
    keys = [run.key(n, comp.multi) for n in run.features]
    panels = {k: v for k, v in comp.panels(align=align).items() if k in keys}
    msgs = {p.message for p in comp.projections.values() if p.message}
    for m in msgs:
        st.info(m)
    method = next(iter(comp.projections.values())).method.upper()
    titles = {k: f"{k} · {comp.scores[k].dim}-d" for k in panels}
    fig = figures.projections(panels, ds.labels, ds.names, titles=titles, cols=4)
    fig.update_layout(title_text=f"{method} of each layer{' (aligned)' if align else ''} — box or lasso to select")
    event = st.plotly_chart(fig, config=PLOT_CONFIG, key="proj_chart", on_select="rerun", selection_mode=("box", "lasso", "points"))
    picked: list[int] = []
    for pt in (event.selection.points if event and event.selection else []):
        cd = _customdata(pt)
        if cd:
            picked.append(int(cd[0]))
    picked = sorted(set(picked))
    if picked:
        st.markdown(f"#### {len(picked)} selected images")
        _thumbs(comp, picked[:48])
    st.markdown("#### Nearest neighbours of one image, layer by layer")
    default = picked[0] if picked else 0
    idx = st.selectbox("Image", list(range(len(ds))), index=default, key="nn_image", format_func=lambda i: ds.names[i],
                       help="Its 6 closest images (cosine) in each layer's original feature space.")  # fmt: skip
    c0, rest = st.columns([1, 6])
    c0.image(io.BytesIO(ds.thumbnails[idx]), caption=ds.names[idx])
    with rest:
        for k in keys:
            st.caption(k)
            _thumbs(comp, comp.neighbours(k, idx, 6).tolist(), cols=6)


def separability_tab(comp: Comparison) -> None:
    m = comp.metrics
    st.plotly_chart(figures.separability(m), config=PLOT_CONFIG, key="sep_chart")
    notes = {s.note for s in comp.scores.values() if s.note}
    for n in notes:
        st.info(f"Label metrics {n}.")
    st.dataframe(m, hide_index=True, key="metrics_table", column_config={
        "probe_acc": st.column_config.NumberColumn("probe acc", format="%.3f"),
        "probe_acc_std": st.column_config.NumberColumn("± std", format="%.3f"),
        "probe_c": st.column_config.NumberColumn("probe C", format="%g", help="chosen by nested cross-validation"),
        "probe_train": st.column_config.NumberColumn("probe train", help="training images per fold"),
        "knn_acc": st.column_config.NumberColumn("kNN acc", format="%.3f"),
        "knn_recall": st.column_config.NumberColumn("graph recall", format="%.3f", help="1 = exact neighbour search"),
        "silhouette": st.column_config.NumberColumn(format="%.3f"),
        "eff_dim": st.column_config.NumberColumn("eff. dim", format="%.1f"),
    })  # fmt: skip
    with_cm = [k for k, s in comp.scores.items() if s.confusion is not None]
    if with_cm:
        k = st.selectbox("Confusion matrix of the probe at layer", with_cm, index=len(with_cm) - 1, key="cm_layer")
        st.plotly_chart(figures.confusion(comp.scores[k].confusion, comp.dataset.classes, f"Probe confusion — {k}"),
                        config=PLOT_CONFIG, key="cm_chart")  # fmt: skip


def _clicked_cell(event: object) -> tuple[int, int] | None:
    points = event.selection.points if event and getattr(event, "selection", None) else []  # type: ignore[attr-defined]
    for pt in points:
        cd = _customdata(pt)
        if len(cd) == 2:
            return int(cd[0]), int(cd[1])
    return None


SIMILARITY_KINDS = {"Linear CKA": "cka", "Debiased CKA": "cka_debiased", "Neighbourhood overlap": "overlap"}


def similarity_tab(comp: Comparison, align: bool) -> None:
    names = comp.cka_names
    matrices = {"cka": comp.cka, "cka_debiased": comp.similarity.cka_debiased, "overlap": comp.overlap}
    shown = st.radio("Measure", list(SIMILARITY_KINDS), horizontal=True, key="similarity_kind")
    kind = SIMILARITY_KINDS[shown or "Linear CKA"]
    st.caption(report.MATRIX_NOTES[kind])
    clickable = len(names) >= 2 and bool(comp.projections)
    event = st.plotly_chart(figures.cka_heatmap(names, matrices[kind], kind=kind, clickable=clickable), config=PLOT_CONFIG,
                            key="cka_chart", on_select="rerun" if clickable else "ignore", selection_mode="points")  # fmt: skip
    if not clickable:
        return
    cell = _clicked_cell(event)
    if cell is not None and st.session_state.get("cka_cell") != cell:
        # a new click on the heatmap moves both pickers; the pickers stay usable on their own
        st.session_state["cka_cell"] = cell
        st.session_state["cka_a"], st.session_state["cka_b"] = names[cell[0]], names[cell[1]]
    for key, default in (("cka_a", names[0]), ("cka_b", names[-1])):
        if st.session_state.get(key) not in names:  # first view, or a new analysis with other layers
            st.session_state[key] = default
    st.markdown("#### Compare two layers")
    st.caption("Click a cell of the heatmap, or pick the two layers here.")
    c1, c2 = st.columns(2)
    a = c1.selectbox("Layer A (row)", names, key="cka_a")
    b = c2.selectbox("Layer B (column)", names, key="cka_b")
    i, j = names.index(a), names.index(b)
    st.caption(f"Linear CKA between them: **{comp.cka[i, j]:.3f}** (1 = the same geometry up to rotation and scale); "
               f"debiased CKA **{matrices['cka_debiased'][i, j]:.3f}**; neighbourhood overlap **{comp.overlap[i, j]:.3f}**.")  # fmt: skip
    panels = comp.panels(align=False)
    pair = {a: panels[a], b: panels[b]} if a != b else {a: panels[a]}
    if align and a != b and pair[a].shape[1] == 2:
        from ..projection import align as align_fn

        pair[b] = align_fn(pair[a], pair[b])
    st.plotly_chart(figures.projections(pair, comp.dataset.labels, comp.dataset.names, cols=2), config=PLOT_CONFIG, key="cka_pair")


def export_tab(comp: Comparison, share: dict[str, str]) -> None:
    # Files are made when clicked (callables), not on every rerun, and not kept in session memory.
    files = [
        ("metrics.csv", export.metrics_csv, "text/csv"), ("cka.csv", export.cka_csv, "text/csv"),
        ("cka_debiased.csv", export.cka_debiased_csv, "text/csv"),
        ("neighbour_overlap.csv", export.neighbour_overlap_csv, "text/csv"),
        ("features.npz", export.features_npz, "application/octet-stream"),
        ("projections.csv", export.projections_csv, "text/csv"),
        ("report.html", export.report.render, "text/html"), ("skipped.csv", export.skipped_csv, "text/csv"),
    ]  # fmt: skip
    cols = st.columns(3)
    for i, (name, make, mime) in enumerate(files):
        cols[i % 3].download_button(name, functools.partial(make, comp), name, mime, key=f"dl_{name.split('.')[0]}",
                                     on_click="ignore")  # fmt: skip
    st.markdown("#### Share this view")
    st.code("?" + urlencode(share), language=None)
    st.caption("Append to this app's address: it reopens with the same sample, model, layers and projection. "
               "Uploaded data is never part of a link.")  # fmt: skip
    cli = (f"python -m explorer compare --data {share['data']} --model {share['model']} "
           f"--layers {share.get('layers', 'auto')} --projection {share['projection']} "
           f"--max-images {share.get('max_images', 400)} --out out/")  # fmt: skip
    st.caption("The same analysis from the command line:")
    st.code(cli, language="bash")


def render(comp: Comparison, inputs: object, share: dict[str, str]) -> None:
    align = bool(getattr(inputs, "align", True))
    tabs = st.tabs(["Projections", "Separability", "Layer similarity", "Architecture", "Dataset", "Export"])
    with tabs[0]:
        projections_tab(comp, align)
    with tabs[1]:
        separability_tab(comp)
    with tabs[2]:
        similarity_tab(comp, align)
    with tabs[3]:
        architecture_tab(comp)
    with tabs[4]:
        dataset_tab(comp)
    with tabs[5]:
        export_tab(comp, share)
