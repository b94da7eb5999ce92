"""Where each pair of classes comes apart, against direct counts on hand-made confusion matrices."""

from __future__ import annotations

import numpy as np

from explorer.analysis.class_pairs import NEVER, class_pairs, pair_confusion


def test_pair_confusion_counts_both_directions() -> None:
    c = np.array([[8, 2, 0], [1, 9, 0], [0, 0, 0]])  # class c not scored
    p = pair_confusion(c)
    assert p[0, 1] == p[1, 0] == (2 + 1) / (10 + 10)
    assert p[0, 2] == 0 / 10 and np.isnan(p[0, 0]) and np.isnan(p[2, 2])


def test_first_apart_and_hardest_pairs_equal_a_direct_walk() -> None:
    rng = np.random.default_rng(0)
    k, layers = 5, [f"l{j}" for j in range(6)]
    confusions = []
    for j in range(len(layers)):  # confusion falls with depth, at its own pace for each pair
        off = rng.integers(0, 12 - 2 * j, (k, k)).clip(0)
        np.fill_diagonal(off, 0)
        confusions.append(off + np.diag(rng.integers(40, 60, k)))
    pairs = class_pairs(confusions, layers, list("abcde"), threshold=0.05)
    for x in range(k):
        for y in range(k):
            want = NEVER
            if x != y:
                for j, c in enumerate(confusions):
                    if (c[x, y] + c[y, x]) / (c[x].sum() + c[y].sum()) < 0.05:
                        want = j
                        break
            assert pairs.first_apart[x, y] == want, (x, y)
    assert (pairs.first_apart == pairs.first_apart.T).all() and (pairs.first_apart > 0).any()
    top = pairs.hardest("l0", top=3)
    direct = sorted(
        ((pairs.confusion[0][x, y], x, y) for x in range(k) for y in range(x + 1, k)), key=lambda t: (-t[0], t[1], t[2])
    )[:3]
    assert [(a, b) for a, b, _ in top] == [("abcde"[x], "abcde"[y]) for _, x, y in direct]
    assert [v for *_, v in top] == [v for v, *_ in direct]
