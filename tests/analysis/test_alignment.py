"""Similarity measures against their nulls: each measure against an independent computation of its
definition on the same sample (CKNNA and mutual kNN as Huh et al. 2024 define them, RSA with
scipy, CKA with the project's own linear CKA, Procrustes with scipy.linalg.orthogonal_procrustes),
the permutation null (unrelated layers inside it, a rotated and rescaled copy at the maximum), the
null of the maximum and the bootstrap interval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.distance import pdist
from scipy.stats import spearmanr

from explorer.analysis.alignment import (
    DISTANCES,
    MEASURES,
    inside_null,
    max_null,
    measures,
    nulls_wanted,
    p_value,
    pair_scores,
    permutations,
    prepare,
    resamples,
)
from explorer.analysis.similarity import layer_similarity


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def related(s: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((s, 24))
    b = np.tanh(a @ rng.standard_normal((24, 40))) + 0.7 * rng.standard_normal((s, 40))
    return a.astype(np.float32), b.astype(np.float32)


def knn_sets(x: np.ndarray, k: int) -> list[set[int]]:
    g = unit(x.astype(np.float64))
    g = g @ g.T
    return [set(np.argsort(-np.where(np.arange(len(g)) == i, -np.inf, row))[:k].tolist()) for i, row in enumerate(g)]


def hsic_unbiased_by_definition(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. 2012, eq. 5, term by term with the zero-diagonal matrices."""
    m = len(k)
    kt, lt = k.copy(), l.copy()
    np.fill_diagonal(kt, 0)
    np.fill_diagonal(lt, 0)
    one = np.ones(m)
    return float(
        (
            np.trace(kt @ lt)
            + (one @ kt @ one) * (one @ lt @ one) / ((m - 1) * (m - 2))
            - 2 / (m - 2) * one @ kt @ lt @ one
        )
        / (m * (m - 3))
    )


def cknna_by_definition(a: np.ndarray, b: np.ndarray, k: int) -> float:
    ua, ub = unit(a.astype(np.float64)), unit(b.astype(np.float64))
    ka, kb = ua @ ua.T, ub @ ub.T
    na, nb = knn_sets(a, k), knn_sets(b, k)

    def masked(sa: list[set[int]], sb: list[set[int]]) -> np.ndarray:
        mask = np.zeros_like(ka, dtype=bool)
        for i, (x, y) in enumerate(zip(sa, sb)):
            mask[i, sorted(x & y)] = True
        return mask

    def sim(k1: np.ndarray, k2: np.ndarray, s1: list[set[int]], s2: list[set[int]]) -> float:
        mask = masked(s1, s2)
        return hsic_unbiased_by_definition(mask * k1, mask * k2)

    return sim(ka, kb, na, nb) / (np.sqrt(sim(ka, ka, na, na) * sim(kb, kb, nb, nb)) + 1e-6)


def test_each_measure_equals_its_definition() -> None:
    a, b = related(120)
    got = measures(prepare(a), prepare(b))
    sa, sb = knn_sets(a, 10), knn_sets(b, 10)
    assert got["mutual_knn"] == pytest.approx(np.mean([len(x & y) / 10 for x, y in zip(sa, sb)]), abs=1e-12)
    assert got["cknna"] == pytest.approx(cknna_by_definition(a, b, 10), rel=1e-6)
    rho = spearmanr(pdist(unit(a.astype(np.float64)), "correlation"), pdist(unit(b.astype(np.float64)), "correlation"))
    assert got["rsa"] == pytest.approx(rho.statistic, abs=1e-9)
    own = layer_similarity({"a": unit(a.astype(np.float64)), "b": unit(b.astype(np.float64))})
    assert got["cka"] == pytest.approx(own.cka[0, 1], abs=1e-6)
    assert got["procrustes"] == pytest.approx(procrustes_by_scipy(a, b), abs=1e-9)


def test_cknna_and_mutual_knn_equal_platonic_reps_own_numbers() -> None:
    """The authors' metrics.py, run on these features (tests/reference/platonic_rep_values.json says how)."""
    cases = json.loads((Path(__file__).parents[1] / "reference" / "platonic_rep_values.json").read_text())["cases"]
    assert len(cases) == 3
    for case in cases:
        a, b = related(case["images"], seed=case["seed"])
        got = measures(prepare(a, k=case["k"]), prepare(b, k=case["k"]))
        assert got["cknna"] == pytest.approx(case["cknna"], abs=1e-9), case
        assert got["mutual_knn"] == pytest.approx(case["mutual_knn"], abs=1e-6), case  # theirs is float32


def procrustes_by_scipy(a: np.ndarray, b: np.ndarray) -> float:
    """Williams et al. 2021's angular distance: centre, unit Frobenius norm, pad to one width, then
    arccos of <X R, Y> for scipy's optimal rotation R."""
    x, y = (v.astype(np.float64) - v.astype(np.float64).mean(0) for v in (a, b))
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    width = max(x.shape[1], y.shape[1])
    x, y = (np.pad(v, ((0, 0), (0, width - v.shape[1]))) for v in (x, y))
    r, _ = orthogonal_procrustes(x, y)
    return float(np.arccos(np.clip(np.sum((x @ r) * y), 0, 1)))


