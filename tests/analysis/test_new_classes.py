"""Recognising classes the network never saw, per layer: retrieval and verification against their
references (pytorch-metric-learning, scikit-learn), few-shot episodes against a brute-force
computation, and the unseen-class projection never fitted on an image of the classes it is scored on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from explorer.analysis import few_shot as few_shot_mod
from explorer.analysis import unseen as unseen_mod
from explorer.analysis.chunked import unit_rows
from explorer.analysis.few_shot import ALL, few_shot_curve
from explorer.analysis.leaderboard import best_cut, leaderboard_table
from explorer.analysis.retrieval import (
    pair_similarity,
    query_sample,
    retrieval_scores,
    verification,
    verification_pairs,
)


def clustered(n: int, d: int, classes: int, spread: float = 0.6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.standard_normal((classes, d))
    return (centres[y] * spread + rng.standard_normal((n, d))).astype(np.float32), y


@pytest.mark.parametrize("seed", [0, 1])
def test_retrieval_equals_pytorch_metric_learning(seed: int) -> None:
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    x, y = clustered(500, 24, 9, seed=seed)
    y[0] = 9  # a class of one image: not a query, still in the reference set
    got = retrieval_scores(x, y, max_pairs=10**6)  # no sample of queries or pairs
    assert got is not None and not got.sampled and got.queries == 499 and got.images == 500
    xn = torch.from_numpy(unit_rows(x))  # faiss's L2 on unit rows ranks as cosine does
    calc = AccuracyCalculator(
        include=("precision_at_1", "mean_average_precision_at_r", "r_precision"), k="max_bin_count"
    )
    ref = calc.get_accuracy(xn, torch.from_numpy(y), xn, torch.from_numpy(y), ref_includes_query=True)
    assert got.precision_at_1 == pytest.approx(ref["precision_at_1"], abs=1e-9)
    assert got.map_at_r == pytest.approx(ref["mean_average_precision_at_r"], abs=1e-9)
    assert got.r_precision == pytest.approx(ref["r_precision"], abs=1e-9)
    assert got.map_at_r_low < got.map_at_r < got.map_at_r_high


def test_verification_equals_scikit_learn_on_every_pair() -> None:
    x, y = clustered(300, 16, 6, spread=0.4)
    got = retrieval_scores(x, y)
    xn = unit_rows(x).astype(np.float64)
    a, b = np.triu_indices(len(y), 1)
    sims = np.sum(xn[a] * xn[b], axis=1)
    same = y[a] == y[b]
    assert got is not None and got.pairs == len(a)
    assert got.verification_auc == pytest.approx(roc_auc_score(same, sims), abs=1e-6)
    # TAR at FAR 0.01, by hand: the share of same-class pairs above the threshold that lets 1 % of the others in
    neg = np.sort(sims[~same])[::-1]
    threshold = neg[int(np.floor(0.01 * len(neg))) - 1]
    assert got.tar_at_far == pytest.approx(np.mean(sims[same] > threshold), abs=2e-3)


def test_sampled_pairs_and_queries_are_stratified_and_said() -> None:
    x, y = clustered(3000, 16, 5, spread=0.5)
    y[y == 4] = np.where(np.arange((y == 4).sum()) % 3 == 0, 4, 0)  # unequal classes
    a, b, same, sampled = verification_pairs(y, max_pairs=20_000, random_state=0)
    assert sampled and same.sum() == 20_000 and (~same).sum() == 20_000
    assert (y[a] == y[b]).tolist() == same.tolist() and not np.any(a == b)
    counts = np.bincount(y)
    share = counts * (counts - 1) / np.sum(counts * (counts - 1))
    assert np.allclose(np.bincount(y[a[same]], minlength=5) / 20_000, share, atol=0.02)
    xn = unit_rows(x)
    full_a, full_b = np.triu_indices(len(y), 1)
    full_auc, _ = verification(pair_similarity(xn, full_a, full_b), y[full_a] == y[full_b])
    sampled_auc, _ = verification(pair_similarity(xn, a, b), same)
    assert sampled_auc == pytest.approx(full_auc, abs=0.01)
    q = query_sample(y, 600, random_state=0)
    assert len(q) == 600 and np.allclose(np.bincount(y[q], minlength=5) / 600, counts / len(y), atol=0.01)
    got = retrieval_scores(x, y, max_queries=600, max_pairs=20_000)
    every = retrieval_scores(x, y, max_queries=10_000, max_pairs=10**7)
    assert got.sampled and not every.sampled and got.queries == 600
    assert every.map_at_r_low - 0.02 < got.map_at_r < every.map_at_r_high + 0.02


def brute_force_prototype(x: np.ndarray, support: list[np.ndarray], queries: list[np.ndarray]) -> float:
    """Each query's nearest class mean (cosine), one at a time."""
    unit = [v / np.linalg.norm(v) for v in x.astype(np.float64)]
    means = [np.mean([unit[i] for i in s], axis=0) for s in support]
    right = total = 0
    for c, rows in enumerate(queries):
        for i in rows:
            cos = [float(unit[i] @ m / np.linalg.norm(m)) for m in means]
            right += int(np.argmax(cos) == c)
            total += 1
    return right / total


