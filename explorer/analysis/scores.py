"""Separability per layer, with memory linear in N: probe, kNN, silhouette, effective dimensionality."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import MetricSpec
from .chunked import column_mean, row_chunks, scatter_matrix, unit_rows
from .neighbors import KnnGraph, knn_graph, knn_votes
from .probe import control, outer_folds, probe
from .uncertainty import accuracy_interval, fold_spread

_STORED_FIELDS = ("dim", "probe_acc", "probe_acc_std", "knn_acc", "silhouette", "eff_dim", "n90", "probe_c", "probe_train",
                  "knn_recall", "probe_acc_low", "probe_acc_high", "probe_control", "probe_control_std", "knn_acc_std",
                  "knn_acc_low", "knn_acc_high", "knn_control")  # fmt: skip


@dataclass(frozen=True)
class LayerScores:
    """Scores of one layer; None means not applicable (e.g. no labels, one class).

    Attributes:
        dim: feature dimension.
        probe_acc, probe_acc_std: linear-probe accuracy, mean and std over stratified folds.
        knn_acc: leave-one-out k-nearest-neighbour accuracy (cosine), read off the layer's graph.
        silhouette: silhouette coefficient with cosine distance, by class (exact).
        eff_dim: participation ratio of the covariance spectrum.
        n90: principal components needed for 90 % of the variance.
        confusion: the probe's out-of-fold confusion matrix (all classes sorted), or None.
        predicted: each image's out-of-fold probe prediction, as an index into the dataset's sorted
            classes (-1 for images of classes left out), or None.
        note: why label metrics are not applicable, or which classes they leave out ("" if none);
            reads after "Label metrics ".
        probe_c: the probe's inverse regularisation (the one chosen most often over the folds).
        probe_train: training images per probe fold (a stratified sample beyond probe.MAX_TRAIN).
        knn_recall: recall of the layer's neighbour graph (1.0: exact search).
        probe_acc_low, probe_acc_high: 95 % bootstrap interval of the probe's out-of-fold accuracy
            over the images (uncertainty.accuracy_interval).
        probe_control, probe_control_std: the label-permutation control's accuracy and its spread
            over folds (probe.control); selectivity is probe_acc - probe_control.
        knn_acc_std: kNN accuracy's standard deviation over the probe's folds (kNN is
            leave-one-out: the same images grouped as the probe tests them).
        knn_acc_low, knn_acc_high: its 95 % bootstrap interval over the images.
        knn_control: kNN accuracy with the labels permuted among the images.
        knn_predicted: each image's kNN vote (index into the sorted classes; -1 for images of
            classes left out), or None.
    """

    dim: int
    probe_acc: float | None
    probe_acc_std: float | None
    knn_acc: float | None
    silhouette: float | None
    eff_dim: float
    n90: int
    confusion: np.ndarray | None = field(default=None, repr=False)
    predicted: np.ndarray | None = field(default=None, repr=False)
    note: str = ""
    probe_c: float | None = None
    probe_train: int | None = None
    knn_recall: float | None = None
    probe_acc_low: float | None = None
    probe_acc_high: float | None = None
    probe_control: float | None = None
    probe_control_std: float | None = None
    knn_acc_std: float | None = None
    knn_acc_low: float | None = None
    knn_acc_high: float | None = None
    knn_control: float | None = None
    knn_predicted: np.ndarray | None = field(default=None, repr=False)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The scores as named arrays, as the store keeps them."""
        vals = [getattr(self, f) for f in _STORED_FIELDS]
        out = {
            "values": np.array([np.nan if v is None else v for v in vals], dtype=np.float64),
            "note": np.array(self.note),
        }
        if self.confusion is not None:
            out["confusion"] = self.confusion
        if self.predicted is not None:
            out["predicted"] = self.predicted
        if self.knn_predicted is not None:
            out["knn_predicted"] = self.knn_predicted
        return out

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> LayerScores:
        """The scores from the arrays to_arrays made."""
        v = dict(zip(_STORED_FIELDS, (None if np.isnan(x) else float(x) for x in a["values"])))
        for f in ("dim", "n90", "probe_train"):
            v[f] = None if v[f] is None else int(v[f])
        v["eff_dim"] = v["eff_dim"] or 0.0
        v["n90"] = v["n90"] or 0
        return cls(
            **v,
            confusion=a.get("confusion"),
            predicted=a.get("predicted"),  # type: ignore[arg-type]
            knn_predicted=a.get("knn_predicted"),
            note=str(a["note"]),
        )


