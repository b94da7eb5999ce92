"""The N x N-free metrics (similarity.py, neighbors.py, probe.py) against direct implementations."""

import numpy as np
import pytest

from explorer.analysis.neighbors import knn_accuracy, knn_graph, neighbourhood_overlap
from explorer.analysis.probe import probe
from explorer.analysis.similarity import JOINT_ROW_CHUNK, layer_similarity


def _gram_cka(x, y):
    """Kornblith et al. 2019 through N x N centred Gram matrices."""
    kx = (x - x.mean(0)) @ (x - x.mean(0)).T
    ky = (y - y.mean(0)) @ (y - y.mean(0)).T
    return (kx * ky).sum() / (np.linalg.norm(kx) * np.linalg.norm(ky))


def _hsic_unbiased(k, l):
    """Song et al. 2012, eq. 5, written out on Gram matrices with zeroed diagonals."""
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    one = np.ones(n)
    return (
        np.trace(k @ l) + (one @ k @ one) * (one @ l @ one) / ((n - 1) * (n - 2)) - 2 / (n - 2) * one @ k @ l @ one
    ) / (n * (n - 3))


def _debiased_cka(x, y):
    xc, yc = x - x.mean(0), y - y.mean(0)
    k, l = xc @ xc.T, yc @ yc.T
    return _hsic_unbiased(k, l) / np.sqrt(_hsic_unbiased(k, k) * _hsic_unbiased(l, l))


def test_cka_from_cross_products_equals_gram_formula_and_debiased_formula(monkeypatch):
    rng = np.random.default_rng(0)
    feats = {"a": rng.normal(size=(60, 5)), "b": rng.normal(size=(60, 90)), "c": rng.normal(size=(60, 7)) ** 2}
    feats["b"][:, :5] += 3 * feats["a"]
    monkeypatch.setattr("explorer.analysis.similarity.JOINT_ROW_CHUNK", 16)  # several chunks
    sim = layer_similarity(feats)
    for i, a in enumerate(sim.names):
        for j, b in enumerate(sim.names):
            assert sim.cka[i, j] == pytest.approx(_gram_cka(feats[a], feats[b]), abs=1e-6)
            assert sim.cka_debiased[i, j] == pytest.approx(_debiased_cka(feats[a], feats[b]), abs=1e-6)
    assert JOINT_ROW_CHUNK > 16


def test_cka_one_layer_at_a_time_equals_joint(monkeypatch):
    rng = np.random.default_rng(1)
    feats = {"a": rng.normal(size=(50, 6)), "b": rng.normal(size=(50, 30))}
    joint = layer_similarity(feats)
    monkeypatch.setattr("explorer.analysis.similarity.MAX_JOINT_BYTES", 0)
    split = layer_similarity(feats)
    np.testing.assert_allclose(split.cka, joint.cka, atol=1e-9)
    np.testing.assert_allclose(split.cka_debiased, joint.cka_debiased, atol=1e-9)


def test_debiased_cka_does_not_read_high_for_unrelated_wide_layers():
    rng = np.random.default_rng(2)
    sim = layer_similarity({"a": rng.normal(size=(40, 400)), "b": rng.normal(size=(40, 400))})
    assert sim.cka[0, 1] > 0.8  # the plain estimator with N << D
    assert abs(sim.cka_debiased[0, 1]) < 0.1


def _blobs(n=300, d=20, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    return rng.normal(size=(n, d)) + 1.5 * rng.normal(size=(classes, d))[y], y


def test_exact_graph_and_knn_accuracy_equal_brute_force():
    from sklearn.neighbors import KNeighborsClassifier

    x, y = _blobs()
    g = knn_graph(x, 15, exact=True)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    d = 1 - xn @ xn.T
    np.fill_diagonal(d, np.inf)
    brute = np.argsort(d, axis=1, kind="stable")[:, :15]
    assert np.mean(g.indices == brute) > 0.99  # ties in float rounding aside
    loo = []
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        clf = KNeighborsClassifier(5, metric="cosine", algorithm="brute").fit(x[keep], y[keep])
        loo.append(clf.predict(x[i : i + 1])[0] == y[i])
    assert knn_accuracy(g, y, 5) == pytest.approx(np.mean(loo), abs=1e-9)


def test_hnsw_graph_reports_high_recall_and_overlap_is_one_with_itself():
    x, _ = _blobs(n=2000, d=32)
    g = knn_graph(x, 10, exact=False)
    assert g.method == "hnsw" and g.recall > 0.9
    assert neighbourhood_overlap(g, g) == 1.0
    other = knn_graph(np.random.default_rng(5).normal(size=x.shape), 10, exact=True)
    assert neighbourhood_overlap(g, other) < 0.1


def test_probe_matches_sklearn_at_the_same_c_and_tuning_helps_where_c_matters():
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs(n=400, d=6, seed=3)
    x = x + np.random.default_rng(3).normal(size=x.shape) * 2
    for c in (0.001, 1.0):
        ours = probe(x, y, 5, c=c).accuracy
        cv = StratifiedKFold(5, shuffle=True, random_state=0)
        sk = cross_val_score(make_pipeline(StandardScaler(), LogisticRegression(C=c)), x, y, cv=cv).mean()
        assert ours == pytest.approx(sk, abs=0.01)
    fixed = probe(x, y, 5, c=0.001).accuracy  # strongly over-regularised for 6 informative dims
    tuned = probe(x, y, 5)
    assert tuned.accuracy >= fixed + 0.02
    assert tuned.c >= 0.01
