"""The Projections tab: every layer's projection side by side, colour and search, the picked
image and its neighbours, where a selection emerges, and the images that move most between layers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import streamlit as st

from ..analysis import per_run
from ..analysis.emergence import MIN_PER_SIDE
from ..extraction.layer_features import ModelRun
from ..output import figures, points, report, sentences
from ..output.points import COLOUR_BY, COLUMN, NEIGHBOURS_CHANGED
from ..progress import Cancelled
from ..record import Comparison
from . import scatter
from .images import image_grid, picked_image, thumb_token
from .plots import PLOT_CONFIG
from .text import code

MAX_3D_PANELS = 4  # each 3-D panel is a WebGL context of its own; browsers allow 8-16 per page
MAX_3D_POINTS = 20_000
MOVERS_SHOWN = 6


def _find(comp: Comparison, text: str) -> list[int]:
    """Images whose file name contains `text`, or whose class or a labels.csv value is `text` (case-insensitive)."""
    ds, q = comp.dataset, text.strip().lower()
    if not q:
        return []
    labels = ds.labels or ()
    columns = list(ds.metadata.values())  # a labels.csv value, as a class
    return [
        i
        for i, name in enumerate(ds.names)
        if q in name.lower() or (labels and labels[i].lower() == q) or any(c[i].lower() == q for c in columns)
    ]


def _colour_label(option: str) -> str:
    return COLUMN + code(option[len(COLUMN) :]) if option.startswith(COLUMN) else option


def _colour_options(comp: Comparison, keys: list[str]) -> list[str]:
    ds = comp.dataset
    scored = ds.labels is not None and all(comp.scores[k].predicted is not None for k in keys)
    moved = [NEIGHBOURS_CHANGED] if len(keys) >= 2 else []
    return [*(COLOUR_BY if scored else COLOUR_BY[:1]), *moved, *(COLUMN + c for c in ds.metadata)]


def _points(comp: Comparison, keys: list[str], align: bool, by: str) -> tuple[dict, bytes]:
    """The panels' blob for scatter.js, made once per result, alignment and colouring (kept in the session)."""
    memo = st.session_state.setdefault("_points", {})
    tag = (id(comp), align, tuple(keys), by)
    if tag not in memo:
        memo.clear()
        panels = {k: v for k, v in comp.panels(align=align).items() if k in keys}
        titles = {k: points.panel_title(comp, k) for k in panels}
        memo[tag] = points.comparison_points(comp, panels, by, titles=titles, aligned=align)
    return memo[tag]


@dataclass(frozen=True)
class EmergenceAnswer:
    """A finished "Where do these images emerge?" job: the selection it was asked for (its `tag`)
    and each run's Emergence (the model's, and its random-init baseline's when there is one)."""

    SESSION_KEY: ClassVar[str] = "emergence"  # where the page keeps it (main._collect)
    tag: tuple
    results: dict[str, Any]


def emergence_tag(comp: Comparison, run_label: str, chosen: tuple[int, ...]) -> tuple:
    return (id(comp), run_label, tuple(sorted(chosen)))


def emergence_job(comp: Comparison, run_label: str, chosen: tuple[int, ...]) -> Callable[[Any], EmergenceAnswer]:
    """The function a worker runs to train the selection's probe at every layer of the run (and its
    baseline): on the queue, under its per-visitor limit and deadline, not on the page's thread."""
    run = next(r for r in comp.runs if r.label == run_label)
    runs = [r for r in (run, comp.baseline_of(run)) if r is not None]

    def work(job: Any) -> EmergenceAnswer:
        results = {}
        for i, r in enumerate(runs):
            job.progress(f"training the selection's probe at every layer of {r.label}", i, len(runs))
            if job.should_stop():
                raise Cancelled("emergence cancelled")
            results[r.label] = per_run.emergence(comp, r, list(chosen))
        return EmergenceAnswer(emergence_tag(comp, run_label, chosen), results)

    return work