@pytest.mark.parametrize("shots", [1, 5, ALL])
def test_prototype_accuracy_matches_brute_force(shots: int) -> None:
    x, y = clustered(400, 12, 6, spread=0.5)
    curve = few_shot_curve(
        x, y, c=0.1, shots=(shots,), methods=("prototype",), episodes={"prototype": 7}, all_episodes=7
    )
    classes = few_shot_mod._classes(y, 0)
    accs = []
    for e in range(7):
        support, queries, part = few_shot_mod._episode(classes, shots, np.random.default_rng([0, 2, shots, e]))
        for c, (s, q) in enumerate(zip(support, queries)):
            assert set(y[s]) == set(y[q]) == {classes.ids[part[c]]} and not set(s) & set(q)
            assert len(s) == (shots if shots != ALL else np.sum(y == classes.ids[part[c]]) - len(q))
        accs.append(brute_force_prototype(x, support, queries))
    assert curve.accuracy[0] == pytest.approx(np.mean(accs), abs=1e-9)
    half = 1.96 * np.std(accs, ddof=1) / np.sqrt(7)
    assert curve.low[0] == pytest.approx(np.mean(accs) - half) and curve.high[0] == pytest.approx(np.mean(accs) + half)


def test_seed_reproduces_the_few_shot_intervals() -> None:
    x, y = clustered(300, 10, 5, spread=0.5)
    kw = dict(c=0.1, shots=(1, 5, ALL), episodes={"prototype": 20, "probe": 4}, all_episodes=3)
    a, b = few_shot_curve(x, y, random_state=3, **kw), few_shot_curve(x, y, random_state=3, **kw)
    other = few_shot_curve(x, y, random_state=4, **kw)
    for field in ("accuracy", "low", "high"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.accuracy, other.accuracy)
    assert list(a.shots) == [1, 1, 5, 5, ALL, ALL] and list(a.method) == ["prototype", "probe"] * 3
    assert (a.accuracy > 0.2).all() and a.at(5, "prototype") > a.at(1, "prototype")  # 5 classes: chance 0.2


def test_few_shot_leaves_out_shots_no_two_classes_can_give() -> None:
    x, y = clustered(60, 8, 3, spread=1.0)
    curve = few_shot_curve(x, y, c=0.1, episodes={"prototype": 3, "probe": 2})
    assert 20 not in curve.shots.tolist() and {1, 5, ALL} <= set(curve.shots.tolist())  # ~20 images per class


def test_unseen_projection_never_sees_the_classes_it_is_scored_on(monkeypatch: pytest.MonkeyPatch) -> None:
    x, y = clustered(800, 32, 10, spread=0.5)
    fitted: list[np.ndarray] = []
    real = unseen_mod.fit_projection

    def spy(xf, yf, method, k=None):  # type: ignore[no-untyped-def]
        fitted.append(np.asarray(yf))
        assert np.array_equal(xf, x[np.isin(y, np.unique(yf))])  # the images fitted on: those classes' own
        return real(xf, yf, method, k)

    monkeypatch.setattr(unseen_mod, "fit_projection", spy)
    curve = unseen_mod.unseen_curve(x, y)
    assert curve is not None and len(fitted) == 2  # PCA and LDA
    assert not set(curve.seen) & set(curve.unseen) and len(curve.seen) == len(curve.unseen) == 5
    for labels in fitted:
        assert set(labels.tolist()) == set(curve.seen.tolist())
    assert set(curve.method) == {"none", "pca", "lda"} and curve.k[curve.method == "lda"].max() == 4  # 5 classes - 1
    # the layer unprojected, scored on the unseen half only, equals retrieval on those images alone
    rows = np.flatnonzero(np.isin(y, curve.unseen))
    alone = retrieval_scores(x[rows], y[rows])
    assert curve.map_at_r[curve.method == "none"][0] == pytest.approx(alone.map_at_r)


