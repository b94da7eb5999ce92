"""The Layer similarity tab: CKA (plain, with its bootstrap interval, and debiased) and
neighbourhood overlap between layers, and any two layers' projections side by side."""

from __future__ import annotations

import streamlit as st

from ..analysis.projection import align as align_fn
from ..comparison import Comparison
from ..output import figures, report, sentences
from ..output.points import comparison_points
from . import scatter
from .images import thumb_token
from .plots import PLOT_CONFIG, customdata
from .text import plain


def _clicked_cell(event: object) -> tuple[int, int] | None:
    points = event.selection.points if event and getattr(event, "selection", None) else []  # type: ignore[attr-defined]
    for pt in points:
        cd = customdata(pt)
        if len(cd) == 2:
            return int(cd[0]), int(cd[1])
    return None


SIMILARITY_KINDS = {"Linear CKA": "cka", "Debiased CKA": "cka_debiased", "Neighbourhood overlap": "overlap"}


def similarity_tab(comp: Comparison, align: bool) -> None:
    names = comp.cka_names
    matrices = {"cka": comp.cka, "cka_debiased": comp.layer_similarity.cka_debiased, "overlap": comp.overlap}
    shown = st.radio("Measure", list(SIMILARITY_KINDS), horizontal=True, key="similarity_kind")
    kind = SIMILARITY_KINDS[shown or "Linear CKA"]
    st.caption(report.MATRIX_NOTES[kind])
    bias = sentences.cka_bias_note(comp.layer_similarity, len(comp.dataset))
    if bias and kind == "cka":
        st.warning(plain(bias), icon="⚖️")
    sim = comp.layer_similarity
    interval = (
        (sim.cka_low, sim.cka_high) if kind == "cka" and sim.cka_low is not None and sim.cka_high is not None else None
    )
    clickable = len(names) >= 2 and bool(comp.projections)
    event = st.plotly_chart(
        figures.cka_heatmap(names, matrices[kind], kind=kind, clickable=clickable, interval=interval),
        config=PLOT_CONFIG,
        key="cka_chart",
        on_select="rerun" if clickable else "ignore",
        selection_mode="points",
    )
    if interval is not None:
        st.caption(sentences.cka_interval_note(comp))
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
    between = (
        f" (95 % interval {sim.cka_low[i, j]:.3f}–{sim.cka_high[i, j]:.3f})"
        if sim.cka_low is not None and sim.cka_high is not None and i != j
        else ""
    )
    st.caption(
        f"Linear CKA between them: **{comp.cka[i, j]:.3f}**{between} (1 = the same geometry up to rotation and scale); "
        f"debiased CKA **{matrices['cka_debiased'][i, j]:.3f}**; neighbourhood overlap **{comp.overlap[i, j]:.3f}**."
    )
    panels = comp.panels(align=False)
    pair = {a: panels[a], b: panels[b]} if a != b else {a: panels[a]}
    if align and a != b and pair[a].shape[1] == 2:
        pair[b] = align_fn(pair[a], pair[b])
    if pair[a].shape[1] == 3:
        st.plotly_chart(
            figures.projections(pair, comp.dataset.labels, comp.dataset.names, cols=2),
            config=PLOT_CONFIG,
            key="cka_pair",
        )
        return
    points = comparison_points(comp, pair, "class", cols=2, aligned=align)
    scatter.layer_scatter(points, key="cka_pair", thumb_token=thumb_token(comp))
    selected = st.session_state.get("selection") or None  # the projections tab's selection, highlighted here too
    scatter.control("cka_pair", highlight=selected, picked=st.session_state.get("picked"))