def spectrum(x: np.ndarray) -> np.ndarray:
    """Eigenvalues of the covariance of `x` (descending), from a D x D covariance summed over row
    chunks (or the N x N Gram matrix when there are fewer rows than features): memory O(min(N, D)^2)."""
    n, d = x.shape
    mean = column_mean(x)
    if n < d:
        xc = np.asarray(x, dtype=np.float64) - mean
        lam = np.linalg.eigvalsh(xc @ xc.T)
    else:
        lam = np.linalg.eigvalsh(scatter_matrix(x, mean))
    return np.clip(lam[::-1], 0, None) / max(n - 1, 1)


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


@dataclass(frozen=True)
class LabelPlan:
    """Which images the label metrics use.

    Attributes:
        rows: sorted indices of the images scored.
        y: their class indices into `classes`.
        classes: every class of the dataset, sorted.
        folds: stratified folds.
        left_out: classes left out, each with too few images for the folds.
        note: why label metrics are not applicable ("" when they are).
    """

    rows: np.ndarray
    y: np.ndarray
    classes: np.ndarray
    folds: int
    left_out: tuple[str, ...]
    note: str

    def describe(self) -> str:
        """The note a score carries: why it is missing, or which classes it leaves out."""
        if self.note or not self.left_out:
            return self.note
        return (
            f"leave out {len(self.left_out)} class(es) with fewer than {self.folds} images: {', '.join(self.left_out)}"
        )


def label_plan(labels: np.ndarray | None, folds: int) -> LabelPlan:
    """Classes with at least `folds` images are scored and the rest left out (and named). When
    fewer than two classes have that many, the folds shrink to the smallest class (at least 2
    images) instead, as small datasets need."""
    empty = np.array([], dtype=np.int64)
    if labels is None:
        return LabelPlan(empty, empty, np.array([]), 0, (), "not applicable: the dataset has no labels")
    classes, y = np.unique(np.asarray(labels), return_inverse=True)
    counts = np.bincount(y, minlength=len(classes))
    if len(classes) < 2:
        return LabelPlan(empty, empty, classes, 0, (), "not applicable: needs at least 2 classes")
    keep = counts >= folds
    k = folds
    if keep.sum() < 2:
        keep = counts >= 2
        k = int(counts[keep].min()) if keep.sum() >= 2 else 0
    if keep.sum() < 2:
        return LabelPlan(
            empty, empty, classes, 0, (), "not applicable: every class needs at least 2 images for cross-validation"
        )
    rows = np.flatnonzero(keep[y])
    return LabelPlan(rows, y[rows], classes, k, tuple(str(c) for c in classes[~keep]), "")


def cosine_silhouette(x: np.ndarray, y: np.ndarray, rows: np.ndarray | None = None) -> float | None:
    """Mean silhouette coefficient with cosine distance, exact, in O(N * classes * D).

    The mean cosine distance from image i to a class c is 1 - u_i . s_c / n_c, where u are the
    unit-length rows and s_c the sum of c's unit rows (with i's own term removed for its own
    class), so no N x N matrix is needed. Zero rows are at distance 1 from everything, and an image
    alone in its class scores 0, as in scikit-learn's silhouette_score.

    Args:
        x: (N, D) features.
        y: (len(rows),) class indices of the rows scored.
        rows: the rows of `x` scored (default: all).

    Returns:
        The mean silhouette, or None with fewer than 2 classes.
    """
    rows = np.arange(x.shape[0]) if rows is None else rows
    n_classes = int(y.max()) + 1 if len(y) else 0
    if n_classes < 2 or len(np.unique(y)) < 2:
        return None
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    sums = np.zeros((n_classes, x.shape[1]))
    for part in row_chunks(len(rows)):
        np.add.at(sums, y[part], unit_rows(x[rows[part]], np.float64))
    total = 0.0
    for part in row_chunks(len(rows)):
        u = unit_rows(x[rows[part]], np.float64)
        yc, at = y[part], np.arange(len(u))
        sim = u @ sums.T  # (chunk, classes): summed cosine similarity to each class, self included
        own_n = counts[yc] - 1
        own = (own_n - (sim[at, yc] - (u * u).sum(1))) / np.maximum(own_n, 1)  # self term is 1, or 0 for a zero row
        with np.errstate(divide="ignore", invalid="ignore"):
            dist = 1.0 - sim / counts
        dist[:, counts == 0] = np.inf  # a class index no scored row has (classes left out) is no neighbour
        dist[at, yc] = np.inf
        other = dist.min(1)
        s = np.where(own_n > 0, (other - own) / np.maximum(np.maximum(own, other), 1e-300), 0.0)
        total += float(s.sum())
    return total / len(rows)


