"""The classifier head of an exported cut: the probe's standardisation and logistic regression,
C chosen as the probe chooses it (cross-validation on the training images), folded into one
linear layer on the raw pooled features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .probe import C_GRID, _choose_c, _moments, _principal_axes, fit_logistic


@dataclass(frozen=True)
class Head:
    """logits = features @ weight + bias.

    Attributes:
        weight: (D, K) float32, the standardisation and principal-axes rotation folded in.
        bias: (K,) float32.
        classes: the K class names, in logit order.
        c: the inverse regularisation chosen on the training images.
        n_train: training images.
    """

    weight: np.ndarray
    bias: np.ndarray
    classes: tuple[str, ...]
    c: float
    n_train: int

    def logits(self, x: np.ndarray) -> np.ndarray:
        """(N, K) float32 logits of (N, D) features."""
        return np.asarray(x, dtype=np.float32) @ self.weight + self.bias


def train_head(
    x: np.ndarray,
    labels: list[str] | tuple[str, ...],
    *,
    c: float | None = None,
    grid: tuple[float, ...] = C_GRID,
    random_state: int = 0,
) -> Head:
    """Fit the probe's model on every training image.

    As probe.probe fits one fold: standardise with the training statistics, turn to the principal
    axes, fit multinomial logistic regression with L-BFGS; C is chosen by the probe's inner
    cross-validation on these images alone (c=None), or given.

    Args:
        x: (N, D) pooled features of the training images.
        labels: their class names.
        c: a fixed C, or None to choose it.
        grid: the candidate values of C.
        random_state: seed of the inner splits.

    Returns:
        The Head.

    Raises:
        ValueError: fewer than two classes.
    """
    classes, y = np.unique(np.asarray(labels), return_inverse=True)
    if len(classes) < 2:
        raise ValueError(f"a classifier needs at least 2 classes; the training images have {len(classes)}")
    xtr = np.asarray(x, dtype=np.float32)
    mean, std = _moments(xtr)
    z = (xtr - mean) / std
    eig, vec = _principal_axes(z)
    z = z @ vec
    init = None
    if c is None:
        c, init = _choose_c(z, y, eig, len(classes), grid, random_state)
    w, b = fit_logistic(z, y, len(classes), c, init=init, eigvals=eig)
    rotated = (vec @ w).astype(np.float64)  # logits = ((x - mean) / std) @ vec @ w + b
    weight = rotated / std[:, None]
    bias = b - (mean / std) @ rotated
    return Head(weight.astype(np.float32), bias.astype(np.float32), tuple(str(k) for k in classes), float(c), len(y))
