"""The Layer similarity tab: CKA (plain, with its bootstrap interval, and debiased) and
neighbourhood overlap between layers; CKA, CKNNA, mutual k-NN, RSA and Procrustes calibrated
against their permutation nulls (analysis/alignment.py: computed in the run with
`similarity_nulls`, or here on request, on the queue); and any two layers' projections side by side."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import streamlit as st

from ..analysis.alignment import DISTANCES, PairScores, measure_matrices
from ..analysis.cached_runs import alignment_run
from ..analysis.projection import align as align_fn
from ..output import figures, report, sentences
from ..output.points import comparison_points
from ..record import Comparison
from ..store import FeatureCache
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


PAIR_SECONDS = 0.25  # one pair of layers against its nulls, on 2 cores (docs/benchmarks.md)
NULL_MEASURES = {
    "CKA vs null": "cka",
    "CKNNA": "cknna",
    "Mutual k-NN": "mutual_knn",
    "RSA": "rsa",
    "Procrustes": "procrustes",
}
SIMILARITY_KINDS = {
    "Linear CKA": "cka",
    "Debiased CKA": "cka_debiased",
    "Neighbourhood overlap": "overlap",
    **{label: f"calibrated_{m}" for label, m in NULL_MEASURES.items()},
}


@dataclass
class NullsAnswer:
    """A finished "test against the nulls" job: the comparison it was asked for (`tag`) and every
    pair of layers' PairScores."""

    SESSION_KEY: ClassVar[str] = "similarity_nulls"  # where the page keeps it (main._collect)
    tag: int
    alignment: dict[tuple[str, str], PairScores]


def nulls_job(comp: Comparison, cache: FeatureCache) -> Callable[[Any], NullsAnswer]:
    """The function a worker runs to compute every measure of every pair of layers with its null
    (cached like the run's own steps: asked again, it is read back)."""

    def work(job: Any) -> NullsAnswer:
        labels = None if comp.dataset.labels is None else np.asarray(comp.dataset.labels)
        got = alignment_run(list(comp.runs), comp.multi, labels, cache, job.progress, random_state=comp.random_state)
        return NullsAnswer(id(comp), got)

    return work


def shown_alignment(comp: Comparison) -> dict[tuple[str, str], PairScores]:
    """The measures against their nulls for this comparison: the run's own, or the answer of a job
    asked for from this tab."""
    answer = st.session_state.get(NullsAnswer.SESSION_KEY)
    if comp.alignment:
        return comp.alignment
    return answer.alignment if isinstance(answer, NullsAnswer) and answer.tag == id(comp) else {}


def _calibrated_view(comp: Comparison, measure: str, ask_nulls: Callable[[], None] | None) -> bool:
    """The calibrated heatmap of `measure`; False (and the offer to compute it) when not computed."""
    pairs = shown_alignment(comp)
    names = comp.cka_names
    if not pairs:
        pairs_count = len(names) * (len(names) - 1) // 2
        st.info(
            plain(
                f"These measures are tested against a permutation null: each of the {pairs_count} pairs of layers "
                "again with the images' order shuffled 50 times, and resampled 50 times for an interval "
                f"(about {max(1, round(pairs_count * PAIR_SECONDS))} s here). They were not computed in this run."
            ),
            icon="🎲",
        )
        if ask_nulls is not None:
            st.button("Test every pair against its null", key="ask_nulls", on_click=ask_nulls, type="primary")
        return False
    m = measure_matrices(pairs, names, measure)
    direction = "distance (lower is more similar)" if measure in DISTANCES else "score"
    details = np.empty(m.score.shape, dtype=object)
    for i in range(len(names)):
        for j in range(len(names)):
            if i == j:
                details[i, j] = "the layer itself"
                continue
            details[i, j] = (
                f"raw {direction} {m.score[i, j]:.3f} (95 % {m.low[i, j]:.3f}–{m.high[i, j]:.3f})<br>"
                f"null mean {m.null_mean[i, j]:.3f}, edge {m.edge[i, j]:.3f}"
                + ("<br><b>inside the null</b>" if m.inside[i, j] else "")
            )
    st.plotly_chart(
        figures.cka_heatmap(names, m.calibrated, kind=f"calibrated_{measure}", inside=m.inside, details=details),
        config=PLOT_CONFIG,
        key="calibrated_chart",
    )
    st.caption(sentences.null_note(m, measure, len(names)))
    return True


def similarity_tab(comp: Comparison, align: bool, ask_nulls: Callable[[], None] | None = None) -> None:
    """The tab; `ask_nulls()` queues the job that tests every pair against its null (None: not offered)."""
    names = comp.cka_names
    matrices = {"cka": comp.cka, "cka_debiased": comp.layer_similarity.cka_debiased, "overlap": comp.overlap}
    shown = st.radio("Measure", list(SIMILARITY_KINDS), horizontal=True, key="similarity_kind")
    kind = SIMILARITY_KINDS[shown or "Linear CKA"]
    st.caption(report.MATRIX_NOTES[kind])
    if kind.startswith("calibrated_"):
        _calibrated_view(comp, kind.removeprefix("calibrated_"), ask_nulls)
        return
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
