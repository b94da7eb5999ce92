"""The Separability tab: how separable the classes are along depth (with intervals, controls and
where a difference is inside the noise), the probe's confusion per layer, and where each pair of
classes comes apart."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from ..analysis import per_run
from ..output import class_figures, cut_figures, figures, report, sentences
from ..record import LEADERBOARD, Comparison
from . import pending
from .plots import PLOT_CONFIG
from .text import code, plain

TABLE_ORDER = (  # the main numbers first; every column of metrics.csv is shown
    "model", "layer", "dim", "bottleneck", "probe_acc", "probe_acc_low", "probe_acc_high", "probe_control",
    "probe_selectivity", "probe_step", "probe_step_in_noise", "knn_acc", "knn_acc_low", "knn_acc_high", "knn_control",
    "knn_selectivity", "silhouette", "eff_dim", "n90", "probe_acc_std", "knn_acc_std", "probe_control_std",
    "probe_step_low", "probe_step_high", "probe_c", "probe_train", "knn_recall", "depth", "node", "full_size",
)  # fmt: skip


def separability_tab(comp: Comparison) -> None:
    m = comp.metrics
    st.plotly_chart(figures.separability(m, chance=comp.chance_accuracy), config=PLOT_CONFIG, key="sep_chart")
    if not m["probe_acc"].isna().all():
        st.caption(report.INTERVALS_NOTE)
    for run in comp.runs:
        for sentence in sentences.noise_notes(comp, run):
            st.warning(plain(sentence), icon="⚖️")
    notes = {s.note for s in comp.scores.values() if s.note}
    for n in notes:
        st.info(plain(f"Label metrics {n}."))
    number = st.column_config.NumberColumn
    st.dataframe(
        m,
        hide_index=True,
        key="metrics_table",
        column_order=TABLE_ORDER,
        column_config={
            "probe_acc": number("probe acc", format="%.3f"),
            "probe_acc_std": number("± folds", format="%.3f", help="standard deviation over the folds"),
            "probe_acc_low": number("95 % low", format="%.3f", help="bootstrap over the images"),
            "probe_acc_high": number("95 % high", format="%.3f", help="bootstrap over the images"),
            "probe_control": number("control", format="%.3f", help="the same probe with the labels permuted"),
            "probe_control_std": number("control ± folds", format="%.3f"),
            "probe_selectivity": number("selectivity", format="%.3f", help="probe accuracy minus its control"),
            "probe_step": number("step", format="%+.3f", help="probe accuracy minus the layer before's"),
            "probe_step_low": number("step low", format="%+.3f", help="95 % paired bootstrap interval"),
            "probe_step_high": number("step high", format="%+.3f", help="95 % paired bootstrap interval"),
            "probe_step_in_noise": st.column_config.CheckboxColumn("step in noise", help="the step's interval holds 0"),
            "probe_c": number(
                "probe C", format="%g", help="chosen by cross-validation in the first fold's training images"
            ),
            "probe_train": number("probe train", help="training images per fold"),
            "knn_acc": number("kNN acc", format="%.3f"),
            "knn_acc_std": number("kNN ± folds", format="%.3f", help="spread over the probe's folds"),
            "knn_acc_low": number("kNN 95 % low", format="%.3f"),
            "knn_acc_high": number("kNN 95 % high", format="%.3f"),
            "knn_control": number("kNN control", format="%.3f", help="kNN with the labels permuted"),
            "knn_selectivity": number("kNN selectivity", format="%.3f"),
            "knn_recall": number("graph recall", format="%.3f", help="1 = exact neighbour search"),
            "silhouette": number(format="%.3f"),
            "eff_dim": number("eff. dim", format="%.1f"),
        },
    )
    with_cm = [k for k, s in comp.scores.items() if s.confusion is not None]
    if with_cm:
        k = st.selectbox("The probe at layer", with_cm, index=len(with_cm) - 1, key="cm_layer")
        left, right = st.columns(2)
        left.plotly_chart(
            class_figures.per_class_accuracy(
                comp.scores[k].confusion, comp.dataset.classes, f"Accuracy per class — {k}"
            ),
            config=PLOT_CONFIG,
            key="class_acc_chart",
        )
        right.plotly_chart(
            class_figures.confusion(comp.scores[k].confusion, comp.dataset.classes, f"Probe confusion — {k}"),
            config=PLOT_CONFIG,
            key="cm_chart",
        )
    _class_pairs(comp)
    _compression(comp)


def _compression(comp: Comparison) -> None:
    """The compression curve of each layer of one model, and the smallest k that keeps 95 % of it."""
    if LEADERBOARD in comp.pending:
        st.markdown("#### What survives compression")
        pending.says_pending(comp, LEADERBOARD)
        return
    scored = {r.label: r for r in comp.runs if report.compression_curves(comp, r)}
    if not scored:
        return
    st.markdown("#### What survives compression")
    labels = list(scored)
    label = st.radio("Model", labels, horizontal=True, key="compression_model") if len(labels) > 1 else labels[0]
    run = scored.get(label, scored[labels[0]])
    st.plotly_chart(
        cut_figures.compression(report.compression_curves(comp, run), f"The probe on k dimensions — {run.label}"),
        config=PLOT_CONFIG,
        key="compression_chart",
    )
    st.caption(report.COMPRESSION_NOTE)
    for sentence in sentences.compression_sentences(comp, run):
        st.markdown(f"- {plain(sentence)}")


def _class_pairs(comp: Comparison) -> None:
    """Where each pair of classes comes apart along depth, and the pairs still confused at the best layer."""
    scored = {r.label: (r, p) for r in comp.runs if (p := per_run.class_pairs(comp, r)) is not None}
    if not scored or len(comp.dataset.classes) < 2:
        return
    st.markdown("#### Where each pair of classes comes apart")
    labels = list(scored)
    label = st.radio("Model", labels, horizontal=True, key="pairs_model") if len(labels) > 1 else labels[0]
    run, pairs = scored.get(label, scored[labels[0]])
    st.caption(
        f"For each pair of classes, the first layer where the linear probe takes fewer than {pairs.threshold:.0%} "
        "of the two classes' images for the other (out of fold); hover a cell for its layer. class_pairs.csv "
        "has every pair's confusion at every layer."
    )
    left, right = st.columns([3, 2])
    left.plotly_chart(
        class_figures.class_pairs_apart(
            pairs.first_apart,
            pairs.classes,
            [k.split(":")[-1] for k in pairs.layers],
            pairs.threshold,
            f"First layer apart — {run.label}",
        ),
        config=PLOT_CONFIG,
        key="pairs_chart",
    )
    keys = comp.layer_keys(run)
    st.plotly_chart(
        class_figures.confusions_along_depth(
            [comp.scores[k].confusion for k in keys],
            pairs.classes,
            [k.split(":")[-1] for k in keys],
            f"The probe's confusion along depth — {run.label}",
        ),
        config=PLOT_CONFIG,
        key="confusions_chart",
    )
    st.caption(
        "Each panel is the probe's out-of-fold confusion at one layer, a row per true class (its images' shares "
        "given to each class): the diagonal sharpening along depth is the network telling the classes apart."
    )
    best = comp.best_layer(run)
    if best is not None:
        with right:
            st.markdown(f"**Hardest pairs at the best layer**, {code(best)}")
            hardest = pd.DataFrame(pairs.hardest(best, top=8), columns=["class", "class ", "confused"])
            st.dataframe(
                hardest,
                hide_index=True,
                key="hardest_pairs",
                column_config={"confused": st.column_config.NumberColumn(format="%.3f")},
            )
