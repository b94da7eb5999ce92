"""The result tabs: dataset, architecture, projections, separability, layer similarity, export."""

from __future__ import annotations

import functools
import io
import weakref
from urllib.parse import urlencode

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from ..comparison import Comparison, ModelRun
from ..data.datasets import ImageItem, thumbnail_bytes
from ..output import export, figures, report
from . import reproduce, scatter, sidebar, thumbs
from .sidebar import MODE
from .text import code, plain

PLOT_CONFIG = {"displaylogo": False}


def _customdata(point: dict) -> list:
    """A selected point's customdata as a list (Streamlit hands arrays over as {"0": .., "1": ..})."""
    cd = point.get("customdata")
    if isinstance(cd, dict):
        return [cd[k] for k in sorted(cd, key=int)]
    return list(cd) if isinstance(cd, (list, tuple)) else []


@functools.lru_cache(maxsize=4096)  # ~5 KB each: at most ~20 MB, whatever the dataset's size
def _thumbnail(item: ImageItem, max_pixels: int) -> bytes | None:
    return thumbnail_bytes(item, max_pixels=max_pixels)


def thumbnail(comp: Comparison, i: int) -> bytes | None:
    """Image i's thumbnail, made when first looked at (None: it can no longer be read)."""
    ds = comp.dataset
    if ds.thumbnails:
        return ds.thumbnails[i]
    return _thumbnail(ds.items[i], MODE.limits.max_pixels)


def _thumbs(comp: Comparison, indices: list[int], caption: bool = True, cols: int = 8) -> None:
    ds = comp.dataset
    if not indices:
        return
    grid = st.columns(cols)
    for j, i in enumerate(indices):
        with grid[j % cols]:
            label = ds.labels[i] if ds.labels is not None else ""
            data = thumbnail(comp, i)
            if data is None:
                st.caption(plain(f"{ds.names[i]}: no longer readable"))
            else:
                st.image(io.BytesIO(data), caption=plain(label) if caption else None, width="stretch")


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
        st.markdown(code(cls))
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


MAX_3D_PANELS = 4  # each 3-D panel is a WebGL context of its own; browsers allow 8-16 per page
MAX_3D_POINTS = 20_000


def _find(comp: Comparison, text: str) -> list[int]:
    """Images whose file name contains `text`, or whose class or a labels.csv value is `text` (case-insensitive)."""
    ds, q = comp.dataset, text.strip().lower()
    if not q:
        return []
    labels = ds.labels or ()
    columns = list(ds.metadata.values())  # a labels.csv value, as a class
    return [i for i, name in enumerate(ds.names)
            if q in name.lower() or (labels and labels[i].lower() == q) or any(c[i].lower() == q for c in columns)]  # fmt: skip


COLOUR_BY = ("class", "probe prediction", "probe correct / wrong")
NEIGHBOURS_CHANGED = "neighbours changed"  # each panel: the share of an image's neighbours new since the panel before
COLUMN = "labels.csv: "  # + a further column's name: colour by its values
NOT_SCORED = "not scored"
CHANGE_BINS = ("0-20 %", "20-40 %", "40-60 %", "60-80 %", "80-100 %")
CHANGE_COLOURS = ("#440154", "#3B528B", "#21918C", "#5EC962", "#FDE725")  # viridis: new neighbours are bright
FIRST_PANEL = "first layer"
MOVERS_SHOWN = 6


def _colour_label(option: str) -> str:
    return COLUMN + code(option[len(COLUMN) :]) if option.startswith(COLUMN) else option


def _colour_options(comp: Comparison, keys: list[str]) -> list[str]:
    ds = comp.dataset
    scored = ds.labels is not None and all(comp.scores[k].predicted is not None for k in keys)
    moved = [NEIGHBOURS_CHANGED] if len(keys) >= 2 else []
    return [*(COLOUR_BY if scored else COLOUR_BY[:1]), *moved, *(COLUMN + c for c in ds.metadata)]


