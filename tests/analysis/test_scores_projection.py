"""Metric sanity on synthetic data, CKA identities, projections with thresholds and small-N guards."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.analysis.neighbors import knn_graph
from explorer.analysis.projection import TSNE_MAX_POINTS, align, project
from explorer.analysis.scores import cosine_silhouette, effective_dim, score_layer
from explorer.analysis.similarity import layer_similarity
from explorer.config import MetricSpec, ProjectionSpec


def _blobs(n_per: int = 40, k: int = 4, d: int = 30, sep: float = 12.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(k, d)) * sep
    x = np.concatenate([c + rng.normal(size=(n_per, d)) for c in centers])
    y = np.repeat([f"c{i}" for i in range(k)], n_per)
    return x, y


def test_separated_blobs_score_near_one_and_shuffled_labels_near_chance() -> None:
    x, y = _blobs()
    good = score_layer(x, y, MetricSpec())
    assert good.probe_acc > 0.97 and good.knn_acc > 0.97 and good.silhouette > 0.5
    assert good.confusion.sum() == len(y) and np.trace(good.confusion) > 0.97 * len(y)
    rng = np.random.default_rng(1)
    noise = rng.normal(size=x.shape)
    bad = score_layer(noise, rng.permutation(y), MetricSpec())
    assert abs(bad.probe_acc - 0.25) < 0.12 and abs(bad.knn_acc - 0.25) < 0.12
    assert abs(bad.silhouette) < 0.1


def test_label_metrics_not_applicable_without_labels_or_classes() -> None:
    x, y = _blobs()
    none = score_layer(x, None, MetricSpec())
    assert none.probe_acc is None and "no labels" in none.note and none.eff_dim > 0
    one = score_layer(x, np.array(["a"] * len(x)), MetricSpec())
    assert one.probe_acc is None and "2 classes" in one.note
    singles = score_layer(x[:4], np.array(["a", "b", "c", "d"]), MetricSpec())
    assert singles.probe_acc is None and "at least 2 images" in singles.note


def test_folds_shrink_to_smallest_class() -> None:
    x, y = _blobs(n_per=3, k=3)
    s = score_layer(x, y, MetricSpec(folds=5))
    assert s.probe_acc is not None and not s.note  # 3 folds, not a crash


def test_classes_too_small_for_the_folds_are_left_out_and_named() -> None:
    x, y = _blobs(n_per=30, k=4)
    y = y.astype("<U8")
    y[:3] = "tiny"  # 3 images: fewer than 5 folds need
    s = score_layer(x, y, MetricSpec(folds=5))
    assert s.probe_acc is not None and "tiny" in s.note and "1 class" in s.note
    assert s.confusion.shape == (5, 5) and s.confusion.sum() == len(y) - 3  # every class shown, tiny's row empty


def test_silhouette_in_linear_time_equals_sklearn() -> None:
    from sklearn.metrics import silhouette_score

    x, y = _blobs(n_per=50, k=4, sep=1.5)
    x[3] = 0.0  # a zero row: distance 1 from everything, as sklearn's cosine distance
    codes = np.unique(y, return_inverse=True)[1]
    codes[-1] = 4  # a class of one image scores 0
    assert cosine_silhouette(x, codes) == pytest.approx(silhouette_score(x, codes, metric="cosine"), abs=1e-10)
    gaps = codes * 2  # class indices no row has (classes the label metrics leave out): no NaN
    assert cosine_silhouette(x, gaps) == pytest.approx(silhouette_score(x, gaps, metric="cosine"), abs=1e-10)


def test_effective_dimensionality() -> None:
    rng = np.random.default_rng(0)
    iso = rng.normal(size=(4000, 10))
    pr, n90 = effective_dim(iso)
    assert 9.0 < pr <= 10.0 and n90 == 9
    line = np.outer(rng.normal(size=500), rng.normal(size=20))
    assert effective_dim(line)[0] == pytest.approx(1.0, abs=1e-6)


def test_linear_cka_identities() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 20))
    q, _ = np.linalg.qr(rng.normal(size=(20, 20)))
    y = rng.normal(size=(100, 50))
    sim = layer_similarity({"a": x, "b": 3.0 * x @ q + 5.0, "c": y})  # invariant to rotation, scale, shift
    assert sim.names == ["a", "b", "c"] and np.allclose(sim.cka, sim.cka.T) and sim.cka[0, 1] == pytest.approx(1.0)
    assert sim.cka_debiased[0, 1] == pytest.approx(1.0) and abs(sim.cka_debiased[0, 2]) < 0.1


@pytest.mark.parametrize("method", ["pca", "umap", "tsne"])
def test_projections_preserve_neighbourhoods(method: str) -> None:
    from sklearn.manifold import trustworthiness

    x, _ = _blobs(n_per=30, d=60)
    p = project(x, ProjectionSpec(method=method))
    assert p.coords.shape == (120, 2) and p.method == method and not p.message
    assert trustworthiness(x, p.coords, n_neighbors=5) >= 0.8
    again = project(x, ProjectionSpec(method=method))
    np.testing.assert_allclose(p.coords, again.coords, rtol=1e-4, atol=1e-4)  # seeded: reproducible


def test_umap_reuses_the_layer_graph() -> None:
    from sklearn.manifold import trustworthiness

    x, _ = _blobs(n_per=30, d=60)
    graph = knn_graph(x, 15)
    p = project(x, ProjectionSpec(method="umap"), graph=graph)
    assert trustworthiness(x, p.coords, n_neighbors=5, metric="cosine") >= 0.8
    shuffled = graph.__class__(np.random.default_rng(0).permutation(graph.indices), graph.distances, "exact", 1.0)
    q = project(x, ProjectionSpec(method="umap"), graph=shuffled)  # the graph, not the features, drives it
    assert trustworthiness(x, q.coords, n_neighbors=5, metric="cosine") < 0.7


def test_umap_runs_fewer_epochs_where_its_schedule_says(monkeypatch: pytest.MonkeyPatch) -> None:
    """From UMAP_MID_N images up to umap-learn's 500-epoch limit the layout is umap-learn's with
    UMAP_MID_EPOCHS epochs, from UMAP_LARGE_N with UMAP_LARGE_EPOCHS, the same fit otherwise; elsewhere
    umap-learn's own schedule (the thresholds moved so a test's small dataset crosses them). Always
    with umap-learn's own a and b for min_dist, as float32 (projection.umap_curve)."""
    import warnings

    from explorer.analysis import projection

    x, _ = _blobs(n_per=30, d=40)  # narrower than UMAP_PCA_DIMS: umap-learn sees the features themselves
    graph = knn_graph(x, 15)
    spec = ProjectionSpec(method="umap")
    assert len(x) < projection.UMAP_MID_N
    small = project(x, spec, graph=graph).coords

    umap = projection.umap_module()
    a, b = (np.float32(v) for v in umap.umap_.find_ab_params(1.0, spec.min_dist))

    def umap_learn(n_epochs: int | None) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return umap.UMAP(
                n_neighbors=15,
                min_dist=spec.min_dist,
                a=a,
                b=b,
                random_state=spec.random_state,
                init="spectral",
                n_epochs=n_epochs,
                metric="cosine",
                precomputed_knn=projection._umap_knn(graph, 15),
            ).fit_transform(x)

    np.testing.assert_array_equal(small, umap_learn(None))
    monkeypatch.setattr(projection, "UMAP_MID_N", len(x))
    mid = project(x, spec, graph=graph).coords
    np.testing.assert_array_equal(mid, umap_learn(projection.UMAP_MID_EPOCHS))
    assert not np.allclose(mid, small)
    monkeypatch.setattr(projection, "UMAP_LEARN_500_MAX", len(x) - 1)  # beyond it: umap-learn's own schedule
    np.testing.assert_array_equal(project(x, spec, graph=graph).coords, umap_learn(None))
    monkeypatch.setattr(projection, "UMAP_LARGE_N", len(x))
    large = project(x, spec, graph=graph).coords
    np.testing.assert_array_equal(large, umap_learn(projection.UMAP_LARGE_EPOCHS))
    assert not np.allclose(large, small) and not np.allclose(large, mid)
    assert projection.UMAP_MID_EPOCHS < 500 and projection.UMAP_LARGE_EPOCHS < 200


def test_tsne_refuses_beyond_its_size_and_names_the_alternatives() -> None:
    x = np.zeros((TSNE_MAX_POINTS + 1, 2), np.float32)
    with pytest.raises(ValueError, match="umap.*pca"):
        project(x, ProjectionSpec(method="tsne"))


def test_tiny_inputs_fall_back_with_message() -> None:
    x = np.random.default_rng(0).normal(size=(4, 8))
    p = project(x, ProjectionSpec(method="umap", n_components=3))
    assert p.method == "pca" and "at least" in p.message and p.coords.shape == (4, 3)
    one = project(x[:1], ProjectionSpec(method="tsne"))
    assert one.coords.shape == (1, 2)


def test_align_recovers_a_rotation() -> None:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 2))
    theta = 1.1
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = -(ref @ rot) * 2.5 + 7
    np.testing.assert_allclose(align(ref, moved), ref, atol=1e-5)
