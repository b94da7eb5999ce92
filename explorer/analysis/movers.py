"""Which images move between layers, read off the kNN graphs the analysis already has: per image
and pair of consecutive layers, the share of its nearest neighbours that changed; per image, the
first layer where most of its neighbours share its class. O(N * k) per layer, no N x N matrix."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .chunked import row_chunks
from .neighbors import OVERLAP_K, KnnGraph

NEVER = -1  # first_agreeing: no layer's neighbours agree with the image's class
AGREE_K = 5  # neighbours that vote on an image's class, as kNN accuracy's default k (MetricSpec.knn_k)


def neighbours_changed(a: KnnGraph, b: KnnGraph, k: int = OVERLAP_K) -> np.ndarray:
    """(N,) float32: the share of each image's k nearest neighbours in layer `a` that are not among
    its k nearest in layer `b` (0: the same neighbours, 1: all new)."""
    k = min(k, a.k, b.k)
    out = np.empty(a.indices.shape[0], np.float32)
    for s in row_chunks(a.indices.shape[0]):
        na, nb = a.indices[s, :k], b.indices[s, :k]
        kept = (na[:, :, None] == nb[:, None, :]).any(2).sum(1)
        out[s] = 1.0 - kept / k
    return out


def neighbours_agree(graph: KnnGraph, labels: np.ndarray, k: int = AGREE_K) -> np.ndarray:
    """(N,) bool: more than half of each image's k nearest neighbours share its class."""
    k = min(k, graph.k)
    _, y = np.unique(np.asarray(labels), return_inverse=True)
    same = np.zeros(len(y), np.int32)
    for s in row_chunks(len(y)):
        same[s] = (y[graph.indices[s, :k]] == y[s, None]).sum(1)
    return same * 2 > k


@dataclass(frozen=True)
class Movers:
    """How a model's images move through its chosen layers.

    Attributes:
        layers: the layer keys, in depth order.
        changed: (N, len(layers) - 1) float32: column j is the share of neighbours that changed
            from layers[j] to layers[j + 1].
        first_agreeing: (N,) int: index into `layers` of the first layer where most of an image's
            `agree_k` nearest neighbours share its class, NEVER when none does (all NEVER without labels).
        k: neighbours compared for `changed`.
    """

    layers: tuple[str, ...]
    changed: np.ndarray
    first_agreeing: np.ndarray
    k: int

    def pair(self, a: str, b: str, graphs: dict[str, KnnGraph]) -> np.ndarray:
        """The share of neighbours that changed between any two of the layers (consecutive ones
        are kept; others are computed from the graphs)."""
        i, j = self.layers.index(a), self.layers.index(b)
        if j == i + 1:
            return self.changed[:, i]
        return neighbours_changed(graphs[a], graphs[b], self.k)

    def ranked(self, a: str, b: str, graphs: dict[str, KnnGraph], top: int) -> tuple[np.ndarray, np.ndarray]:
        """(image rows, their changed share): the `top` images whose neighbours changed most between
        two layers, most first (ties by row, so the order is stable)."""
        change = self.pair(a, b, graphs)
        order = np.lexsort((np.arange(len(change)), -change))[:top]
        return order, change[order]


def movers(
    graphs: dict[str, KnnGraph],
    layers: Sequence[str],
    labels: Sequence[str] | None,
    k: int = OVERLAP_K,
    agree_k: int = AGREE_K,
) -> Movers:
    """Movers of the given layers (one model's, in depth order) from their kNN graphs: `k`
    neighbours compared between layers, `agree_k` voting on an image's class."""
    layers = tuple(layers)
    n = graphs[layers[0]].indices.shape[0]
    changed = np.empty((n, max(len(layers) - 1, 0)), np.float32)
    for j in range(len(layers) - 1):
        changed[:, j] = neighbours_changed(graphs[layers[j]], graphs[layers[j + 1]], k)
    first = np.full(n, NEVER, np.int64)
    if labels is not None:
        for j, layer in enumerate(layers):
            agree = neighbours_agree(graphs[layer], np.asarray(labels), agree_k)
            first[(first == NEVER) & agree] = j
    return Movers(layers, changed, first, min([k] + [graphs[x].k for x in layers]))
