"""One cosine k-nearest-neighbour graph per layer (faiss), and what is read off it: kNN accuracy,
neighbourhood overlap between layers, and (to be wired) an image's neighbours and UMAP's input graph."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from .chunked import row_chunks, unit_rows

log = logging.getLogger(__name__)

GRAPH_K = 15  # neighbours kept per image: UMAP's default n_neighbors (15, itself included) and kNN's k
OVERLAP_K = 10  # neighbourhood overlap compares the 10 nearest neighbours of an image in two layers
EXACT_MAX_COST = 2e11  # exact search when N^2 * D stays under this (about 10 s on 2 cores), else HNSW
HNSW_M, HNSW_EF_CONSTRUCTION, HNSW_EF_SEARCH = 32, 40, 64  # recall ~0.98 on 100k x 1280 (docs/benchmarks.md)
RECALL_QUERIES = 1000  # random images whose exact neighbours measure an approximate graph's recall


@dataclass(frozen=True)
class KnnGraph:
    """The k nearest other images of every image by cosine distance.

    Attributes:
        indices: (N, k) int64, nearest first; an image is never its own neighbour.
        distances: (N, k) float32 cosine distances (1 - cos).
        method: `exact` or `hnsw` (faiss HNSW, approximate).
        recall: mean share of the true k nearest found (1.0 for exact; measured on a random sample
            of RECALL_QUERIES images for hnsw).
    """

    indices: np.ndarray
    distances: np.ndarray
    method: str
    recall: float

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The graph as named arrays, as the store keeps them (indices as int32 where they fit)."""
        idx_dtype = np.int32 if self.indices.shape[0] < 2**31 else np.int64
        return {
            "indices": self.indices.astype(idx_dtype),
            "distances": self.distances,
            "method": np.array(self.method),
            "recall": np.array(self.recall),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> KnnGraph:
        """The graph from the arrays to_arrays made."""
        return cls(a["indices"].astype(np.int64), a["distances"], str(a["method"]), float(a["recall"]))

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])


def _drop_self(idx: np.ndarray, sims: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index (wherever duplicates put it) and faiss's -1 padding; keep k."""
    bad = (idx == rows[:, None]) | (idx < 0)
    order = np.argsort(bad, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(idx, order, 1), np.take_along_axis(sims, order, 1)


def _search(index: object, xn: np.ndarray, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    rows = np.arange(xn.shape[0]) if rows is None else rows
    idx_out = np.empty((len(rows), k), np.int64)
    sim_out = np.empty((len(rows), k), np.float32)
    for part in row_chunks(len(rows)):
        r = rows[part]
        sims, idx = index.search(xn[r], k + 1)  # type: ignore[attr-defined]
        idx_out[part], sim_out[part] = _drop_self(idx, sims, r, k)
    return idx_out, sim_out


def knn_graph(x: np.ndarray, k: int = GRAPH_K, *, exact: bool | None = None, random_state: int = 0) -> KnnGraph:
    """The cosine k-nearest-neighbour graph of one layer's features.

    Exact (faiss brute force) where N^2 * D is small, else faiss HNSW with its recall measured
    against exact search for a random sample of images.

    Args:
        x: (N, D) features (array or memory map; not modified).
        k: neighbours per image (at most N - 1).
        exact: force exact (True) or approximate (False) search; None chooses by cost.
        random_state: seed of the recall sample. (HNSW is built by several threads, so an
            approximate graph can differ run to run in a few neighbours; its recall says how much.)

    Returns:
        A KnnGraph.
    """
    import faiss

    n, d = x.shape
    k = min(k, n - 1)
    if k < 1:
        return KnnGraph(np.zeros((n, 0), np.int64), np.zeros((n, 0), np.float32), "exact", 1.0)
    xn = unit_rows(x)
    flat = faiss.IndexFlatIP(d)
    flat.add(xn)
    if exact is None:
        exact = float(n) * n * d <= EXACT_MAX_COST
    if exact:
        idx, sims = _search(flat, xn, k)
        return KnnGraph(idx, (1.0 - sims).clip(0, 2).astype(np.float32), "exact", 1.0)
    hnsw = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    hnsw.add(xn)
    hnsw.hnsw.efSearch = max(HNSW_EF_SEARCH, 2 * k)
    idx, sims = _search(hnsw, xn, k)
    queries = np.random.default_rng(random_state).choice(n, size=min(RECALL_QUERIES, n), replace=False)
    true_idx, _ = _search(flat, xn, k, rows=queries)
    recall = float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(idx[queries], true_idx)]))
    log.info("kNN graph: HNSW over %d x %d, recall@%d %.3f", n, d, k, recall)
    return KnnGraph(idx, (1.0 - sims).clip(0, 2).astype(np.float32), "hnsw", recall)


def knn_votes(graph: KnnGraph, y: np.ndarray, k: int, rows: np.ndarray) -> np.ndarray:
    """Each scored image's kNN vote: the majority class of its k nearest others.

    Ties go to the class that sorts first, as in scikit-learn's KNeighborsClassifier.

    Args:
        graph: the layer's graph (k of its neighbours are used).
        y: (N,) class indices 0..n_classes-1 of every image (every neighbour votes with its class).
        k: neighbours that vote (at most graph.k).
        rows: the images scored.

    Returns:
        (len(rows),) class indices.
    """
    if k > graph.k:
        raise ValueError(f"kNN with k={k} needs a graph of at least {k} neighbours (this one has {graph.k})")
    votes = np.zeros((len(rows), int(y.max()) + 1 if len(y) else 0), np.int32)
    nb = y[graph.indices[rows, :k]]
    for j in range(k):
        np.add.at(votes, (np.arange(len(rows)), nb[:, j]), 1)
    return votes.argmax(1)


def knn_accuracy(graph: KnnGraph, labels: np.ndarray, k: int, mask: np.ndarray | None = None) -> float:
    """Leave-one-out kNN accuracy: the share of scored images whose vote (knn_votes) is their class.

    Args:
        graph: the layer's graph (k of its neighbours are used).
        labels: (N,) class labels.
        k: neighbours that vote (at most graph.k).
        mask: (N,) bool, the images scored (default all); every neighbour votes with its class.
    """
    y = np.unique(labels, return_inverse=True)[1]
    rows = np.flatnonzero(mask) if mask is not None else np.arange(len(y))
    return float(np.mean(knn_votes(graph, y, k, rows) == y[rows]))


def neighbourhood_overlap(a: KnnGraph, b: KnnGraph, k: int = OVERLAP_K) -> float:
    """Mean share of an image's k nearest neighbours that two layers have in common (1: the same)."""
    k = min(k, a.k, b.k)
    if k < 1:
        return float("nan")
    total = 0
    for s in row_chunks(a.indices.shape[0]):
        na, nb = a.indices[s, :k], b.indices[s, :k]
        total += int((na[:, :, None] == nb[:, None, :]).any(2).sum())
    return total / (a.indices.shape[0] * k)


def overlap_matrix(graphs: dict[str, KnnGraph], k: int = OVERLAP_K) -> np.ndarray:
    """Neighbourhood overlap between every pair of layers (ones on the diagonal)."""
    names = list(graphs)
    out = np.eye(len(names))
    for i, a in enumerate(names):
        for j in range(i + 1, len(names)):
            out[i, j] = out[j, i] = neighbourhood_overlap(graphs[a], graphs[names[j]], k)
    return out