def score_layer(
    x: np.ndarray, labels: np.ndarray | None, spec: MetricSpec, graph: KnnGraph | None = None
) -> LayerScores:
    """All per-layer metrics for one feature matrix, in memory linear in N.

    Args:
        x: (N, D) features (array or memory map; not modified).
        labels: (N,) class labels, or None for an unlabeled dataset.
        spec: folds, k, regularisation (None: chosen by cross-validation in the first fold), seed.
        graph: the layer's kNN graph (built here when not given).

    Returns:
        LayerScores.
    """
    from sklearn.metrics import confusion_matrix

    eff, n90 = effective_dim(x)
    plan = label_plan(labels, spec.folds)
    if plan.note:
        return LayerScores(x.shape[1], None, None, None, None, eff, n90, note=plan.note)
    graph = graph if graph is not None and graph.k >= spec.knn_k else knn_graph(x, max(spec.knn_k, 1))
    all_y = np.unique(np.asarray(labels), return_inverse=True)[1]
    k_nn = min(spec.knn_k, x.shape[0] - 1)
    knn_vote = knn_votes(graph, all_y, k_nn, plan.rows)
    knn_right = knn_vote == plan.y
    shuffled = all_y.copy()
    shuffled[plan.rows] = np.random.default_rng(spec.random_state).permutation(plan.y)
    knn_control = float(np.mean(knn_votes(graph, shuffled, k_nn, plan.rows) == shuffled[plan.rows]))
    # C chosen in the first fold and kept (a third of the fits of choosing it in every fold; docs/metrics.md)
    result = probe(x, plan.y, plan.folds, rows=plan.rows, c=spec.probe_c, random_state=spec.random_state, reuse_c=True)
    ctrl = control(x, plan.y, plan.folds, rows=plan.rows, c=result.c, random_state=spec.random_state)
    probe_right = result.predictions == plan.y
    k = len(plan.classes)
    predicted = np.full(x.shape[0], -1, dtype=np.int16)
    predicted[plan.rows] = result.predictions  # indices into plan.classes: every class, sorted
    knn_predicted = np.full(x.shape[0], -1, dtype=np.int16)
    knn_predicted[plan.rows] = knn_vote
    probe_low, probe_high = accuracy_interval(probe_right, random_state=spec.random_state)
    knn_low, knn_high = accuracy_interval(knn_right, random_state=spec.random_state)
    return LayerScores(
        dim=x.shape[1],
        probe_acc=result.accuracy,
        probe_acc_std=result.accuracy_std,
        knn_acc=float(np.mean(knn_right)),
        silhouette=cosine_silhouette(x, plan.y, plan.rows),
        eff_dim=eff,
        n90=n90,
        confusion=confusion_matrix(plan.y, result.predictions, labels=np.arange(k)),
        predicted=predicted,
        note=plan.describe(),
        probe_c=result.c,
        probe_train=result.n_train,
        knn_recall=graph.recall,
        probe_acc_low=probe_low,
        probe_acc_high=probe_high,
        probe_control=ctrl.accuracy,
        probe_control_std=ctrl.accuracy_std,
        knn_acc_std=fold_spread(knn_right, outer_folds(plan.y, plan.folds, spec.random_state)),
        knn_acc_low=knn_low,
        knn_acc_high=knn_high,
        knn_control=knn_control,
        knn_predicted=knn_predicted,
    )
