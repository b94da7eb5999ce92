"""Training-free transferability scorers beside LogME, and how far each agrees with the probe.

- `regularised_h_score`: the H-score (Bao et al. 2019) with a Ledoit-Wolf shrunk covariance
  (Ibrahim, Ponomareva & Sahai, "Newer is not always better", 2022): tr(Σ_α⁻¹ (1 - α) cov(E[f|y])).
  The stable form of the H-score; among the best-ranked scorers in their benchmark.
- `transrate`: TransRate (Huang et al., ICML 2022): the coding rate of the features minus the mean
  coding rate of each class's, R(f, ε) - mean_y R(f|y, ε) with ε = 1e-4.

Both are computed as tllib's (thuml/Transfer-Learning-Library, tllib/ranking) reference code
computes them, and tested against its numbers, but from sums over row chunks: one D x D scatter
(H-score), one per class (TransRate, as a Gram matrix when a class has fewer images than D), so
cost grows as N D² + classes · min(n_c, D)³ and the features are never copied whole.

`agreement`: weighted Kendall τ (scipy.stats.weightedtau: hyperbolic weights, the top of either
ranking counts most) between a scorer's ranking of the leaderboard's rows and the measured probe's,
with a percentile bootstrap over the rows. The size prior (the parameters up to the layer, larger
first) is scored the same way: a scorer worth reading beats it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .chunked import row_chunks

EPS = 1e-4  # TransRate's distortion (the reference's default)
BOOT = 1000  # bootstrap resamples of the rows for τ's interval
PINV_RCOND = 1e-15  # the reference's pinv cut-off, relative to the largest eigenvalue


def _contiguous(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y renumbered 0..C-1, counts): the classes that have images."""
    classes, y = np.unique(np.asarray(y), return_inverse=True)
    return y, np.bincount(y, minlength=len(classes))


def _class_sums(x: np.ndarray, y: np.ndarray, classes: int) -> np.ndarray:
    """(C, D) sums of each class's rows, in float64, over row chunks."""
    sums = np.zeros((classes, x.shape[1]))
    for s in row_chunks(x.shape[0]):
        np.add.at(sums, y[s], np.asarray(x[s], dtype=np.float64))
    return sums


@dataclass(frozen=True)
class ClassScatter:
    """What both scorers need, from one pass over each class's rows: the features centred over
    all images (f), the scatter fᵀf, each class's mean of f, Σ‖f_n‖⁴, and each class's coding
    rate log det(I + f_cᵀf_c / (n_c ε))."""

    scatter: np.ndarray  # (D, D)
    means: np.ndarray  # (C, D)
    counts: np.ndarray  # (C,)
    fourth: float
    class_log_dets: np.ndarray  # (C,)


def class_scatter(x: np.ndarray, y: np.ndarray, eps: float = EPS) -> ClassScatter:
    """ClassScatter of features `x` (N, D) and labels `y` (N,), a class's rows at a time: O(N D²)
    time, O(D²) memory beyond one class's rows."""
    y, counts = _contiguous(y)
    n, d = x.shape
    mean = _class_sums(x, np.zeros(n, dtype=np.int64), 1)[0] / n
    order = np.argsort(y, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(counts)])
    scatter = np.zeros((d, d))
    means = np.zeros((len(counts), d))
    log_dets = np.zeros(len(counts))
    fourth = 0.0
    for c in range(len(counts)):
        f = np.asarray(x[np.sort(order[bounds[c] : bounds[c + 1]])], dtype=np.float64) - mean
        own = f.T @ f
        scatter += own
        means[c] = f.mean(0)
        fourth += float(np.sum(np.sum(f**2, axis=1) ** 2))
        scale = 1 / (len(f) * eps)
        log_dets[c] = _log_det_plus_identity(f @ f.T if len(f) < d else own, scale)
    return ClassScatter(scatter, means, counts, fourth, log_dets)


def _log_det_plus_identity(m: np.ndarray, scale: float) -> float:
    """log det(I + scale m) of a positive semi-definite m (Cholesky). By Sylvester's identity
    log det(I + fᵀf) = log det(I + f fᵀ): a class with fewer images than D uses its Gram matrix."""
    m = m * scale
    m[np.diag_indices(len(m))] += 1.0
    return float(2 * np.sum(np.log(np.diag(np.linalg.cholesky(m)))))