def _change_groups(comp: Comparison, keys: list[str]) -> tuple[np.ndarray, list[str], list[str]]:
    """Per panel, each image's share of its 10 nearest neighbours that are new since the panel
    before, in five ranges (the first panel has none before it)."""
    from ..analysis.movers import neighbours_changed

    codes = np.full((len(keys), len(comp.dataset)), len(CHANGE_BINS), np.int64)
    for j in range(1, len(keys)):
        change = neighbours_changed(comp.graphs[keys[j - 1]], comp.graphs[keys[j]])
        codes[j] = np.minimum((change * len(CHANGE_BINS)).astype(np.int64), len(CHANGE_BINS) - 1)
    return codes, [*CHANGE_BINS, FIRST_PANEL], [*CHANGE_COLOURS, "#C8C8C8"]


def _colour_groups(comp: Comparison, keys: list[str] | None = None, by: str = "class") -> tuple[np.ndarray, list[str], list[str]]:
    """(each image's group index, per panel when the groups are the layer's own; the groups' names;
    their colours): by class, by each layer's out-of-fold probe prediction, by whether it was right, or
    by a further column of labels.csv (`COLUMN` + its name)."""
    ds = comp.dataset
    if by.startswith(COLUMN) and by[len(COLUMN) :] in ds.metadata:
        return figures.value_groups(ds.metadata[by[len(COLUMN) :]])
    if by == NEIGHBOURS_CHANGED and keys and len(keys) >= 2:
        return _change_groups(comp, keys)
    legend = ds.classes or ["all images"]
    colors = figures.class_colors(legend)
    truth = np.searchsorted(np.array(legend), np.asarray(ds.labels)) if ds.labels is not None else np.zeros(len(ds), int)
    predicted = [comp.scores[k].predicted for k in keys or []]
    if by == "class" or not keys or any(p is None for p in predicted):
        return truth, legend, [colors[c] for c in legend]
    pred = np.stack([np.asarray(p, dtype=np.int64) for p in predicted])  # (panels, n); -1: not scored
    if by == "probe prediction":
        return np.where(pred < 0, len(legend), pred), [*legend, NOT_SCORED], [*(colors[c] for c in legend), "#C8C8C8"]
    return np.where(pred < 0, 2, (pred != truth).astype(np.int64)), ["correct", "wrong", NOT_SCORED], ["#2CA02C", "#D62728", "#C8C8C8"]


def _hover(comp: Comparison, keys: list[str]) -> dict:
    """What the hover card shows besides the name: each image's class and each layer's probe prediction."""
    ds = comp.dataset
    if ds.labels is None:
        return {}
    classes = list(ds.classes)
    truth = np.searchsorted(np.array(classes), np.asarray(ds.labels))
    predicted = [comp.scores[k].predicted for k in keys]
    if not keys or any(p is None for p in predicted):
        return {"classes": classes, "truth": truth}
    return {"classes": classes, "truth": truth, "predicted": [np.asarray(p) for p in predicted]}


def _points(comp: Comparison, keys: list[str], align: bool, by: str) -> tuple[dict, bytes]:
    """The panels' blob for scatter.js, made once per result, alignment and colouring (kept in the session)."""
    memo = st.session_state.setdefault("_points", {})
    tag = (id(comp), align, tuple(keys), by)
    if tag not in memo:
        memo.clear()
        panels = {k: v for k, v in comp.panels(align=align).items() if k in keys}
        titles = {k: f"{k} · {comp.scores[k].dim}-d" for k in panels}
        memo[tag] = scatter.pack(panels, *_colour_groups(comp, list(panels), by), comp.dataset.names, titles=titles,
                                 aligned=align, **_hover(comp, list(panels)))  # fmt: skip
    return memo[tag]


def _thumb_token(comp: Comparison) -> str:
    """The token under which this result's hover thumbnails are served (while the result lives)."""
    return thumbs.publish(comp, functools.partial(_hover_thumbnail, weakref.ref(comp)))