def projections_tab(
    comp: Comparison, align: bool, ask_emergence: Callable[[str, tuple[int, ...]], None] | None = None
) -> None:
    """The tab; `ask_emergence(run, images)` queues the job that finds where those images emerge
    (None: the question is not offered)."""
    ds = comp.dataset
    if not comp.projections:
        st.info("No projections were computed.")
        return
    run = comp.runs[0]
    if comp.multi:  # one model's layers at a time, side by side (a second model of any source, a baseline)
        labels = [r.label for r in comp.runs]
        shown = st.radio(
            "Model",
            labels,
            horizontal=True,
            key="proj_model",
            help="Whose layers the panels show; a selection carries over, by image.",
        )
        run = comp.runs[labels.index(shown)] if shown in labels else run
    keys = [run.key(n, comp.multi) for n in run.features]
    for m in {p.message for p in comp.projections.values() if p.message}:
        st.info(m)
    method = next(iter(comp.projections.values())).method.upper()
    if next(iter(comp.projections.values())).coords.shape[1] == 3:
        _projections_3d(comp, keys, align, method)
        return
    st.markdown(f"#### {method} of each layer{' (aligned)' if align else ''}")
    find = st.text_input(
        "Find images",
        key="find",
        placeholder="a file name, or part of one, or a class",
        help="Matches are highlighted in every panel; pick one to follow it across the layers.",
    )
    matches = _find(comp, find) if find else None
    if matches is not None:
        if not matches:
            st.caption("No image matches.")
        else:
            shown = matches[:1000]
            choice = st.selectbox(
                f"{len(matches):,} matches" + (" (the first 1,000 listed)" if len(matches) > 1000 else ""),
                shown,
                index=None,
                key="find_pick",
                format_func=lambda i: ds.names[i],
                placeholder="pick one to follow it",
            )
            if choice is not None and st.session_state.get("find_last") != choice:
                st.session_state["find_last"] = choice
                st.session_state["picked"] = choice
    by = st.radio(
        "Colour by",
        _colour_options(comp, keys),
        horizontal=True,
        key="colour_by",
        format_func=_colour_label,
        help="Class; or, in each panel, that layer's linear probe: its out-of-fold prediction, or whether it "
        "was right (grey: classes too small to score); or the share of an image's 10 nearest neighbours "
        "that are new since the panel before (bright: moved most); or the values of a further column of labels.csv "
        f"(up to {figures.MAX_COLOUR_GROUPS} values, numbers in {figures.NUMBER_BINS} ranges).",
    )
    chart, side = st.columns([5, 1])
    with chart:
        selection, clicked = scatter.layer_scatter(
            _points(comp, keys, align, by or "class"), key="proj", thumb_token=thumb_token(comp)
        )
    if clicked is not None:
        st.session_state["picked"] = clicked
    picked = st.session_state.get("picked")
    if picked is not None and not 0 <= picked < len(ds):
        picked = st.session_state["picked"] = None
    st.session_state["selection"] = selection
    with side:
        picked_image(comp, picked)
    if selection:
        st.markdown(f"#### {len(selection):,} selected images" + (" (the first 48)" if len(selection) > 48 else ""))
        image_grid(comp, selection[:48])
    _emergence(comp, run, selection or matches or [], ask_emergence)
    # after the images: the highlight in every panel (a search's matches, else the selection) and the ring
    scatter.control("proj", highlight=matches if matches is not None else (selection or None), picked=picked)
    _movers_gallery(comp, run, keys)
    st.markdown("#### Nearest neighbours, layer by layer")
    if picked is None:
        st.caption(
            "Click a point, or find an image above, to see its 6 closest images (cosine) in each layer's feature space."
        )
        return
    st.caption(f"The 6 closest images to {code(ds.names[picked])} in each layer's original feature space (cosine).")
    for k in keys:
        st.caption(k)
        image_grid(comp, comp.neighbours(k, picked, 6).tolist(), cols=6)


