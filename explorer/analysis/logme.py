"""LogME: the log marginal evidence of a Bayesian linear model from a layer's features to one-hot
labels, a training-free estimate of how well the layer transfers (You et al., "LogME: Practical
Assessment of Pre-trained Models for Transfer Learning", ICML 2021), from D x D sums."""

from __future__ import annotations

import numpy as np

from .chunked import row_chunks, scatter_matrix

MAX_ITER = 11  # the reference's fixed-point loop (thuml/LogME, LogME._fit_fixed_point)
RANK_TOL = 1e-10  # singular values at or below this are dropped (the reference's truncated_svd)


def _gram_spectrum(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sigma, V): the squared singular values of x, largest first, with the right singular vectors
    as columns (N > D, from the D x D scatter) or the left ones (N <= D, from the N x N Gram matrix)."""
    n, d = x.shape
    if n > d:
        eig, vec = np.linalg.eigh(scatter_matrix(x))
        return eig[::-1], vec[:, ::-1]
    gram = np.zeros((n, n))
    for part in row_chunks(d):  # column chunks
        c = np.asarray(x[:, part], dtype=np.float64)
        gram += c @ c.T
    eig, vec = np.linalg.eigh(gram)
    return eig[::-1], vec[:, ::-1]


def logme(x: np.ndarray, y: np.ndarray) -> float:
    """LogME of features `x` for class labels `y`, the mean over classes of each one-hot target's
    log evidence per image, maximised over the prior and noise precisions (alpha, beta) by the
    fixed-point iteration of You et al. (arXiv 2110.10545, the reference's default `_fit`).

    Everything comes from the D x D scatter X^T X (N > D; its eigenvectors are the right singular
    vectors) or the N x N Gram matrix (N <= D), and X^T Y: O(N D^2 + D^3) time, O(D^2 + D K)
    memory, the rows read in chunks. As in the reference, the features are used as they are (not
    centred), singular values <= 1e-10 are dropped when N > D, and all min(N, D) are kept otherwise.

    Args:
        x: (N, D) features (array or memory map; not modified).
        y: (N,) class indices 0..K-1.

    Returns:
        The LogME score (higher: the labels are better explained by a linear model of the layer).
    """
    y = np.asarray(y)
    n, d = x.shape
    n_classes = int(y.max()) + 1
    sigma, vec = _gram_spectrum(x)
    if n > d:
        s = np.sqrt(np.clip(sigma, 0, None))
        keep = s > RANK_TOL
        sigma, s, vec = sigma[keep], s[keep], vec[:, keep]
        xty = np.zeros((d, n_classes))  # X^T Y, one-hot Y, summed over row chunks
        for part in row_chunks(n):
            np.add.at(xty.T, y[part], np.asarray(x[part], dtype=np.float64))
        proj = (vec.T @ xty) / s[:, None]  # U^T Y with U = X V / s: (k, K)
    else:
        sigma = np.clip(sigma, 0, None)
        onehot = np.zeros((n, n_classes))
        onehot[np.arange(n), y] = 1.0
        proj = vec.T @ onehot  # U^T Y: U are the Gram matrix's eigenvectors
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)  # ||y_c||^2 of a one-hot column
    sig = sigma[:, None]
    evidences = []
    for c in range(n_classes):
        x2 = proj[:, c : c + 1] ** 2
        res_x2 = counts[c] - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(MAX_ITER):
            t = alpha / beta
            gamma = (sig / (sig + t)).sum()
            m2 = (sig * x2 / ((t + sig) ** 2)).sum()
            res2 = (x2 / ((1 + sig / t) ** 2)).sum() + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        evidence = (
            d / 2.0 * np.log(alpha)
            + n / 2.0 * np.log(beta)
            - 0.5 * np.sum(np.log(alpha + beta * sig))
            - beta / 2.0 * res2
            - alpha / 2.0 * m2
            - n / 2.0 * np.log(2 * np.pi)
        )
        evidences.append(evidence / n)
    return float(np.mean(evidences))
