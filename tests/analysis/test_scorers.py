"""The training-free scorers against their reference code's numbers (tllib's regularised H-score
and TransRate, tests/reference/tllib_scorer_values.json), and weighted Kendall τ's agreement
against scipy.stats.weightedtau, with its bootstrap interval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import weightedtau

from explorer.analysis import scorers
from explorer.analysis.scorers import agreement, class_scatter, regularised_h_score, scorer_values, transrate


def labelled(n: int, d: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    x = rng.standard_normal((n, d)) + 0.8 * rng.standard_normal((c, d))[y]
    return x.astype(np.float32), y


def test_each_scorer_equals_the_reference_codes_numbers() -> None:
    cases = json.loads((Path(__file__).parents[1] / "reference" / "tllib_scorer_values.json").read_text())["cases"]
    assert len(cases) == 4  # one case with more dimensions than images: TransRate's classes use their Gram matrices
    for case in cases:
        x, y = labelled(case["images"], case["dims"], case["classes"], case["seed"])
        got = scorer_values(x, y)
        assert got["h_score"] == pytest.approx(case["h_score"], rel=1e-9), case
        assert got["transrate"] == pytest.approx(case["transrate"], rel=1e-9), case


def test_labels_may_skip_class_numbers_and_rows_may_come_in_any_order() -> None:
    x, y = labelled(240, 16, 4, 5)
    order = np.random.default_rng(1).permutation(len(y))
    one = scorer_values(x, y)
    other = scorer_values(x[order], (y * 7 + 3)[order])  # the same classes, other numbers, rows shuffled
    assert one == pytest.approx(other, rel=1e-9)


def test_better_separated_classes_score_higher() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 500)
    centres = rng.standard_normal((5, 24))
    noise = rng.standard_normal((500, 24))
    weak, strong = (noise + s * centres[y] for s in (0.3, 2.0))
    for name in ("h_score", "transrate"):
        assert scorer_values(strong, y)[name] > scorer_values(weak, y)[name], name
    sums = class_scatter(strong.astype(np.float32), y)
    assert sums.counts.sum() == 500 and np.allclose(sums.counts @ sums.means, 0, atol=1e-3)  # centred once
    assert regularised_h_score(sums) > 0 and np.isfinite(transrate(sums))


def test_agreement_is_scipys_weighted_tau_with_an_interval() -> None:
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.3, 0.9, 24)
    score = truth + 0.08 * rng.standard_normal(24)
    got = agreement(score, truth, random_state=1)
    assert got.tau == pytest.approx(weightedtau(score, truth).statistic, abs=1e-12) and got.rows == 24
    assert got.low < got.tau < got.high and got.high <= 1
    assert agreement(truth, truth).tau == pytest.approx(1.0) and agreement(-truth, truth).tau == pytest.approx(-1.0)
    unrelated = agreement(rng.uniform(size=24), truth, random_state=1)
    assert unrelated.low < 0 < unrelated.high  # no agreement: the interval straddles 0
    assert agreement(score, truth, random_state=1) == got and agreement(score, truth, random_state=2) != got
    with_gaps = agreement(np.r_[score, np.nan], np.r_[truth, 0.5])
    assert with_gaps.rows == 24 and with_gaps.tau == pytest.approx(got.tau)
    assert np.isnan(agreement(score[:2], truth[:2]).tau)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([0.1, 0.5, 0.5, 0.9, float("nan")]) | st.floats(-1e6, 1e6), st.floats(0, 1)),
        min_size=0,
        max_size=30,
    ),
    st.integers(0, 3),
)
def test_agreement_gives_the_public_weighted_taus_numbers(rows: list, seed: int) -> None:
    """agreement calls scipy's weightedtau without its axis and NaN-policy wrapper (a quarter of the
    time): on any rows (ties, repeats, NaN left out, too few) the same τ and interval to the last bit
    as through the public function."""
    score, truth = (np.array([r[i] for r in rows], dtype=float) for i in (0, 1))
    fast = agreement(score, truth, random_state=seed, boot=60)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(scorers, "_weighted_tau", lambda: weightedtau)  # the public function, wrapper and all
        public = agreement(score, truth, random_state=seed, boot=60)
    assert np.array_equal(
        [fast.tau, fast.low, fast.high, fast.rows], [public.tau, public.low, public.high, public.rows], equal_nan=True
    )
