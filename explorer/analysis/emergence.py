"""Where a selection of images emerges along depth: the same linear probe as the class curve,
trained at every layer to tell the selected images from the rest. Any concept a user can point at
(a lasso, a search, a labels.csv value) gets its own curve: "at which layer does the network start
to see this?"

The two groups are balanced (every selected image, as many others drawn at random; both capped at
MAX_PER_SIDE), so chance is 0.5 and accuracy is balanced accuracy. The probe's C is chosen as for
the class curve, by an inner cross-validation, but in the first fold only and reused in the others
(an answer within seconds; docs/benchmarks.md). Memory and time grow with the sample, not with N.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .probe import probe

MAX_PER_SIDE = 1_000  # selected images, and others, that the probe sees at most (a stated random sample beyond)
FOLDS = 3
MIN_PER_SIDE = FOLDS  # a fold needs one image of each side


@dataclass(frozen=True)
class Emergence:
    """A selection's probe accuracy along depth.

    Attributes:
        layers: layer keys in depth order.
        accuracy: (L,) mean out-of-fold accuracy of "selected vs the rest" (balanced: chance 0.5).
        accuracy_std: (L,) its standard deviation over the folds.
        n_selected: images selected.
        n_used: images the probe saw (both sides; fewer than selected + rest when sampled).
    """

    layers: tuple[str, ...]
    accuracy: np.ndarray
    accuracy_std: np.ndarray
    n_selected: int
    n_used: int

    @property
    def sampled(self) -> bool:
        return self.n_used < 2 * self.n_selected or self.n_selected > MAX_PER_SIDE


def balanced_rows(n: int, selected: Sequence[int], random_state: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(sorted rows, their 0/1 labels): the selected images and as many others, at random, each
    side at most MAX_PER_SIDE.

    Raises:
        ValueError: fewer than MIN_PER_SIDE images selected, or left out.
    """
    sel = np.zeros(n, bool)
    sel[np.asarray(selected, dtype=np.int64)] = True
    inside, outside = np.flatnonzero(sel), np.flatnonzero(~sel)
    if len(inside) < MIN_PER_SIDE or len(outside) < MIN_PER_SIDE:
        raise ValueError(
            f"select at least {MIN_PER_SIDE} images and leave at least {MIN_PER_SIDE} out "
            f"({len(inside)} selected of {n})"
        )
    rng = np.random.default_rng(random_state)
    side = min(len(inside), len(outside), MAX_PER_SIDE)
    rows = np.sort(np.concatenate([rng.choice(inside, side, replace=False), rng.choice(outside, side, replace=False)]))
    return rows, sel[rows].astype(np.int64)


def emergence(features: Mapping[str, np.ndarray], selected: Sequence[int], *, random_state: int = 0) -> Emergence:
    """The selection's probe accuracy at every layer (features in depth order, rows aligned)."""
    layers = tuple(features)
    n = features[layers[0]].shape[0]
    rows, y = balanced_rows(n, selected, random_state)
    results = [probe(features[k], y, FOLDS, rows=rows, random_state=random_state, reuse_c=True) for k in layers]
    return Emergence(
        layers,
        np.array([r.accuracy for r in results]),
        np.array([r.accuracy_std for r in results]),
        len({int(i) for i in selected}),
        len(rows),
    )
