"""Layer-to-layer similarity without N x N matrices: linear CKA (plain and debiased) from D x D sums.

Both estimators need only the cross-products of the centred features and their row norms, which
are accumulated over row chunks, so the memory is O(sum of D^2), whatever the number of images, and
each layer is read (memory-mapped) chunk by chunk rather than held twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from .chunked import column_mean

JOINT_ROW_CHUNK = 8192  # rows of every layer at once per step: ~130 MB of float64 at 2,000 summed dimensions
MAX_JOINT_BYTES = 1 << 30  # one joint (sum D)^2 cross-product up to 1 GiB, else one layer at a time
BOOT_IMAGES = 1000  # images the CKA bootstrap resamples (a random sample beyond: m-out-of-n, rescaled)
BOOT_DRAWS = 200  # CKA bootstrap resamples (about 0.3 s for 8 layers)
BIAS_GAP = 0.05  # plain CKA this much above the debiased estimate for some pair: say it is biased at this N


@dataclass(frozen=True)
class Similarity:
    """Layer-by-layer similarity matrices (symmetric, in the order of `names`).

    Attributes:
        names: the layer keys.
        cka: linear CKA (Kornblith et al. 2019), the biased HSIC estimator.
        cka_debiased: linear CKA from the unbiased HSIC estimator (Song et al. 2012; Nguyen et al.
            2021): it does not read high when images are fewer than dimensions.
        cka_low, cka_high: 95 % bootstrap interval of `cka` over the images (cka_interval), or None.
        boot_images: the images that bootstrap resampled (all, or a random BOOT_IMAGES of them).
    """

    names: list[str]
    cka: np.ndarray
    cka_debiased: np.ndarray
    cka_low: np.ndarray | None = None
    cka_high: np.ndarray | None = None
    boot_images: int = 0


def _centred_chunk(
    features: Mapping[str, np.ndarray], means: Mapping[str, np.ndarray], names: list[str], a: int
) -> list[np.ndarray]:
    return [np.asarray(features[k][a : a + JOINT_ROW_CHUNK], dtype=np.float64) - means[k] for k in names]


def _cross_sums(features: Mapping[str, np.ndarray], names: list[str], n: int) -> tuple[dict, np.ndarray, np.ndarray]:
    """{(i, j): ||Xi^T Xj||_F^2} over centred layers, and sums of squared row norms (S) and their products (R)."""
    dims = [features[k].shape[1] for k in names]
    means = {k: column_mean(x[:n]) for k, x in features.items()}
    L = len(names)
    r_sum = np.zeros(L)
    r_prod = np.zeros((L, L))
    offsets = np.concatenate([[0], np.cumsum(dims)])
    joint = offsets[-1] ** 2 * 8 <= MAX_JOINT_BYTES
    if joint:  # one (sum D) x (sum D) cross-product, one BLAS call per chunk
        g = np.zeros((offsets[-1], offsets[-1]))
        for a in range(0, n, JOINT_ROW_CHUNK):
            parts = _centred_chunk(features, means, names, a)
            z = np.concatenate(parts, axis=1)
            g += z.T @ z
            rows = np.stack([np.einsum("ij,ij->i", p, p) for p in parts], axis=1)
            r_sum += rows.sum(0)
            r_prod += rows.T @ rows
        blocks = {
            (i, j): g[offsets[i] : offsets[i + 1], offsets[j] : offsets[j + 1]] for i in range(L) for j in range(i, L)
        }
        return {ij: float(np.sum(b * b)) for ij, b in blocks.items()}, r_sum, r_prod
    # very wide layers: one pass per layer, holding only Di x (sum of the later D)
    hsic: dict[tuple[int, int], float] = {}
    for i in range(L):
        acc = [np.zeros((dims[i], dims[j])) for j in range(i, L)]
        for a in range(0, n, JOINT_ROW_CHUNK):
            parts = _centred_chunk(features, means, names[i:], a)
            for j, p in enumerate(parts):
                acc[j] += parts[0].T @ p
            if i == 0:
                rows = np.stack([np.einsum("ij,ij->i", p, p) for p in parts], axis=1)
                r_sum += rows.sum(0)
                r_prod += rows.T @ rows
        hsic |= {(i, i + j): float(np.sum(b * b)) for j, b in enumerate(acc)}
    return hsic, r_sum, r_prod


def _unbiased(xty: float, r_xy: float, s_x: float, s_y: float, n: int) -> float:
    """n(n-3) times the unbiased HSIC of two linear kernels of centred features (Song et al. 2012, eq. 5).

    With K = X X^T and its diagonal removed, tr(K~L~) = ||X^T Y||^2 - sum_i |x_i|^2 |y_i|^2,
    1^T K~ 1 = -sum_i |x_i|^2 (centred X) and 1^T K~ L~ 1 = sum_i |x_i|^2 |y_i|^2; the same algebra
    as Kornblith et al.'s feature-space implementation.
    """
    return xty - n / (n - 2.0) * r_xy + s_x * s_y / ((n - 1.0) * (n - 2.0))


def layer_similarity(features: Mapping[str, np.ndarray]) -> Similarity:
    """Plain and debiased linear CKA between every pair of layers.

    CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) on centred features (Kornblith et
    al. 2019, "Similarity of Neural Network Representations Revisited", eq. 5 in its feature-space
    form), from D x D cross-products accumulated over row chunks. The debiased variant replaces each
    HSIC by its unbiased estimator; it needs at least 4 images and can be slightly negative.

    Args:
        features: {layer key: (N, D) array}, every layer over the same N images (arrays or
            memory maps; not modified).

    Returns:
        A Similarity.
    """
    names = list(features)
    if not names:
        return Similarity([], np.zeros((0, 0)), np.zeros((0, 0)))
    n = features[names[0]].shape[0]
    for k in names:
        if features[k].shape[0] != n:
            raise ValueError(f"CKA needs the same images in every layer: {k} has {features[k].shape[0]} rows, not {n}")
    hsic, r_sum, r_prod = _cross_sums(features, names, n)
    L = len(names)
    cka, deb = np.eye(L), np.full((L, L), np.nan)
    self_b = [hsic[(i, i)] for i in range(L)]
    self_u = [_unbiased(hsic[(i, i)], r_prod[i, i], r_sum[i], r_sum[i], n) if n > 3 else np.nan for i in range(L)]
    for i in range(L):
        for j in range(i, L):
            den = np.sqrt(self_b[i] * self_b[j])
            cka[i, j] = cka[j, i] = hsic[(i, j)] / den if den > 0 else 0.0
            if n > 3:
                num = _unbiased(hsic[(i, j)], r_prod[i, j], r_sum[i], r_sum[j], n)
                prod = self_u[i] * self_u[j]
                deb[i, j] = deb[j, i] = num / np.sqrt(prod) if prod > 0 else 0.0
    return Similarity(names, cka, deb)


def _weighted_hsic(k: np.ndarray, l: np.ndarray, uk: np.ndarray, ul: np.ndarray, w: np.ndarray) -> np.ndarray:
    """m^2 HSIC (biased) of two linear kernels over each resample, given by its counts.

    A resample that takes image p w_p times has the Gram matrix P K P^T (P picks the rows), so
    tr(K_R H L_R H) = tr(K D L D) - 2/m w^T K D L w + (w^T K w)(w^T L w)/m^2, D = diag(w).

    Args:
        k, l: (m, m) Gram matrices of the sample.
        uk, ul: (draws, m) W @ k and W @ l.
        w: (draws, m) counts of each image in each resample (rows sum to m).
    """
    m = w.shape[1]
    t1 = np.einsum("bp,bp->b", w @ (k * l), w)
    t2 = np.einsum("bp,bp,bp->b", uk, ul, w)
    return t1 - 2.0 / m * t2 + np.einsum("bp,bp->b", uk, w) * np.einsum("bp,bp->b", ul, w) / m**2


def cka_interval(
    features: Mapping[str, np.ndarray],
    cka: np.ndarray,
    *,
    images: int = BOOT_IMAGES,
    draws: int = BOOT_DRAWS,
    random_state: int = 0,
) -> tuple[np.ndarray, np.ndarray, int]:
    """95 % percentile-bootstrap intervals of plain linear CKA between every pair of layers.

    Each resample draws m images with replacement and recomputes CKA on them, from the m x m Gram
    matrices of the sample (_weighted_hsic), so a resample costs O(L^2 m^2) and no feature is read
    twice. A resample repeats images, and repeats inflate plain CKA (for unrelated layers the
    resamples' CKA sits above the estimate), so the interval is the resamples' 2.5 % and 97.5 %
    quantiles taken relative to their median and placed at the estimate. With more than `images`
    images, m = `images` of them are drawn at random and those deviations are scaled by
    sqrt(m / N) (the m-out-of-n bootstrap, Bickel, Goetze & van Zwet 1997), around the CKA of all
    N images. Memory O(L m^2), whatever N.

    Args:
        features: {layer key: (N, D)}, the same images in every layer.
        cka: (L, L) plain CKA of all N images (layer_similarity), the interval's centre.
        images: most images resampled (m).
        draws: bootstrap resamples.
        random_state: seed of the sample and the resamples.

    Returns:
        (low, high) of shape (L, L), and m.
    """
    names = list(features)
    n = features[names[0]].shape[0] if names else 0
    if n < 4:
        nan = np.full((len(names), len(names)), np.nan)
        return nan, nan.copy(), n
    rng = np.random.default_rng(random_state)
    m = min(n, images)
    sample = np.sort(rng.choice(n, m, replace=False)) if n > m else np.arange(n)
    grams = []
    for key in names:
        z = np.asarray(features[key][sample], dtype=np.float64)
        z -= z.mean(0)
        grams.append(z @ z.T)
    w = rng.multinomial(m, np.full(m, 1.0 / m), size=draws).astype(np.float64)
    u = [w @ g for g in grams]
    L = len(names)
    hsic = {(i, j): _weighted_hsic(grams[i], grams[j], u[i], u[j], w) for i in range(L) for j in range(i, L)}
    low, high = np.eye(L), np.eye(L)
    scale = np.sqrt(m / n)
    for i in range(L):
        for j in range(i + 1, L):
            with np.errstate(divide="ignore", invalid="ignore"):
                boot = hsic[(i, j)] / np.sqrt(hsic[(i, i)] * hsic[(j, j)])
            q = np.nanquantile(boot, [0.025, 0.5, 0.975])
            lo, hi = (cka[i, j] + (q[[0, 2]] - q[1]) * scale).clip(0.0, 1.0)
            low[i, j] = low[j, i] = lo
            high[i, j] = high[j, i] = hi
    return low, high, m