def test_procrustes_on_a_layer_wider_than_the_sample() -> None:
    rng = np.random.default_rng(2)
    a = rng.standard_normal((60, 300)).astype(np.float32)  # the shape is rotated to 60 columns
    b = (a[:, :80] + 0.5 * rng.standard_normal((60, 80))).astype(np.float32)
    assert measures(prepare(a), prepare(b))["procrustes"] == pytest.approx(procrustes_by_scipy(a, b), abs=1e-9)


def test_unrelated_layers_score_inside_their_null() -> None:
    inside = {m: 0 for m in MEASURES}
    seeds = 100
    for seed in range(seeds):
        rng = np.random.default_rng(1000 + seed)
        a = prepare(rng.standard_normal((150, 32)).astype(np.float32))
        b = prepare(rng.standard_normal((150, 48)).astype(np.float32))
        got = pair_scores(a, b, permutations(150, 50, random_state=seed))
        for m in MEASURES:
            inside[m] += inside_null(m, got.score[m], got.null[m])
    # a permutation test at 5 % with 50 draws: unrelated pairs fall inside it with probability
    # 1 - 2/51 (96 %) under exchangeability; the issue asks at least 95 of 100 seeds
    assert all(v >= 95 for v in inside.values()), inside
    # ...and raw CKA between unrelated 32- and 48-wide layers is far from 0, the null's mean with it
    assert got.row("cka")[1] > 0.1 and abs(got.row("cka")[3]) < 0.1


def test_a_rotated_rescaled_copy_scores_the_maximum() -> None:
    a, _ = related(200, seed=3)
    q, _ = np.linalg.qr(np.random.default_rng(4).standard_normal((24, 24)))
    copies = {"rotated and rescaled": (3.7 * a @ q).astype(np.float32), "rescaled": (3.7 * a).astype(np.float32)}
    for name, copy in copies.items():
        got = pair_scores(prepare(a), prepare(copy), permutations(200, 20))
        # RSA's correlation distance centres each image's vector across the units, which a rotation
        # of the units changes: it is at the maximum for the rescaled copy only (0.95 rotated here)
        for m in MEASURES if name == "rescaled" else ("cka", "cknna", "mutual_knn", "procrustes"):
            score, mean, edge, calibrated = got.row(m)
            # 1 (a distance of 0) up to float32 features and CKNNA's 1e-6 guard
            best = 0.0 if m in DISTANCES else 1.0
            assert score == pytest.approx(best, abs=2e-3) and calibrated == pytest.approx(1.0, abs=1e-3), (name, m)
            assert not inside_null(m, score, got.null[m]) and p_value(m, score, got.null[m]) == pytest.approx(1 / 21)


def test_the_maximum_over_layers_has_its_own_null() -> None:
    a, b = related(150, seed=5)
    rng = np.random.default_rng(6)
    layers = [prepare(b), *(prepare(rng.standard_normal((150, 30)).astype(np.float32)) for _ in range(4))]
    perms = permutations(150, 50)
    pairs = [pair_scores(prepare(a), other, perms) for other in layers]
    best, draws = max_null(pairs, "cka")
    p95, mean = np.quantile(draws, 0.95), np.mean(draws)
    assert best == pairs[0].score["cka"] and best > p95
    assert p95 >= max(np.quantile(p.null["cka"], 0.95) for p in pairs) - 1e-12  # the maximum's null is wider
    assert mean > np.mean([np.mean(p.null["cka"]) for p in pairs])


def test_the_seed_decides_every_permutation() -> None:
    a, b = related(100)
    pa, pb = prepare(a), prepare(b)
    one, two = pair_scores(pa, pb, permutations(100, 10, 1)), pair_scores(pa, pb, permutations(100, 10, 1))
    other = pair_scores(pa, pb, permutations(100, 10, 2))
    assert all(np.array_equal(one.null[m], two.null[m]) for m in MEASURES)
    assert not np.array_equal(one.null["cka"], other.null["cka"])


def test_the_maximum_of_a_distance_is_its_minimum() -> None:
    a, b = related(150, seed=5)
    rng = np.random.default_rng(6)
    layers = [prepare(b), *(prepare(rng.standard_normal((150, 30)).astype(np.float32)) for _ in range(4))]
    pairs = [pair_scores(prepare(a), other, permutations(150, 50)) for other in layers]
    best, draws = max_null(pairs, "procrustes")
    edge, mean = np.quantile(draws, 0.05), np.mean(draws)
    assert best == pairs[0].score["procrustes"] and best < edge < mean
    assert edge <= min(np.quantile(p.null["procrustes"], 0.05) for p in pairs) + 1e-12


def test_the_bootstrap_interval_covers_the_score_and_narrows_with_the_sample() -> None:
    widths = {}
    for s in (80, 320):
        a, b = related(s, seed=9)
        got = pair_scores(prepare(a), prepare(b), permutations(s, 5), resamples(s, 40))
        for m in MEASURES:
            low, high = got.interval(m)
            assert low < got.score[m] < high, (s, m, low, got.score[m], high)
        widths[s] = {m: np.subtract(*got.interval(m)[::-1]) for m in MEASURES}
    assert all(widths[320][m] < widths[80][m] for m in MEASURES), widths


def test_auto_tests_the_pairs_of_up_to_sixteen_layers() -> None:
    assert nulls_wanted(None, 16) and not nulls_wanted(None, 17)  # 120 pairs, about 30 s; 136 are left to a flag
    assert nulls_wanted(True, 48) and not nulls_wanted(False, 2)
