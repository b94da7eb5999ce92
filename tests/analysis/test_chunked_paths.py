"""The N x N-free metrics (similarity.py, neighbors.py, probe.py) against direct implementations."""

import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis.extra.numpy import arrays

from explorer.analysis.neighbors import knn_accuracy, knn_graph, neighbourhood_overlap
from explorer.analysis.probe import _row_max, probe
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


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 40), st.integers(1, 80)),
        elements=st.floats(width=32) | st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0]),
    )
)
def test_row_max_is_numpys_row_max(a):
    assert np.array_equal(_row_max(a), a.max(1, keepdims=True), equal_nan=True)


def _replaced_loss_grad(x, y, n_classes, lam, scale):
    """fit_logistic's loss and gradient as they were written before issue 39's third round."""
    n, d = x.shape
    onehot = np.zeros((n, n_classes), dtype=np.float32)
    onehot[np.arange(n), y] = 1.0

    def loss_grad(theta):
        w = theta[: d * n_classes].reshape(d, n_classes) * scale[:, None]
        logits = x @ w.astype(np.float32) + theta[d * n_classes :].astype(np.float32)
        logits -= logits.max(1, keepdims=True)
        p = np.exp(logits)
        z = p.sum(1, keepdims=True)
        p /= z
        loss = float(np.mean(np.log(z[:, 0]) - logits[onehot.astype(bool)])) + lam * float((w * w).sum())
        p -= onehot
        gw = (x.T @ p).astype(np.float64) / n + 2 * lam * w
        return loss, np.concatenate([(gw * scale[:, None]).ravel(), p.sum(0, dtype=np.float64) / n])

    return loss_grad


@pytest.mark.parametrize("n_classes,d", [(2, 3), (10, 40), (90, 12)])
def test_the_probes_fit_is_the_replaced_fit_bit_for_bit(n_classes, d, monkeypatch):
    """The loss and gradient, rewritten for speed, give the same fit to the last bit."""
    from scipy import optimize

    from explorer.analysis import probe as probe_module

    rng = np.random.default_rng(n_classes)
    n, c = 30 * n_classes, 0.5
    y = np.arange(n) % n_classes
    x = (rng.normal(size=(n, d)) + rng.normal(size=(n_classes, d))[y]).astype(np.float32)
    eig = np.linspace(0.1, 3, d).astype(np.float32)
    ours = probe_module.fit_logistic(x, y, n_classes, c, eigvals=eig)
    lam = 1.0 / (2.0 * c * n)
    scale = 1.0 / np.sqrt(np.clip(eig, 0, None) / 10 + 2 * lam)
    minimize, calls = optimize.minimize, []

    def with_the_replaced_loss(f, *a, **k):
        calls.append(f)
        return minimize(_replaced_loss_grad(x, y, n_classes, lam, scale), *a, **k)

    monkeypatch.setattr(optimize, "minimize", with_the_replaced_loss)
    replaced = probe_module.fit_logistic(x, y, n_classes, c, eigvals=eig)
    assert len(calls) == 1
    assert np.array_equal(ours[0], replaced[0]) and np.array_equal(ours[1], replaced[1])
