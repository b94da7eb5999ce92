"""The compression curve of a layer: the linear probe's accuracy when the layer is squeezed to its
top k principal components, k = 1, 2, 4, ... up to its width, beside a random projection to k
dimensions as a control; and the smallest k that keeps 95 % of the layer's accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .chunked import row_chunks
from .probe import _moments, _predict, _principal_axes, _stratified_sample, fit_logistic, outer_folds

CURVE_ROWS = 2_000  # images the curve is scored on (a stratified sample beyond): its cost does not grow with N
KEEP = 0.95  # the share of the layer's accuracy that "keeps" it


def widths(dim: int) -> list[int]:
    """k = 1, 2, 4, ... below `dim`, then `dim` itself."""
    ks = [1 << i for i in range(int(np.log2(max(dim, 1))) + 1) if (1 << i) < dim]
    return ks + [dim]


@dataclass(frozen=True)
class CompressionCurve:
    """Probe accuracy against the number of dimensions kept.

    Attributes:
        ks: dimensions kept, increasing; the last is the layer's width.
        pca_acc: out-of-fold accuracy on the top-k principal components of the standardised
            features (the components found on each fold's training images). At the full width it
            is the layer's probe on the same images, folds and C.
        random_acc: the same probe on a seeded random orthonormal projection of the standardised
            features to k dimensions (the control: what k dimensions keep without choosing them);
            at the full width a rotation, which leaves the penalised probe unchanged, so it equals
            pca_acc there.
        n_images: images scored (a stratified sample of at most CURVE_ROWS).
        c: the probe's inverse regularisation, the layer's own.
    """

    ks: np.ndarray
    pca_acc: np.ndarray
    random_acc: np.ndarray
    n_images: int
    c: float

    def smallest_k(self, keep: float = KEEP, curve: str = "pca") -> int | None:
        """The smallest k whose accuracy is at least `keep` times the full width's (None: none is)."""
        acc = self.pca_acc if curve == "pca" else self.random_acc
        full = self.pca_acc[-1]
        hit = np.flatnonzero(acc >= keep * full)
        return int(self.ks[hit[0]]) if len(hit) else None

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "ks": self.ks,
            "pca_acc": self.pca_acc,
            "random_acc": self.random_acc,
            "n_images": np.array(self.n_images),
            "c": np.array(self.c),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> CompressionCurve:
        return cls(a["ks"], a["pca_acc"], a["random_acc"], int(a["n_images"]), float(a["c"]))


def compression_curve(
    x: np.ndarray, y: np.ndarray, folds: int, *, rows: np.ndarray, c: float, random_state: int = 0
) -> CompressionCurve:
    """The compression curve of one layer.

    Each outer fold standardises with its training images' statistics and finds their principal
    axes, as the probe does (probe.probe); the curve keeps the k axes of largest variance and fits
    the probe there, at the layer's C. Memory stays O(n D) for n <= CURVE_ROWS sampled images.

    Args:
        x: (N, D) features (array or memory map; not modified).
        y: (len(rows),) class indices of the rows scored.
        folds: outer stratified folds (the probe's).
        rows: sorted rows of `x` scored.
        c: the layer probe's inverse regularisation.
        random_state: seed of the sample, the folds and the random projections.

    Returns:
        A CompressionCurve.
    """
    from threadpoolctl import threadpool_limits

    y = np.asarray(y)
    keep = _stratified_sample(y, CURVE_ROWS, random_state)
    y, rows = y[keep], np.asarray(rows)[keep]
    n_classes = int(y.max()) + 1
    ks = widths(x.shape[1])
    fold_of = outer_folds(y, folds, random_state)
    rng = np.random.default_rng(random_state)
    d = x.shape[1]
    # orthonormal random bases (a Gaussian's QR): the control keeps k directions chosen without the data
    basis = {k: np.linalg.qr(rng.standard_normal((d, k)))[0].astype(np.float32) for k in ks if k < d}
    pca_pred = np.empty((len(ks), len(y)), dtype=np.int64)
    rand_pred = np.empty((len(ks), len(y)), dtype=np.int64)
    threads = 1 if len(y) * d < 4_000_000 else None
    with threadpool_limits(limits=threads, user_api="blas"):
        for fold in range(folds):
            train, test = np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)
            xtr = np.asarray(x[rows[train]], dtype=np.float32)
            mean, std = _moments(xtr)
            xtr = (xtr - mean) / std
            xte = np.concatenate(
                [(np.asarray(x[rows[test[s]]], dtype=np.float32) - mean) / std for s in row_chunks(len(test))]
            )
            eig, vec = _principal_axes(xtr)  # ascending: the top k axes are the last k columns
            ztr, zte = xtr @ vec, xte @ vec
            wb = None
            for j, k in enumerate(ks):
                top = slice(max(ztr.shape[1] - k, 0), None)
                if wb is not None:  # warm start: the last fit's weights, zeros for the components added
                    wb = (
                        np.vstack([np.zeros((ztr[:, top].shape[1] - len(wb[0]), n_classes), np.float32), wb[0]]),
                        wb[1],
                    )
                wb = fit_logistic(ztr[:, top], y[train], n_classes, c, init=wb, eigvals=eig[top])
                pca_pred[j, test] = _predict(zte[:, top], wb)
                if k == d:  # all d directions, rotated: the penalised probe is the same (rotation-invariant)
                    rand_pred[j, test] = pca_pred[j, test]
                    continue
                # the projection's principal axes, for the solver's preconditioning, from the k x k
                # covariance Q^T C Q with C = V diag(eig) V^T (the training rows lie in V's span)
                m = vec.T @ basis[k]
                r_eig, r_vec = np.linalg.eigh((m.T * eig) @ m)
                proj = basis[k] @ r_vec.astype(np.float32)
                rb = fit_logistic(
                    xtr @ proj, y[train], n_classes, c, eigvals=np.clip(r_eig, 0, None).astype(np.float32)
                )
                rand_pred[j, test] = _predict(xte @ proj, rb)
    return CompressionCurve(
        np.array(ks),
        _fold_mean(pca_pred, y, fold_of, folds),
        _fold_mean(rand_pred, y, fold_of, folds),
        len(y),
        float(c),
    )


def _fold_mean(pred: np.ndarray, y: np.ndarray, fold_of: np.ndarray, folds: int) -> np.ndarray:
    """Each row's accuracy, the mean over the folds of each fold's accuracy (as probe.probe averages)."""
    right = pred == y
    return np.array([np.mean([right[j, fold_of == f].mean() for f in range(folds)]) for j in range(len(pred))])