def _emergence(
    comp: Comparison, run: ModelRun, chosen: list[int], ask: Callable[[str, tuple[int, ...]], None] | None
) -> None:
    """Where the selection (or the search's matches) emerges: the selection-vs-rest probe at every
    layer, beside the random-init baseline's and the class probe's curves. The probes are trained
    by a job on the queue (`ask`), whose answer the page keeps under "emergence"; without a queue
    the question is not offered (never trained on the page's thread)."""

    n = len(comp.dataset)
    if not MIN_PER_SIDE <= len(chosen) <= n - MIN_PER_SIDE:
        return
    images = tuple(sorted(chosen))
    tag = emergence_tag(comp, run.label, images)
    label = f"Where do these {len(chosen):,} images emerge?"
    help_text = (
        "Trains the same linear probe as the class curve, at every layer, to tell these images from the rest: "
        "the layer where its accuracy rises is where the network starts to see them."
    )
    if ask is None:  # no queue to train the probes on: nothing is offered
        return
    st.button(label, key="emerge", help=help_text, on_click=ask, args=(run.label, images))
    stored: EmergenceAnswer | None = st.session_state.get("emergence")
    if stored is None or stored.tag != tag:
        return
    results = stored.results
    st.plotly_chart(
        figures.emergence(report.emergence_curves(comp, run, results), "Where the selection emerges"),
        config=PLOT_CONFIG,
        key="emergence_chart",
    )
    st.caption(sentences.emergence_note(comp, next(iter(results.values()))))


def _movers_gallery(comp: Comparison, run: ModelRun, keys: list[str]) -> None:
    """The images whose nearest neighbours change most between two layers, ranked, each with its
    neighbours before and after (analysis/movers.py)."""
    if len(keys) < 2 or not st.toggle(
        "Show the images that move most between two layers",
        key="movers_on",
        help="Ranked by the share of an image's 10 nearest neighbours (cosine, in the "
        "layers' own features) that are new in the second layer.",
    ):
        return
    mv = per_run.movers(comp, run)
    busiest = int(np.argmax(mv.changed.mean(0))) if mv.changed.size else 0
    c1, c2 = st.columns(2)
    a = c1.selectbox("From layer", keys[:-1], index=busiest, key="movers_a")
    later = keys[keys.index(a) + 1 :]
    b = c2.selectbox("To layer", later, index=0, key="movers_b")
    if b not in later:
        return
    rows, share = mv.ranked(a, b, comp.graphs, top=MOVERS_SHOWN)
    st.caption(
        f"On average {mv.pair(a, b, comp.graphs).mean():.0%} of an image's 10 nearest neighbours change between "
        "these layers. Each row: the image, then its 5 nearest neighbours before and after."
    )
    ds = comp.dataset
    for r, sh in zip(rows.tolist(), share.tolist()):
        st.text(f"{ds.names[r]}: {sh:.0%} of its neighbours changed")  # as text: file names come from visitors
        before, after = comp.neighbours(a, r, 5).tolist(), comp.neighbours(b, r, 5).tolist()
        image_grid(comp, [r, *before, r, *after], cols=12)


def _projections_3d(comp: Comparison, keys: list[str], align: bool, method: str) -> None:
    ds = comp.dataset
    if len(ds) > MAX_3D_POINTS:
        st.warning(
            f"3-D views are drawn up to {MAX_3D_POINTS:,} points; this dataset has {len(ds):,}. "
            "Choose 2-D in the sidebar to see every point."
        )
        return
    shown = keys[:MAX_3D_PANELS]
    if len(keys) > MAX_3D_PANELS:
        shown = st.multiselect(
            f"Layers to draw in 3-D (at most {MAX_3D_PANELS}: each 3-D panel needs a WebGL context of its own)",
            keys,
            default=keys[-MAX_3D_PANELS:],
            max_selections=MAX_3D_PANELS,
            key="panels_3d",
        )
    panels = {k: v for k, v in comp.panels(align=align).items() if k in shown}
    titles = {k: f"{k} · {comp.scores[k].dim}-d" for k in panels}
    fig = figures.projections(panels, ds.labels, ds.names, titles=titles, cols=2)
    fig.update_layout(title_text=f"{method} of each layer (3-D)")
    st.plotly_chart(fig, config=PLOT_CONFIG, key="proj_chart_3d")
