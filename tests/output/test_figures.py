"""Figure helpers that carry meaning: colour groups for a labels.csv column."""

from __future__ import annotations

import numpy as np

from explorer.output.figures import MAX_COLOUR_GROUPS, NUMBER_BINS, OTHER, value_groups


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


def test_report_panels_draw_points_in_an_order_that_favours_no_class() -> None:
    """One trace per class drew the last class over the rest; every point now sits in one trace per
    panel, in a fixed shuffled order, coloured by its own class, its dataset index in customdata[0]."""
    from explorer.output import figures

    rng = np.random.default_rng(3)
    labels = [f"c{i % 4}" for i in range(400)]  # sorted by class would put c3 last everywhere
    names = [f"img{i}.jpg" for i in range(400)]
    panels = {"a": rng.normal(size=(400, 2)), "b": rng.normal(size=(400, 2))}
    fig = figures.projections(panels, labels, names)
    drawn = [t for t in fig.data if t.x is not None and len(t.x) == 400]
    assert len(drawn) == 2  # one trace per panel
    colors = figures.class_colors(sorted(set(labels)))
    for t, xy in zip(drawn, panels.values()):
        index = np.array([int(i) for i in t.customdata[:, 0]])
        assert sorted(index.tolist()) == list(range(400))
        np.testing.assert_allclose(np.asarray(t.x, dtype=float), xy[index, 0])
        # each point's colour, read off the trace's stepped colour scale as plotly reads it
        scale, lo, hi = t.marker.colorscale, t.marker.cmin, t.marker.cmax
        drawn_colours = []
        for v in np.asarray(t.marker.color, dtype=float):
            at = (v - lo) / (hi - lo)
            drawn_colours.append(next(col for (a, col), (b, _) in zip(scale, scale[1:]) if a <= at <= b and a < b))
        assert drawn_colours == [colors[labels[i]] for i in index]
        assert len({labels[i] for i in index[-40:]}) == 4  # the last points drawn are of every class
    legend = [t.name for t in fig.data if t.showlegend is not False and t.x is not None and len(t.x) == 1]
    assert legend == sorted(set(labels))


def test_confusions_along_depth_are_each_layers_row_shares_four_to_a_row() -> None:
    from explorer.output.class_figures import confusions_along_depth

    rng = np.random.default_rng(0)
    mats = [rng.integers(0, 20, (3, 3)) for _ in range(5)]
    mats[2][1] = 0  # a class left out at that layer: its row is blank, not a division by zero
    fig = confusions_along_depth(mats, ["a", "b", "c"], [f"l{i}" for i in range(5)], "t")
    assert len(fig.data) == 5 and [t.showscale for t in fig.data] == [True, False, False, False, False]
    for trace, cm in zip(fig.data, mats):
        z = np.asarray(trace.z, dtype=float)
        rows = cm.sum(1) > 0
        assert np.allclose(z[rows].sum(1), 1.0) and np.isnan(z[~rows]).all()
    assert (fig.data[4].xaxis, fig.data[4].yaxis) == ("x5", "y5") and fig.layout.yaxis5.domain[
        1
    ] < fig.layout.yaxis.domain[0]