def _hover_thumbnail(ref: "weakref.ref[Comparison]", i: int) -> bytes | None:
    comp = ref()
    if comp is None or not 0 <= i < len(comp.dataset):
        return None
    return thumbnail(comp, i)


def _picked_image(comp: Comparison, idx: int | None) -> None:
    ds = comp.dataset
    if idx is None:
        st.caption("Click a point to see its image here; box or lasso to select many.")
        return
    data = thumbnail(comp, idx)
    if data is not None:
        st.image(io.BytesIO(data), width="stretch")
    st.text(ds.names[idx])  # as text: file names come from visitors
    if ds.labels is not None:
        st.text(f"class: {ds.labels[idx]}")
    for column, values in ds.metadata.items():
        st.text(f"{column}: {values[idx]}")


def projections_tab(comp: Comparison, align: bool) -> None:
    ds = comp.dataset
    if not comp.projections:
        st.info("No projections were computed.")
        return
    run = comp.runs[0]
    if comp.multi:  # one model's layers at a time, side by side (a second model of any source, a baseline)
        labels = [r.label for r in comp.runs]
        shown = st.radio("Model", labels, horizontal=True, key="proj_model",
                         help="Whose layers the panels show; a selection carries over, by image.")  # fmt: skip
        run = comp.runs[labels.index(shown)] if shown in labels else run
    keys = [run.key(n, comp.multi) for n in run.features]
    for m in {p.message for p in comp.projections.values() if p.message}:
        st.info(m)
    method = next(iter(comp.projections.values())).method.upper()
    if next(iter(comp.projections.values())).coords.shape[1] == 3:
        _projections_3d(comp, keys, align, method)
        return
    st.markdown(f"#### {method} of each layer{' (aligned)' if align else ''}")
    find = st.text_input("Find images", key="find", placeholder="a file name, or part of one, or a class",
                         help="Matches are highlighted in every panel; pick one to follow it across the layers.")  # fmt: skip
    matches = _find(comp, find) if find else None
    if matches is not None:
        if not matches:
            st.caption("No image matches.")
        else:
            shown = matches[:1000]
            choice = st.selectbox(f"{len(matches):,} matches" + (" (the first 1,000 listed)" if len(matches) > 1000 else ""),
                                  shown, index=None, key="find_pick", format_func=lambda i: ds.names[i],
                                  placeholder="pick one to follow it")  # fmt: skip
            if choice is not None and st.session_state.get("find_last") != choice:
                st.session_state["find_last"] = choice
                st.session_state["picked"] = choice
    by = st.radio("Colour by", _colour_options(comp, keys), horizontal=True, key="colour_by", format_func=_colour_label,
                  help="Class; or, in each panel, that layer's linear probe: its out-of-fold prediction, or whether it "
                       "was right (grey: classes too small to score); or the share of an image's 10 nearest neighbours "
                       "that are new since the panel before (bright: moved most); or the values of a further column of labels.csv "
                       f"(up to {figures.MAX_COLOUR_GROUPS} values, numbers in {figures.NUMBER_BINS} ranges).")  # fmt: skip
    chart, side = st.columns([5, 1])
    with chart:
        selection, clicked = scatter.layer_scatter(_points(comp, keys, align, by or "class"), key="proj",
                                                   thumb_token=_thumb_token(comp))  # fmt: skip
    if clicked is not None:
        st.session_state["picked"] = clicked
    picked = st.session_state.get("picked")
    if picked is not None and not 0 <= picked < len(ds):
        picked = st.session_state["picked"] = None
    st.session_state["selection"] = selection
    with side:
        _picked_image(comp, picked)
    if selection:
        st.markdown(f"#### {len(selection):,} selected images" + (" (the first 48)" if len(selection) > 48 else ""))
        _thumbs(comp, selection[:48])
    _emergence(comp, run, selection or matches or [])
    # after the images: the highlight in every panel (a search's matches, else the selection) and the ring
    scatter.control("proj", highlight=matches if matches is not None else (selection or None), picked=picked)
    _movers_gallery(comp, run, keys)
    st.markdown("#### Nearest neighbours, layer by layer")
    if picked is None:
        st.caption("Click a point, or find an image above, to see its 6 closest images (cosine) in each layer's feature space.")
        return
    st.caption(f"The 6 closest images to {code(ds.names[picked])} in each layer's original feature space (cosine).")
    for k in keys:
        st.caption(k)
        _thumbs(comp, comp.neighbours(k, picked, 6).tolist(), cols=6)