def regularised_h_score(sums: ClassScatter) -> float:
    """The regularised H-score, as the reference: f = x centred; Σ_α = Ledoit-Wolf's shrunk
    covariance of f (sklearn's shrinkage α, from fᵀf and Σ‖f_n‖⁴, all it needs); g = each image's
    class mean of f; score = tr(pinv(Σ_α) (1 - α) cov(g)), cov with N - 1, which is
    Σ_c n_c m_cᵀ pinv(Σ_α) m_c / (N - 1), read off Σ_α's eigenvectors."""
    n, d = int(sums.counts.sum()), sums.scatter.shape[0]
    emp = sums.scatter / n
    mu = np.trace(emp) / d
    delta_ = np.sum(emp**2)  # ‖fᵀf‖²_F / n², sklearn's delta_ after its division
    delta = (delta_ - 2.0 * mu * np.trace(emp) + d * mu**2) / d
    beta = min((sums.fourth / n - delta_) / (d * n), delta)
    alpha = 0.0 if beta == 0 else beta / delta
    shrunk = (1 - alpha) * emp
    shrunk[np.diag_indices(d)] += alpha * mu
    eig, vec = np.linalg.eigh(shrunk)
    keep = eig > PINV_RCOND * eig.max()
    projected = (sums.means @ vec[:, keep]) ** 2 / eig[keep]  # (C, k): (m_cᵀ v_k)² / λ_k
    return float((1 - alpha) * np.sum(sums.counts @ projected) / (n - 1))


def transrate(sums: ClassScatter, eps: float = EPS) -> float:
    """TransRate: R(f) - Σ_c R(f_c) / C with R(f) = ½ log det(I + fᵀf / (n ε)), f = x centred
    once over all images (as the reference)."""
    n = int(sums.counts.sum())
    whole = 0.5 * _log_det_plus_identity(sums.scatter, 1 / (n * eps))
    return float(whole - 0.5 * sums.class_log_dets.mean())


def scorer_values(x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Every scorer of this module for one layer, from one pass over its rows."""
    sums = class_scatter(x, y)
    return {"h_score": regularised_h_score(sums), "transrate": transrate(sums)}


@dataclass(frozen=True)
class Agreement:
    """How one scorer's ranking of the rows agrees with the probe's.

    Attributes:
        tau: weighted Kendall τ (1: the same order, 0: unrelated, -1: reversed).
        low, high: its 95 % percentile bootstrap interval over the rows.
        rows: the rows both rank (NaN scores left out).
    """

    tau: float
    low: float
    high: float
    rows: int


def _weighted_tau() -> Callable[..., Any]:
    """scipy.stats.weightedtau without the axis and NaN-policy wrapper scipy puts around it (which
    reads the function's signature on every call: three quarters of a call on a leaderboard's
    rows, 0.4 s of the 4,000 calls of a run's agreement table, after every other stage). agreement
    gives it 1-D float rows without NaN, all the wrapper handles, so the numbers are the same
    (tests/analysis/test_scorers.py); the public function where scipy has no __wrapped__."""
    from scipy.stats import weightedtau

    return getattr(weightedtau, "__wrapped__", weightedtau)


def agreement(score: np.ndarray, truth: np.ndarray, random_state: int = 0, boot: int = BOOT) -> Agreement:
    """Weighted Kendall τ of `score` against `truth` (higher is better in both), with a bootstrap
    interval: resamples of the rows with replacement (a resample that ranks fewer than three
    distinct rows is skipped). NaN in either leaves a row out."""
    weightedtau = _weighted_tau()
    score, truth = np.asarray(score, dtype=float), np.asarray(truth, dtype=float)
    ok = ~np.isnan(score) & ~np.isnan(truth)
    score, truth = score[ok], truth[ok]
    n = len(score)
    if n < 3:
        return Agreement(float("nan"), float("nan"), float("nan"), n)
    tau = float(weightedtau(score, truth).statistic)
    rng = np.random.default_rng([random_state, 9])
    draws = []
    for _ in range(boot):
        rows = rng.integers(0, n, n)
        if len(np.unique(rows)) < 3:
            continue
        t = weightedtau(score[rows], truth[rows]).statistic
        if np.isfinite(t):
            draws.append(t)
    if not draws:
        return Agreement(tau, float("nan"), float("nan"), n)
    low, high = np.quantile(draws, [0.025, 0.975])
    return Agreement(tau, float(low), float(high), n)