def test_leaderboard_ranks_by_any_accuracy_column() -> None:
    import pandas as pd

    from explorer.analysis.leaderboard import LayerCost

    metrics = pd.DataFrame(
        {
            "model": ["m", "m"],
            "layer": ["a", "b"],
            "node": ["a", "b"],
            "dim": [8, 16],
            "probe_acc": [0.9, 0.8],
            "probe_acc_low": [0.85, 0.75],
            "probe_acc_high": [0.95, 0.85],
            "knn_acc": [0.7, 0.75],
        }
    )
    costs = {("m", "a"): LayerCost(10, 0.1), ("m", "b"): LayerCost(20, 0.2)}
    board = leaderboard_table(
        metrics, costs, {}, {}, {"m": "default"}, {("m", "a"): (0.3, 0.5), ("m", "b"): (0.6, 0.7)}
    )
    assert board.set_index("layer").loc["b", "map_at_r"] == 0.6
    assert best_cut(board)["layer"] == "a" and best_cut(board, rank_by="map_at_r")["layer"] == "b"
    assert best_cut(board, rank_by="few_shot_5_prototype")["layer"] == "b"
    with pytest.raises(ValueError, match="rank by one of"):
        best_cut(board, rank_by="gflops")


def test_the_probe_at_all_is_read_off_the_cross_validated_probes_answers() -> None:
    x, y = clustered(300, 10, 5, spread=0.5)
    kw = dict(c=0.1, shots=(ALL,), methods=("probe",), all_episodes=3)
    assert few_shot_curve(x, y, held_out=y, **kw).accuracy[0] == 1.0  # its answers, not a new fit
    assert few_shot_curve(x, y, held_out=(y + 1) % 5, **kw).accuracy[0] == 0.0
    trained = few_shot_curve(x, y, **kw).accuracy[0]
    assert 0.2 < trained < 1.0  # without them, a probe trained on the support


def test_thousands_of_classes_are_sampled_and_scored() -> None:
    """FaceNet's case: many identities of a few images each, more classes than the queries sampled."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3000), 3)
    x = (rng.standard_normal((3000, 16))[y] + 0.5 * rng.standard_normal((9000, 16))).astype(np.float32)
    got = retrieval_scores(x, y, max_queries=2000, max_pairs=5000)
    assert got.sampled and got.queries == 2000 and got.precision_at_1 > 0.5
    curve = few_shot_curve(x, y, c=0.1, shots=(1, ALL), episodes={"prototype": 3, "probe": 2}, all_episodes=2)
    assert curve is not None and set(curve.ways.tolist()) == {100}  # a seeded choice of 100 classes
    assert unseen_mod.unseen_curve(x, y) is not None


def test_lda_falls_back_to_svd_where_the_shrunk_covariance_is_singular(monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean clone met it on a small sample: scipy's eigh refused the shrunk within-class covariance."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    def refuse(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise np.linalg.LinAlgError("The leading minor of order 6 of B is not positive definite.")

    monkeypatch.setattr(LinearDiscriminantAnalysis, "_solve_eigen", refuse)
    x, y = clustered(300, 12, 6, spread=0.8)
    p = unseen_mod.fit_projection(x, y, "lda")
    assert p.weights.shape == (12, 5)
    z = p(x)  # the discriminant axes separate the classes: nearest class mean right far above chance
    means = np.stack([z[y == c].mean(0) for c in range(6)])
    assert np.mean(np.argmin(((z[:, None] - means) ** 2).sum(-1), 1) == y) > 0.5
    assert unseen_mod.unseen_curve(x, y) is not None
