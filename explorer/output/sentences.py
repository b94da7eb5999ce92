"""The sentences that the report and the dashboard both say about a comparison, written once."""

from __future__ import annotations

from itertools import pairwise
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..analysis.uncertainty import Step, step

if TYPE_CHECKING:
    from ..comparison import Comparison
    from ..extraction.layer_features import ModelRun


def signed_step(st: Step) -> str:
    """A step in accuracy with its interval: `+0.012, interval -0.004 to +0.028`."""
    return f"{st.diff:+.3f}, interval {st.low:+.3f} to {st.high:+.3f}"


def noise_notes(comp: Comparison, run: ModelRun) -> list[str]:
    """Sentences naming where the run's probe accuracy differs between layers by less than the
    noise: consecutive layers whose paired 95 % bootstrap interval holds 0, and the layers that
    cannot be told apart from the best one. Empty when every step is clear (or unscored)."""
    labels, notes = comp.dataset.labels, []
    keys = comp.layer_keys(run)
    rows = comp.metrics[comp.metrics["model"] == run.label]  # the steps metrics_table computed, in layer order
    steps = [None if pd.isna(d) else Step(d, lo, hi) for d, lo, hi in rows[["probe_step", "probe_step_low", "probe_step_high"]].itertuples(index=False)]
    flat = [f"{a} → {b} ({signed_step(st)})" for (a, b), st in zip(pairwise(keys), steps[1:]) if st is not None and st.in_noise]
    if flat:
        notes.append(f"{run.label}: the probe's change is inside the noise (its 95 % bootstrap interval over the "
                     f"images holds 0) from {'; '.join(flat)}.")  # fmt: skip
    best = comp.best_layer(run)
    if best is None or labels is None:
        return notes
    y = np.unique(np.asarray(labels), return_inverse=True)[1]
    pb = comp.scores[best].predicted
    rows_scored = np.flatnonzero(pb >= 0)  # type: ignore[operator]
    ties = []
    for k in keys:
        pk = comp.scores[k].predicted
        if k != best and pk is not None:
            st = step(pb[rows_scored] == y[rows_scored], pk[rows_scored] == y[rows_scored], random_state=comp.random_state)  # type: ignore[index]
            if st.in_noise:
                ties.append(f"{k} ({signed_step(st)})")
    if ties:
        notes.append(f"{run.label}: the best layer by probe accuracy, {best} ({comp.scores[best].probe_acc:.3f}), cannot be "
                     f"told apart from {', '.join(ties)}: differences inside the noise.")  # fmt: skip
    return notes