def _emergence(comp: Comparison, run: ModelRun, chosen: list[int]) -> None:
    """Where the selection (or the search's matches) emerges: the selection-vs-rest probe at every
    layer, beside the random-init baseline's and the class probe's curves."""
    from ..analysis.emergence import FOLDS, MAX_PER_SIDE, MIN_PER_SIDE

    n = len(comp.dataset)
    if not MIN_PER_SIDE <= len(chosen) <= n - MIN_PER_SIDE:
        return
    tag = (id(comp), run.label, tuple(sorted(chosen)))
    stored = st.session_state.get("emergence")
    asked = st.button(f"Where do these {len(chosen):,} images emerge?", key="emerge",
                      help="Trains the same linear probe as the class curve, at every layer, to tell these images from "
                           "the rest: the layer where its accuracy rises is where the network starts to see them.")  # fmt: skip
    if asked:
        with st.spinner("Training the selection's probe at every layer…"):
            runs = [r for r in (run, comp.baseline_of(run)) if r is not None]
            stored = (tag, {r.label: comp.emergence(r, chosen) for r in runs})
        st.session_state["emergence"] = stored
    if stored is None or stored[0] != tag:
        return
    results = stored[1]
    names = [k.split(":")[-1] for k in comp.layer_keys(run)]
    curves = {f"these images vs the rest — {label}": (names, got.accuracy, got.accuracy_std) for label, got in results.items()}
    scored = [comp.scores[k].probe_acc for k in comp.layer_keys(run)]
    if all(v is not None for v in scored):
        stds = np.array([comp.scores[k].probe_acc_std or 0.0 for k in comp.layer_keys(run)])
        curves[f"all classes (probe accuracy) — {run.label}"] = (names, np.array(scored, dtype=float), stds)
    first = next(iter(results.values()))
    st.plotly_chart(figures.emergence(curves, "Where the selection emerges"), config=PLOT_CONFIG, key="emergence_chart")
    sample = (f" The probe saw {first.n_used:,} images: the selection and as many others, at random (at most "
              f"{MAX_PER_SIDE:,} each).") if first.sampled or first.n_used < n else ""  # fmt: skip
    st.caption(f"{first.n_selected:,} images against the rest, balanced, so chance is 0.5; error bars: the spread "
               f"over {FOLDS} folds.{sample}")  # fmt: skip


def _movers_gallery(comp: Comparison, run: ModelRun, keys: list[str]) -> None:
    """The images whose nearest neighbours change most between two layers, ranked, each with its
    neighbours before and after (analysis/movers.py)."""
    if len(keys) < 2 or not st.toggle("Show the images that move most between two layers", key="movers_on",
                                      help="Ranked by the share of an image's 10 nearest neighbours (cosine, in the "
                                           "layers' own features) that are new in the second layer."):  # fmt: skip
        return
    mv = comp.movers(run)
    busiest = int(np.argmax(mv.changed.mean(0))) if mv.changed.size else 0
    c1, c2 = st.columns(2)
    a = c1.selectbox("From layer", keys[:-1], index=busiest, key="movers_a")
    later = keys[keys.index(a) + 1 :]
    b = c2.selectbox("To layer", later, index=0, key="movers_b")
    if b not in later:
        return
    rows, share = mv.ranked(a, b, comp.graphs, top=MOVERS_SHOWN)
    st.caption(f"On average {mv.pair(a, b, comp.graphs).mean():.0%} of an image's 10 nearest neighbours change between "
               "these layers. Each row: the image, then its 5 nearest neighbours before and after.")  # fmt: skip
    ds = comp.dataset
    for r, sh in zip(rows.tolist(), share.tolist()):
        st.text(f"{ds.names[r]}: {sh:.0%} of its neighbours changed")  # as text: file names come from visitors
        before, after = comp.neighbours(a, r, 5).tolist(), comp.neighbours(b, r, 5).tolist()
        _thumbs(comp, [r, *before, r, *after], cols=12)


