"""Where each pair of classes comes apart along depth, read off the probe's out-of-fold confusion
matrices the analysis already has: per layer and pair of classes, the share of the two classes'
images the probe takes for the other one; the first layer where that share drops below a
threshold; and the pairs still most confused at a layer. O(L * K^2) for K classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

APART_BELOW = 0.05  # a pair is apart at a layer once under 5 % of its images are taken for the other class
NEVER = -1


def pair_confusion(confusion: np.ndarray) -> np.ndarray:
    """(K, K) symmetric: for classes a != b, (images of a predicted b + images of b predicted a) /
    (images of a + images of b); NaN on the diagonal and where neither class was scored."""
    c = np.asarray(confusion, dtype=np.float64)
    n = c.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (c + c.T) / (n[:, None] + n[None, :])
    out[(n[:, None] + n[None, :]) == 0] = np.nan
    np.fill_diagonal(out, np.nan)
    return out


@dataclass(frozen=True)
class ClassPairs:
    """How a model's layers separate each pair of classes.

    Attributes:
        classes: the dataset's classes, sorted (the confusion matrices' order).
        layers: layer keys in depth order.
        confusion: (L, K, K) pair confusion per layer (pair_confusion).
        first_apart: (K, K) index into `layers` of the first layer where a pair's confusion is under
            `threshold`, NEVER when no layer gets there (and on the diagonal).
        threshold: the share under which a pair counts as apart.
    """

    classes: tuple[str, ...]
    layers: tuple[str, ...]
    confusion: np.ndarray
    first_apart: np.ndarray
    threshold: float

    def hardest(self, layer: str, top: int = 5) -> list[tuple[str, str, float]]:
        """The `top` pairs the probe confuses most at `layer`, most first: (class, class, share)."""
        conf = self.confusion[self.layers.index(layer)]
        a, b = np.triu_indices(len(self.classes), k=1)
        vals = conf[a, b]
        keep = ~np.isnan(vals)
        order = np.lexsort((b[keep], a[keep], -vals[keep]))[:top]
        return [(self.classes[a[keep][i]], self.classes[b[keep][i]], float(vals[keep][i])) for i in order]


def class_pairs(
    confusions: Sequence[np.ndarray], layers: Sequence[str], classes: Sequence[str], threshold: float = APART_BELOW
) -> ClassPairs:
    """ClassPairs from each layer's out-of-fold confusion matrix (depth order)."""
    conf = (
        np.stack([pair_confusion(c) for c in confusions])
        if len(confusions)
        else np.zeros((0, len(classes), len(classes)))
    )
    first = np.full((len(classes), len(classes)), NEVER, np.int64)
    for j in range(conf.shape[0]):
        first[(first == NEVER) & (conf[j] < threshold)] = j  # NaN compares False: never apart
    return ClassPairs(tuple(classes), tuple(layers), conf, first, threshold)
