"""The New classes tab: how well each layer recognises classes known from a few images, or never
seen, with no training: retrieval and verification along depth, the few-shot curves, the
compression curve on unseen classes, and the sentences that answer which layer to cut at."""

from __future__ import annotations

import streamlit as st

from ..output import new_class_figures, report, sentences, tables
from ..record import NEW_CLASSES, Comparison
from . import pending
from .plots import PLOT_CONFIG
from .text import plain


def new_classes_tab(comp: Comparison) -> None:
    if pending.says_pending(comp, NEW_CLASSES):
        return
    retrieval = tables.retrieval_table(comp)
    if retrieval.empty:
        st.info(
            "Recognising new classes needs labels of at least two classes with two images each "
            "(class folders or a labels.csv)."
        )
        return
    labels = [r.label for r in comp.runs]
    label = st.radio("Model", labels, horizontal=True, key="new_classes_model") if len(labels) > 1 else labels[0]
    run = next((r for r in comp.runs if r.label == label), comp.runs[0])
    with st.container(key="new_classes_answers"):
        for sentence in sentences.new_class_sentences(comp, run):
            st.markdown(f"- {plain(sentence)}")
    st.plotly_chart(new_class_figures.retrieval_along_depth(retrieval), config=PLOT_CONFIG, key="retrieval_chart")
    st.caption(report.RETRIEVAL_NOTE)
    shots = tables.few_shot_table(comp)
    shots = shots[shots["model"] == run.label]
    if not shots.empty:
        st.plotly_chart(
            new_class_figures.few_shot_curves(shots, f"Accuracy against labelled images per class — {run.label}"),
            config=PLOT_CONFIG,
            key="few_shot_chart",
        )
        st.caption(report.FEW_SHOT_NOTE)
    unseen = tables.unseen_table(comp)
    unseen = unseen[unseen["model"] == run.label]
    if not unseen.empty:
        layers = list(dict.fromkeys(unseen["layer"]))
        layer = st.selectbox("Layer", layers, index=len(layers) - 1, key="unseen_layer")
        st.plotly_chart(
            new_class_figures.unseen_compression(
                unseen[unseen["layer"] == layer], f"Compressed for classes it never saw — {layer}"
            ),
            config=PLOT_CONFIG,
            key="unseen_chart",
        )
        st.caption(report.UNSEEN_NOTE)
    number = st.column_config.NumberColumn
    st.dataframe(
        retrieval,
        hide_index=True,
        key="retrieval_table",
        column_config={
            c: number(format="%.3f")
            for c in (
                "precision_at_1",
                "map_at_r",
                "r_precision",
                "map_at_r_low",
                "map_at_r_high",
                "verification_auc",
                "tar_at_far_0.01",
            )
        },
    )
