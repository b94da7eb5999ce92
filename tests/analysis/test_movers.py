"""Movers between layers against brute force at small N: the share of changed neighbours per
image, the first layer whose neighbours agree with an image's class, and the ranking."""

from __future__ import annotations

import numpy as np

from explorer.analysis.movers import NEVER, movers, neighbours_agree, neighbours_changed
from explorer.analysis.neighbors import knn_graph


def _brute_neighbours(x: np.ndarray, k: int) -> list[set[int]]:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sims = xn @ xn.T
    np.fill_diagonal(sims, -np.inf)
    return [set(np.argsort(-row, kind="stable")[:k].tolist()) for row in sims]


def _layers(n: int = 150) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.array(["a", "b", "c"]), n // 3)
    centre = {c: rng.normal(size=16) for c in "abc"}
    base = rng.normal(size=(n, 16))
    feats = {
        f"l{j}": base * (1 - s) + s * 3 * np.stack([centre[c] for c in labels])
        for j, s in enumerate((0.0, 0.3, 0.6, 0.9))
    }
    return {k: v.astype(np.float32) for k, v in feats.items()}, labels


def test_changed_neighbours_and_first_agreeing_layer_equal_brute_force() -> None:
    feats, labels = _layers()
    graphs = {k: knn_graph(v, exact=True) for k, v in feats.items()}
    k = 10
    exact = {name: _brute_neighbours(x, k) for name, x in feats.items()}
    # the movers' arithmetic, done here with Python sets over each image's neighbours in the graphs
    # (the graphs themselves against brute force: all but near-ties at the k-th neighbour)
    brute = {name: [set(row[:k].tolist()) for row in graphs[name].indices] for name in feats}
    assert np.mean([a == b for name in feats for a, b in zip(brute[name], exact[name])]) > 0.98
    names = list(feats)
    mv = movers(graphs, names, list(labels), k=k, agree_k=k)
    for j in range(len(names) - 1):
        want = [1 - len(a & b) / k for a, b in zip(brute[names[j]], brute[names[j + 1]])]
        np.testing.assert_allclose(mv.changed[:, j], want, atol=1e-6)
    first = []
    for i in range(len(labels)):
        agree = [sum(labels[m] == labels[i] for m in brute[name][i]) * 2 > k for name in names]
        first.append(agree.index(True) if any(agree) else NEVER)
    assert mv.first_agreeing.tolist() == first
    assert (mv.first_agreeing == NEVER).any() or (mv.first_agreeing > 0).any()  # the data move: not all at layer 0
    assert neighbours_agree(graphs["l3"], labels, k).mean() > neighbours_agree(graphs["l0"], labels, k).mean()


def test_ranked_movers_and_any_pair() -> None:
    feats, labels = _layers(90)
    graphs = {k: knn_graph(v, exact=True) for k, v in feats.items()}
    mv = movers(graphs, list(feats), None)
    assert (mv.first_agreeing == NEVER).all()  # no labels: nothing to agree with
    rows, share = mv.ranked("l0", "l3", graphs, top=5)
    full = neighbours_changed(graphs["l0"], graphs["l3"])
    assert np.all(np.diff(share) <= 0) and share[0] == full.max() and np.array_equal(full[rows], share)
    np.testing.assert_array_equal(mv.pair("l1", "l2", graphs), mv.changed[:, 1])
    assert np.all(neighbours_changed(graphs["l2"], graphs["l2"]) == 0)
