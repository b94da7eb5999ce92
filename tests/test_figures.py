"""Figure helpers that carry meaning: colour groups for a labels.csv column."""

from __future__ import annotations

import numpy as np

from explorer.figures import MAX_COLOUR_GROUPS, NUMBER_BINS, OTHER, value_groups


def test_few_values_are_their_own_groups_in_numeric_order() -> None:
    codes, names, colors = value_groups(["10", "9", "2", "9", ""])
    assert names == ["2", "9", "10", "(empty)"]
    assert [names[c] for c in codes] == ["10", "9", "2", "9", "(empty)"]
    assert len(set(colors)) == 4


def test_many_numbers_are_cut_into_quantile_ranges() -> None:
    values = [str(v) for v in np.random.default_rng(0).normal(size=1000)] + ["n/a"]
    codes, names, colors = value_groups(values)
    assert len(names) == NUMBER_BINS + 1 and names[-1] == OTHER and codes[-1] == NUMBER_BINS
    counts = np.bincount(codes[:-1])
    assert counts.min() >= 120 and counts.max() <= 130  # equal-count bins
    lo = np.array([float(n.split(" to ")[0]) for n in names[:-1]])
    x = np.array(values[:-1], dtype=float)
    assert (np.diff(lo) > 0).all() and (lo[codes[:-1]] <= x + 1e-3 * (1 + abs(x))).all()  # labels: 4 digits


def test_many_words_keep_the_most_frequent_and_put_the_rest_in_other() -> None:
    values = ["common"] * 50 + [f"rare{i}" for i in range(40)]
    codes, names, colors = value_groups(values)
    assert len(names) == MAX_COLOUR_GROUPS and names[0] == "common" and names[-1] == OTHER
    assert (codes[:50] == 0).all()
    assert (codes[50:] == MAX_COLOUR_GROUPS - 1).sum() == 40 - (MAX_COLOUR_GROUPS - 2)
    assert len(colors) == len(names)
