"""How many dimensions a layer really uses: the intrinsic dimension by TwoNN (Facco et al. 2017),
with a bootstrap interval, and RankMe (Garrido et al. 2023), the effective rank of the features.

TwoNN reads, for each image, the ratio mu = r2 / r1 of the Euclidean distances to its second and
first nearest neighbours; for data on a d-dimensional manifold mu follows a Pareto law with
exponent d, so -log(1 - F(mu)) against log(mu) is a line through the origin of slope d. As in
scikit-dimension's TwoNN: the largest DISCARD of the ratios are dropped, and the slope is the
least-squares fit through the origin. It is computed on a stratified-free random sample of at
most SAMPLE images (exact neighbours, faiss), so its cost does not grow with N; intrinsic
dimension estimates depend on the sample's density, so compare layers at one sample size.
The interval resamples the images' ratios (BOOT draws).

RankMe: with s the singular values of the (S x D) matrix of the same sample's features,
p = s / sum(s), RankMe = exp(-sum p log p): between 1 and min(S, D), label-free."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .chunked import scatter_matrix

SAMPLE = 2_000  # images the neighbour ratios are read on, at most
DISCARD = 0.1  # the largest ratios left out of the fit (scikit-dimension's default, the paper's heuristic)
BOOT = 200  # bootstrap resamples of the ratios


@dataclass(frozen=True)
class IntrinsicDimension:
    """A layer's intrinsic dimension (TwoNN, with its 95 % interval) and RankMe.

    Attributes:
        twonn, twonn_low, twonn_high: the estimate and its bootstrap interval (nan: too few images).
        rankme: the effective rank of the features.
        sample: images the ratios were read on.
    """

    twonn: float
    twonn_low: float
    twonn_high: float
    rankme: float
    sample: int

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {k: np.array(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> IntrinsicDimension:
        return cls(*(float(a[k]) for k in ("twonn", "twonn_low", "twonn_high", "rankme")), int(a["sample"]))


def twonn_slope(mu: np.ndarray, discard: float = DISCARD) -> float:
    """The TwoNN estimate from neighbour-distance ratios (finite, >= 1): the slope through the
    origin of -log(1 - F) against log(mu), the largest `discard` of the ratios left out."""
    n = len(mu)
    keep = int(n * (1 - discard))
    if keep < 2:
        return float("nan")
    x = np.log(np.sort(mu)[:keep])
    y = -np.log(1 - np.arange(1, keep + 1) / n)
    return float(x @ y / (x @ x)) if x @ x > 0 else float("nan")


def neighbour_ratios(x: np.ndarray) -> np.ndarray:
    """r2 / r1 of each row: Euclidean distances to its second and first nearest other rows (exact,
    faiss); rows with a duplicate (r1 = 0) are left out."""
    import faiss

    x = np.ascontiguousarray(x, dtype=np.float32)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    d2, idx = index.search(x, 3)
    own = idx == np.arange(len(x))[:, None]
    d2 = np.where(own, np.inf, d2)  # itself, wherever ties put it
    d2 = np.sort(d2, axis=1)[:, :2]
    r = np.sqrt(np.clip(d2, 0, None))
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = r[:, 1] / r[:, 0]
    return mu[np.isfinite(mu)]


def rankme(x: np.ndarray, eps: float = 1e-7) -> float:
    """RankMe of the (N, D) features: exp of the entropy of the normalised singular values."""
    eig = np.linalg.eigvalsh(scatter_matrix(x))
    s = np.sqrt(np.clip(eig, 0, None))
    if s.sum() <= 0:
        return 1.0
    p = s / s.sum() + eps
    return float(np.exp(-np.sum(p * np.log(p))))


def intrinsic_dimension(x: np.ndarray, *, sample: int = SAMPLE, random_state: int = 0) -> IntrinsicDimension:
    """TwoNN on a random sample of at most `sample` rows, with a bootstrap interval, and RankMe on
    the same rows (its D x D Gram over all N rows cost 8 s of a 1,280-wide layer at 100,000 images).

    Args:
        x: (N, D) features (array or memory map; not modified).
        sample: rows the neighbour ratios are read on, at most.
        random_state: seed of the sample and the bootstrap.
    """
    n = x.shape[0]
    rng = np.random.default_rng([random_state, 5])
    rows = np.sort(rng.choice(n, min(n, sample), replace=False))
    xs = np.asarray(x[rows], dtype=np.float32)
    mu = neighbour_ratios(xs)
    estimate = twonn_slope(mu)
    if len(mu) >= 10:
        draws = [twonn_slope(mu[rng.integers(0, len(mu), len(mu))]) for _ in range(BOOT)]
        low, high = (float(v) for v in np.nanquantile(draws, [0.025, 0.975]))
    else:
        low = high = float("nan")
    return IntrinsicDimension(estimate, low, high, rankme(xs), len(rows))