def _projections_3d(comp: Comparison, keys: list[str], align: bool, method: str) -> None:
    ds = comp.dataset
    if len(ds) > MAX_3D_POINTS:
        st.warning(f"3-D views are drawn up to {MAX_3D_POINTS:,} points; this dataset has {len(ds):,}. "
                   "Choose 2-D in the sidebar to see every point.")  # fmt: skip
        return
    shown = keys[:MAX_3D_PANELS]
    if len(keys) > MAX_3D_PANELS:
        shown = st.multiselect(f"Layers to draw in 3-D (at most {MAX_3D_PANELS}: each 3-D panel needs a WebGL context of its own)",
                               keys, default=keys[-MAX_3D_PANELS:], max_selections=MAX_3D_PANELS, key="panels_3d")  # fmt: skip
    panels = {k: v for k, v in comp.panels(align=align).items() if k in shown}
    titles = {k: f"{k} · {comp.scores[k].dim}-d" for k in panels}
    fig = figures.projections(panels, ds.labels, ds.names, titles=titles, cols=2)
    fig.update_layout(title_text=f"{method} of each layer (3-D)")
    st.plotly_chart(fig, config=PLOT_CONFIG, key="proj_chart_3d")


def separability_tab(comp: Comparison) -> None:
    m = comp.metrics
    st.plotly_chart(figures.separability(m, chance=comp.chance_accuracy), config=PLOT_CONFIG, key="sep_chart")
    notes = {s.note for s in comp.scores.values() if s.note}
    for n in notes:
        st.info(plain(f"Label metrics {n}."))
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
        k = st.selectbox("The probe at layer", with_cm, index=len(with_cm) - 1, key="cm_layer")
        left, right = st.columns(2)
        left.plotly_chart(figures.per_class_accuracy(comp.scores[k].confusion, comp.dataset.classes, f"Accuracy per class — {k}"),
                          config=PLOT_CONFIG, key="class_acc_chart")  # fmt: skip
        right.plotly_chart(figures.confusion(comp.scores[k].confusion, comp.dataset.classes, f"Probe confusion — {k}"),
                           config=PLOT_CONFIG, key="cm_chart")  # fmt: skip
    _class_pairs(comp)


