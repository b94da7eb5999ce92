"""How sure a layer's accuracy is: a bootstrap over images of out-of-fold correctness, the spread
over folds, and whether the step between two layers is bigger than that noise.

Resampling N images with replacement and averaging a 0/1 correctness vector gives a count of
correct images that is exactly Binomial(N, p) (p the observed accuracy); for two layers scored on
the same images, the counts of (right, wrong) and (wrong, right) images are jointly multinomial.
So the bootstrap draws those counts directly, in O(draws) whatever N, with the same distribution
as resampling the images themselves (tests/analysis/test_uncertainty.py checks it against the
index-resampling bootstrap).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DRAWS = 4000  # bootstrap resamples: the 2.5 % and 97.5 % quantiles settle to about ±0.002 at N = 1,000
LEVEL = 0.95  # two-sided interval


def _quantiles(draws: np.ndarray) -> tuple[float, float]:
    lo, hi = np.quantile(draws, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return float(lo), float(hi)


def accuracy_interval(correct: np.ndarray, *, draws: int = DRAWS, random_state: int = 0) -> tuple[float, float]:
    """The 95 % percentile-bootstrap interval of the share of `correct` images, resampling images.

    Args:
        correct: (N,) bool, one entry per image scored.
        draws: bootstrap resamples.
        random_state: seed.

    Returns:
        (low, high); (nan, nan) for no images.
    """
    n = len(correct)
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(random_state)
    return _quantiles(rng.binomial(n, float(np.mean(correct)), size=draws) / n)


def mean_interval(values: np.ndarray, *, draws: int = DRAWS, random_state: int = 0) -> tuple[float, float]:
    """The 95 % percentile-bootstrap interval of the mean of `values` (one per query, episode...),
    resampling them; (nan, nan) for none. Memory is O(draws + n), one resample at a time in blocks."""
    v = np.asarray(values, dtype=np.float64)
    n = len(v)
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(random_state)
    means = np.empty(draws)
    block = max(1, 4_000_000 // n)
    for a in range(0, draws, block):
        m = min(block, draws - a)
        means[a : a + m] = v[rng.integers(0, n, (m, n))].mean(1)
    return _quantiles(means)


@dataclass(frozen=True)
class Step:
    """The paired difference in accuracy between two layers scored on the same images.

    Attributes:
        diff: accuracy of the second layer minus the first.
        low, high: its 95 % bootstrap interval (images resampled, both layers together).
    """

    diff: float
    low: float
    high: float

    @property
    def in_noise(self) -> bool:
        """The interval holds 0: the images alone could make either layer the better one."""
        return self.low <= 0 <= self.high


def step(correct_a: np.ndarray, correct_b: np.ndarray, *, draws: int = DRAWS, random_state: int = 0) -> Step:
    """Accuracy of layer b minus layer a, with its paired bootstrap interval.

    Args:
        correct_a, correct_b: (N,) bool, the same images in the same order.
        draws: bootstrap resamples.
        random_state: seed.
    """
    n = len(correct_a)
    if n == 0:
        return Step(float("nan"), float("nan"), float("nan"))
    gain = int(np.sum(~correct_a & correct_b))  # right only in b
    loss = int(np.sum(correct_a & ~correct_b))  # right only in a
    rng = np.random.default_rng(random_state)
    counts = rng.multinomial(n, [gain / n, loss / n, 1 - (gain + loss) / n], size=draws)
    low, high = _quantiles((counts[:, 0] - counts[:, 1]) / n)
    return Step((gain - loss) / n, low, high)


def fold_spread(correct: np.ndarray, fold: np.ndarray) -> float:
    """Standard deviation over folds of the accuracy within each fold.

    Args:
        correct: (N,) bool.
        fold: (N,) fold index of each image.
    """
    accs = [float(np.mean(correct[fold == f])) for f in np.unique(fold)]
    return float(np.std(accs)) if accs else float("nan")
