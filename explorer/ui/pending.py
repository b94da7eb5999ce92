"""What an analysis's first view does not hold yet (Comparison.pending), said where it would be
drawn: the page shows the first panels while the rest is computed (run.run_analysis's `first_view`)."""

from __future__ import annotations

import streamlit as st

from ..record import LEADERBOARD, NEW_CLASSES, NULLS, Comparison

WHAT = {
    LEADERBOARD: "the leaderboard (LogME, the compression curves, the cost of each cut)",
    NEW_CLASSES: "the new-class measures (retrieval, few-shot and unseen-class curves)",
    NULLS: "the similarity measures against their nulls",
}


def banner(comp: Comparison) -> None:
    """Above the views: what is still being computed (nothing when the result is whole)."""
    if comp.pending:
        with st.container(key="first_view_pending"):
            st.caption(
                "Still computing " + " and ".join(WHAT[p] for p in comp.pending) + ": each appears in its "
                "view when it is ready. If the analysis was stopped, press Run analysis to finish it "
                "(what it computed is cached)."
            )


def says_pending(comp: Comparison, part: str) -> bool:
    """Say, in a view that draws `part`, that it is still being computed; True when it is."""
    if part not in comp.pending:
        return False
    st.info(f"Still computing {WHAT[part]}: it appears here when it is ready.", icon="⏳")
    return True


def says_files_pending(comp: Comparison) -> bool:
    """Say, in the Export view, that the files wait for the whole analysis; True when they do."""
    if not comp.pending:
        return False
    st.info("The files are written from the whole analysis: they are offered here once it is done.", icon="⏳")
    return True
