"""Intrinsic dimension per layer: TwoNN against scikit-dimension's on the same features, its
interval and seed, and RankMe against its formula on a direct SVD."""

from __future__ import annotations

import numpy as np
import pytest

from explorer.analysis.intrinsic import intrinsic_dimension, neighbour_ratios, rankme, twonn_slope


def manifold(kind: str, n: int, seed: int = 0) -> tuple[np.ndarray, float]:
    """(points embedded in 64 dimensions, their true dimension)."""
    rng = np.random.default_rng(seed)
    if kind == "linear":
        z = rng.standard_normal((n, 6))
        return (z @ rng.standard_normal((6, 64))).astype(np.float32), 6.0
    t = rng.uniform(1.5 * np.pi, 4.5 * np.pi, n)  # a swiss roll: a curved 2-d sheet
    roll = np.stack([t * np.cos(t), rng.uniform(0, 20, n), t * np.sin(t)], 1)
    q, _ = np.linalg.qr(rng.standard_normal((64, 3)))
    return (roll @ q.T).astype(np.float32), 2.0


@pytest.mark.parametrize("kind", ["linear", "swiss roll"])
def test_twonn_equals_scikit_dimension(kind: str) -> None:
    from skdim.id import TwoNN

    x, true = manifold(kind, 1200)
    got = intrinsic_dimension(x, sample=5000)  # every row: no sample
    want = TwoNN().fit(x.astype(np.float64)).dimension_
    assert got.sample == 1200 and got.twonn == pytest.approx(want, rel=1e-4)
    assert got.twonn_low < got.twonn < got.twonn_high and abs(got.twonn - true) < 0.25 * true


def test_the_sample_and_its_interval_follow_the_seed() -> None:
    x, _ = manifold("linear", 3000)
    a, b, c = (intrinsic_dimension(x, sample=800, random_state=s) for s in (1, 1, 2))
    assert a == b and a.sample == 800 and (a.twonn, a.twonn_low) != (c.twonn, c.twonn_low)
    assert a.rankme == pytest.approx(rankme(x[np.sort(np.random.default_rng([1, 5]).choice(3000, 800, replace=False))]))


def test_duplicates_are_left_out_of_the_ratios() -> None:
    x, _ = manifold("linear", 300)
    mu = neighbour_ratios(np.concatenate([x, x[:20]]))
    assert len(mu) == 300 - 20 and np.all(mu >= 1)
    assert np.isnan(twonn_slope(np.array([2.0])))


def test_rankme_is_the_entropy_of_the_singular_values() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((500, 40)) * np.geomspace(1, 1e-3, 40)).astype(np.float32)
    s = np.linalg.svd(x.astype(np.float64), compute_uv=False)
    p = s / s.sum() + 1e-7
    assert rankme(x) == pytest.approx(np.exp(-np.sum(p * np.log(p))), rel=1e-5)
    assert 1 <= rankme(x) <= 40 and rankme(np.zeros((10, 5), np.float32)) == 1.0
