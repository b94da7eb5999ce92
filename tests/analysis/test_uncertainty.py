"""Error bars and controls (issue 22, item 4) against direct computations at small N: the bootstrap
of accuracy and of the step between layers against resampling the images themselves, the fold
spread, the label-permutation controls against scikit-learn and brute-force kNN, CKA's bootstrap
against CKA of the resampled rows, and the noise and bias sentences."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.analysis import similarity as sim_mod
from explorer.analysis.probe import control, outer_folds
from explorer.analysis.scores import label_plan, score_layer
from explorer.analysis.similarity import Similarity, cka_interval, layer_similarity
from explorer.analysis.uncertainty import accuracy_interval, fold_spread, step
from explorer.config import MetricSpec
from explorer.output.sentences import cka_bias_note


def _brute_bootstrap(values: np.ndarray, draws: int, seed: int) -> tuple[float, float]:
    """Resample the images themselves (indices with replacement) and take the mean."""
    rng = np.random.default_rng(seed)
    means = [values[rng.integers(0, len(values), len(values))].mean() for _ in range(draws)]
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(lo), float(hi)


def test_accuracy_interval_is_the_bootstrap_over_images():
    correct = np.random.default_rng(0).random(600) < 0.7
    lo, hi = accuracy_interval(correct)
    blo, bhi = _brute_bootstrap(correct.astype(float), 4000, 1)
    assert lo == pytest.approx(blo, abs=0.006) and hi == pytest.approx(bhi, abs=0.006)
    assert lo < correct.mean() < hi
    half = 1.96 * np.sqrt(correct.mean() * (1 - correct.mean()) / len(correct))  # the normal approximation
    assert hi - lo == pytest.approx(2 * half, rel=0.1)


def test_step_is_the_paired_bootstrap_and_says_when_it_is_inside_the_noise():
    rng = np.random.default_rng(2)
    a = rng.random(800) < 0.8
    b = a.copy()
    flip = rng.choice(800, 60, replace=False)
    b[flip] = ~b[flip]  # b differs from a in 60 images
    got = step(a, b)
    assert got.diff == pytest.approx(b.mean() - a.mean())
    blo, bhi = _brute_bootstrap(b.astype(float) - a.astype(float), 4000, 3)
    assert got.low == pytest.approx(blo, abs=0.006) and got.high == pytest.approx(bhi, abs=0.006)
    assert got.in_noise == (got.low <= 0 <= got.high)
    # a clear step: 100 more right, none lost
    c = a.copy()
    c[np.flatnonzero(~a)[:100]] = True
    clear = step(a, c)
    assert not clear.in_noise and clear.low > 0.09
    assert step(a, a.copy()).in_noise


def test_fold_spread_is_the_std_of_per_fold_accuracy():
    rng = np.random.default_rng(4)
    y = rng.integers(0, 3, 300)
    correct = rng.random(300) < 0.6
    fold = outer_folds(y, 5, 0)
    direct = np.std([correct[fold == f].mean() for f in range(5)])
    assert fold_spread(correct, fold) == pytest.approx(direct)
    assert sorted(np.bincount(fold)) == [60] * 5


def _blobs(n=400, d=8, classes=4, sep=3.0, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    return (rng.normal(size=(n, d)) + sep * rng.normal(size=(classes, d))[y]).astype(np.float32), y


def test_probe_control_is_sklearns_probe_on_the_permuted_labels():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs()
    rows = np.arange(len(y))
    got = control(x, y, 5, rows=rows, c=1.0, random_state=0)
    shuffled = np.random.default_rng(0).permutation(
        y
    )  # the control's permutation (its seed; all rows: fewer than CONTROL_ROWS)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    direct = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(C=1.0)), x, shuffled, cv=cv).mean()
    assert got.accuracy == pytest.approx(direct, abs=0.01)
    assert got.accuracy < 0.4  # 4 classes: chance, though the real labels are easy


def test_scores_carry_intervals_controls_and_selectivity():
    x, y = _blobs(n=300)
    labels = np.array([f"c{v}" for v in y])
    s = score_layer(x, labels, MetricSpec())
    plan = label_plan(labels, 5)
    right = s.predicted[plan.rows] == plan.y
    assert s.probe_acc_low <= right.mean() <= s.probe_acc_high
    assert s.probe_acc > 0.9 and s.probe_control < 0.45 and s.probe_acc - s.probe_control > 0.5
    # kNN: the votes against brute-force cosine neighbours, and the control with the same permutation
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = 1 - xn @ xn.T
    np.fill_diagonal(d, np.inf)
    nearest = np.argsort(d, axis=1, kind="stable")[:, :5]

    def vote(lab):
        return np.array([np.bincount(lab[nb], minlength=4).argmax() for nb in nearest])

    assert np.mean(s.knn_predicted == vote(y)) > 0.99  # float near-ties aside
    assert s.knn_acc == pytest.approx(np.mean(vote(y) == y), abs=0.01)
    shuffled = np.random.default_rng(0).permutation(y)
    assert s.knn_control == pytest.approx(np.mean(vote(shuffled) == shuffled), abs=0.01)
    assert s.knn_acc_std == pytest.approx(fold_spread(s.knn_predicted == y, outer_folds(y, 5, 0)))
    assert s.knn_acc_low <= s.knn_acc <= s.knn_acc_high


def _features(n=120, seed=5):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(n, 6))
    return {
        "a": a,
        "b": np.concatenate([a @ rng.normal(size=(6, 4)), rng.normal(size=(n, 30))], 1),
        "c": rng.normal(size=(n, 12)) ** 2,
    }


def test_weighted_hsic_is_cka_of_the_resampled_rows():
    feats = _features()
    n = 120
    idx = np.random.default_rng(6).integers(0, n, n)
    w = np.bincount(idx, minlength=n).astype(float)[None, :]
    grams = {k: (f - f.mean(0)) @ (f - f.mean(0)).T for k, f in feats.items()}
    h = {
        (p, q): sim_mod._weighted_hsic(grams[p], grams[q], w @ grams[p], w @ grams[q], w)[0]
        for p in feats
        for q in feats
    }
    resampled = layer_similarity({k: f[idx] for k, f in feats.items()})
    for i, p in enumerate(feats):
        for j, q in enumerate(feats):
            assert h[(p, q)] / np.sqrt(h[(p, p)] * h[(q, q)]) == pytest.approx(resampled.cka[i, j], abs=1e-9)


def test_cka_interval_matches_resampling_the_rows_and_scales_with_a_sample(monkeypatch):
    feats = _features(n=300)
    full = layer_similarity(feats)
    low, high, m = cka_interval(feats, full.cka, draws=400)
    assert m == 300
    rng = np.random.default_rng(7)
    boots = []
    for _ in range(400):
        idx = rng.integers(0, 300, 300)
        boots.append(layer_similarity({k: f[idx] for k, f in feats.items()}).cka[0, 2])
    blo, mid, bhi = np.quantile(boots, [0.025, 0.5, 0.975])
    assert mid > full.cka[0, 2]  # repeated images inflate plain CKA: hence the spread around the median
    width = bhi - blo
    assert low[0, 2] - full.cka[0, 2] == pytest.approx(blo - mid, abs=0.25 * width)
    assert high[0, 2] - full.cka[0, 2] == pytest.approx(bhi - mid, abs=0.25 * width)
    assert np.all(low <= full.cka + 1e-12) and np.all(full.cka <= high + 1e-12)
    # m-out-of-n: 100 of the 300 images, the spread scaled back to N: about the same width
    slo, shi, sm = cka_interval(feats, full.cka, images=100, draws=400)
    assert sm == 100
    assert 0.5 < (shi[0, 2] - slo[0, 2]) / (high[0, 2] - low[0, 2]) < 2.0


def test_bias_note_where_images_are_few_next_to_the_dimensions():
    rng = np.random.default_rng(8)
    wide = layer_similarity({"a": rng.normal(size=(40, 400)), "b": rng.normal(size=(40, 400))})
    note = cka_bias_note(wide, 40)
    assert "biased upward" in note and "a and b" in note
    many = layer_similarity({"a": rng.normal(size=(4000, 8)), "b": rng.normal(size=(4000, 8))})
    assert cka_bias_note(many, 4000) == ""
    assert cka_bias_note(Similarity(["a"], np.eye(1), np.eye(1)), 10) == ""
