"""Separability and similarity metrics per layer: probe, kNN, silhouette, effective dim, linear CKA."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .config import MetricSpec


@dataclass(frozen=True)
class LayerScores:
    """Scores of one layer; None means not applicable (e.g. no labels, one class).

    Attributes:
        dim: feature dimension.
        probe_acc, probe_acc_std: linear-probe accuracy, mean and std over stratified folds.
        knn_acc: k-nearest-neighbour accuracy (cosine), same folds.
        silhouette: silhouette coefficient with cosine distance, by class.
        eff_dim: participation ratio of the covariance spectrum.
        n90: principal components needed for 90 % of the variance.
        confusion: the probe's out-of-fold confusion matrix (classes sorted), or None.
        note: why label metrics are not applicable, or "".
    """

    dim: int
    probe_acc: float | None
    probe_acc_std: float | None
    knn_acc: float | None
    silhouette: float | None
    eff_dim: float
    n90: int
    confusion: np.ndarray | None = field(default=None, repr=False)
    note: str = ""


def spectrum(x: np.ndarray) -> np.ndarray:
    """Eigenvalues of the covariance of `x` (descending), via the smaller of the two Gram matrices."""
    xc = x - x.mean(0)
    n = max(x.shape[0] - 1, 1)
    s = np.linalg.svd(xc.astype(np.float64), compute_uv=False)
    return (s**2) / n


def effective_dim(x: np.ndarray) -> tuple[float, int]:
    """Participation ratio (sum l)^2 / sum l^2 of the covariance eigenvalues, and components for 90 %.

    Participation ratio as used for neural representations by Gao et al. 2017 and Recanatesi et al. 2019.
    """
    lam = spectrum(x)
    total = lam.sum()
    if total <= 0:
        return 0.0, 0
    pr = float(total**2 / (lam**2).sum())
    n90 = int(np.searchsorted(np.cumsum(lam) / total, 0.9) + 1)
    return pr, min(n90, len(lam))


def _gram_centered(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(0)
    return xc.astype(np.float64) @ xc.astype(np.float64).T


def linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Linear centred kernel alignment between two representations of the same N inputs.

    CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F), computed through the N x N Gram
    matrices so that wide layers cost O(N^2 D) (Kornblith et al. 2019, "Similarity of Neural
    Network Representations Revisited", eq. 5 and section 3).
    """
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same images in both layers: {x.shape[0]} vs {y.shape[0]} rows")
    kx, ky = _gram_centered(x), _gram_centered(y)
    denom = np.linalg.norm(kx) * np.linalg.norm(ky)
    return float((kx * ky).sum() / denom) if denom > 0 else 0.0


def cka_matrix(features: dict[str, np.ndarray]) -> tuple[list[str], np.ndarray]:
    """Linear CKA between every pair of layers (symmetric, ones on the diagonal)."""
    names = list(features)
    grams = {k: _gram_centered(v) for k, v in features.items()}
    norms = {k: np.linalg.norm(g) for k, g in grams.items()}
    out = np.eye(len(names))
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            b = names[j]
            denom = norms[a] * norms[b]
            out[i, j] = out[j, i] = (grams[a] * grams[b]).sum() / denom if denom > 0 else 0.0
    return names, out


def n_folds(labels: np.ndarray, folds: int) -> int:
    """Stratified folds: `folds`, fewer when the smallest class is smaller; 0 when not possible."""
    _, counts = np.unique(labels, return_counts=True)
    if len(counts) < 2:
        return 0
    return int(min(folds, counts.min())) if counts.min() >= 2 else 0


def label_note(labels: np.ndarray | None, folds: int) -> str:
    """Why label metrics cannot be computed ("" when they can)."""
    if labels is None:
        return "not applicable: the dataset has no labels"
    if len(np.unique(labels)) < 2:
        return "not applicable: needs at least 2 classes"
    if n_folds(labels, folds) < 2:
        return "not applicable: every class needs at least 2 images for cross-validation"
    return ""


def score_layer(x: np.ndarray, labels: np.ndarray | None, spec: MetricSpec) -> LayerScores:
    """All per-layer metrics for one feature matrix.

    Args:
        x: (N, D) features (not modified).
        labels: (N,) class labels, or None for an unlabeled dataset.
        spec: folds, k, regularisation, seed.

    Returns:
        LayerScores.
    """
    import sklearn
    from threadpoolctl import threadpool_limits

    # One BLAS thread: these matrices are small, and two OpenBLAS threads made the probe 7x slower
    # on a 2-core machine (README.md, "Measured"); results are identical. The inputs are made finite
    # here and the estimators' parameters are fixed, so sklearn's per-call checks are skipped (20 %
    # of the scoring time).
    with threadpool_limits(limits=1, user_api="blas"), sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
        return _score(np.nan_to_num(np.asarray(x, dtype=np.float64)), labels, spec)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def cosine_distances(x: np.ndarray) -> np.ndarray:
    """(N, N) cosine distances 1 - cos with a zero diagonal; a zero row is at distance 1 from all others."""
    xn = _unit_rows(x)
    d = np.clip(1.0 - xn @ xn.T, 0.0, 2.0)
    np.fill_diagonal(d, 0.0)
    return d


def _score(x: np.ndarray, labels: np.ndarray | None, spec: MetricSpec) -> LayerScores:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix, silhouette_score
    from sklearn.model_selection import StratifiedKFold
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    eff, n90 = effective_dim(x)
    note = label_note(labels, spec.folds)
    if note:
        return LayerScores(x.shape[1], None, None, None, None, eff, n90, None, note)
    y = np.asarray(labels)
    classes = np.unique(y)
    k = n_folds(y, spec.folds)
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=spec.random_state)
    # kNN and silhouette share one cosine distance matrix instead of recomputing it per fold
    dist = cosine_distances(x)
    # tol=1e-3: 3.5x faster than sklearn's 1e-4 with the same accuracy within 0.01 (README.md, "Measured")
    probe_accs, knn_accs = [], []
    pred = np.empty_like(y)
    for train, test in cv.split(x, y):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=spec.probe_c, tol=1e-3, max_iter=1000))
        probe.fit(x[train], y[train])
        pred[test] = probe.predict(x[test])
        probe_accs.append(float(np.mean(pred[test] == y[test])))
        knn = KNeighborsClassifier(n_neighbors=min(spec.knn_k, len(train)), metric="precomputed")
        knn.fit(dist[np.ix_(train, train)], y[train])
        knn_accs.append(float(np.mean(knn.predict(dist[np.ix_(test, train)]) == y[test])))
    try:
        sil = float(silhouette_score(dist, y, metric="precomputed")) if len(classes) < len(y) else None
    except ValueError:
        sil = None
    return LayerScores(
        dim=x.shape[1],
        probe_acc=float(np.mean(probe_accs)),
        probe_acc_std=float(np.std(probe_accs)),
        knn_acc=float(np.mean(knn_accs)),
        silhouette=sil,
        eff_dim=eff,
        n90=n90,
        confusion=confusion_matrix(y, pred, labels=classes),
        note="",
    )


def nearest_neighbours(x: np.ndarray, index: int, k: int = 6) -> np.ndarray:
    """Indices of the k images closest (cosine) to image `index` in feature space, nearest first."""
    xn = _unit_rows(x)
    sims = xn @ xn[index]
    sims[index] = -np.inf
    k = min(k, len(x) - 1)
    top = np.argpartition(-sims, k - 1)[:k] if k > 0 else np.array([], dtype=int)
    return top[np.argsort(-sims[top])]
