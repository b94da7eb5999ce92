"""Where a selection emerges: balanced sampling, and the probe's accuracy along depth against
scikit-learn's logistic regression on the same rows and folds."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.analysis import emergence as em


def test_balanced_rows_take_every_selected_image_and_as_many_others() -> None:
    rows, y = em.balanced_rows(100, [3, 7, 9, 50], random_state=1)
    assert sorted(rows[y == 1].tolist()) == [3, 7, 9, 50] and (y == 0).sum() == 4 and np.all(np.diff(rows) > 0)
    rows, y = em.balanced_rows(5000, range(3000), random_state=1)  # more selected than left out: both sides capped
    assert (y == 1).sum() == (y == 0).sum() == em.MAX_PER_SIDE
    with pytest.raises(ValueError, match="select at least 3 images"):
        em.balanced_rows(100, [1, 2])


def test_a_selection_emerges_where_its_signal_appears() -> None:
    rng = np.random.default_rng(0)
    n = 600
    selected = np.flatnonzero(rng.random(n) < 0.2)
    signal = np.zeros((n, 8), np.float32)
    signal[selected, 0] = 3.0
    feats = {
        "noise": rng.normal(size=(n, 8)).astype(np.float32),
        "signal": (rng.normal(size=(n, 8)) + signal).astype(np.float32),
    }
    out = em.emergence(feats, selected)
    assert out.layers == ("noise", "signal") and out.n_selected == len(selected) and out.n_used == 2 * len(selected)
    assert abs(out.accuracy[0] - 0.5) < 0.1 and out.accuracy[1] > 0.9
    # the same rows and folds through scikit-learn (standardised, the C our nested search picks most)
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rows, y = em.balanced_rows(n, selected)
    folds = StratifiedKFold(em.FOLDS, shuffle=True, random_state=0)
    best = max(
        cross_val_score(
            make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)), feats["signal"][rows], y, cv=folds
        ).mean()
        for c in (0.01, 0.1, 1.0, 10.0)
    )
    assert abs(out.accuracy[1] - best) < 0.03