def _class_pairs(comp: Comparison) -> None:
    """Where each pair of classes comes apart along depth, and the pairs still confused at the best layer."""
    scored = {r.label: (r, p) for r in comp.runs if (p := comp.class_pairs(r)) is not None}
    if not scored or len(comp.dataset.classes) < 2:
        return
    st.markdown("#### Where each pair of classes comes apart")
    labels = list(scored)
    label = st.radio("Model", labels, horizontal=True, key="pairs_model") if len(labels) > 1 else labels[0]
    run, pairs = scored.get(label, scored[labels[0]])
    st.caption(f"For each pair of classes, the first layer where the linear probe takes fewer than {pairs.threshold:.0%} "
               "of the two classes' images for the other (out of fold); hover a cell for its layer. class_pairs.csv "
               "has every pair's confusion at every layer.")  # fmt: skip
    left, right = st.columns([3, 2])
    left.plotly_chart(figures.class_pairs_apart(pairs.first_apart, pairs.classes, [k.split(":")[-1] for k in pairs.layers],
                                                pairs.threshold, f"First layer apart — {run.label}"),
                      config=PLOT_CONFIG, key="pairs_chart")  # fmt: skip
    best = comp.best_layer(run)
    if best is not None:
        with right:
            st.markdown(f"**Hardest pairs at the best layer**, {code(best)}")
            hardest = pd.DataFrame(pairs.hardest(best, top=8), columns=["class", "class ", "confused"])
            st.dataframe(hardest, hide_index=True, key="hardest_pairs",
                         column_config={"confused": st.column_config.NumberColumn(format="%.3f")})  # fmt: skip


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
        from ..analysis.projection import align as align_fn

        pair[b] = align_fn(pair[a], pair[b])
    if pair[a].shape[1] == 3:
        st.plotly_chart(figures.projections(pair, comp.dataset.labels, comp.dataset.names, cols=2), config=PLOT_CONFIG, key="cka_pair")
        return
    points = scatter.pack(pair, *_colour_groups(comp), comp.dataset.names, cols=2, aligned=align, **_hover(comp, []))
    scatter.layer_scatter(points, key="cka_pair", thumb_token=_thumb_token(comp))
    selected = st.session_state.get("selection") or None  # the projections tab's selection, highlighted here too
    scatter.control("cka_pair", highlight=selected, picked=st.session_state.get("picked"))


def export_tab(comp: Comparison, inputs: sidebar.Inputs) -> None:
    # Files are made when clicked (callables), not on every rerun, and not kept in session memory.
    files = [
        ("metrics.csv", export.metrics_csv, "text/csv"), ("cka.csv", export.cka_csv, "text/csv"),
        ("cka_debiased.csv", export.cka_debiased_csv, "text/csv"),
        ("neighbour_overlap.csv", export.neighbour_overlap_csv, "text/csv"), ("movers.csv", export.movers_csv, "text/csv"),
        ("class_pairs.csv", export.class_pairs_csv, "text/csv"),
        ("features.npz", export.features_npz, "application/octet-stream"),
        ("projections.csv", export.projections_csv, "text/csv"),
        ("report.html", export.report.render, "text/html"), ("skipped.csv", export.skipped_csv, "text/csv"),
    ]  # fmt: skip
    cols = st.columns(3)
    for i, (name, make, mime) in enumerate(files):
        cols[i % 3].download_button(name, functools.partial(make, comp), name, mime, key=f"dl_{name.split('.')[0]}",
                                     on_click="ignore")  # fmt: skip
    st.markdown("#### Share this view")
    st.code("?" + urlencode(reproduce.share_params(inputs)), language=None)
    st.caption("Append to this app's address: it reopens with the same data, model, layers, weights, baseline, "
               "second model, pooling and projection settings. Uploaded data is never part of a link.")  # fmt: skip
    st.caption("The same analysis from the command line (same numbers; an upload is named by a placeholder for your copy):")
    st.code(reproduce.cli_command(inputs), language="bash")


VIEWS = ("Projections", "Separability", "Layer similarity", "Architecture", "Dataset", "Export")


def render(comp: Comparison, inputs: sidebar.Inputs) -> None:
    """The result views; only the open tab's figures are built (lazy tabs: a rerun builds one view)."""
    align = bool(getattr(inputs, "align", True))
    tabs = st.tabs(list(VIEWS), key="view", on_change="rerun")
    draw = {
        "Projections": lambda: projections_tab(comp, align), "Separability": lambda: separability_tab(comp),
        "Layer similarity": lambda: similarity_tab(comp, align), "Architecture": lambda: architecture_tab(comp),
        "Dataset": lambda: dataset_tab(comp), "Export": lambda: export_tab(comp, inputs),
    }  # fmt: skip
    for name, tab in zip(VIEWS, tabs):
        if tab.open:
            with tab:
                draw[name]()
