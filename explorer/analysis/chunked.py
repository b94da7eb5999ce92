"""Sums over the rows of a feature matrix in fixed-size chunks, so a memory-mapped N x D layer is
never copied whole into RAM (nor converted to float64 whole): column means and moments, the D x D
scatter matrix, and unit-length rows."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

ROW_CHUNK = 16384  # rows per step: 16,384 x 1,280 float64 is 168 MB


def row_chunks(n: int) -> Iterator[slice]:
    """Consecutive slices of ROW_CHUNK rows (the last one shorter) covering rows 0..n."""
    step = ROW_CHUNK  # read at call time: tests shrink it to cover several chunks at small N
    for a in range(0, n, step):
        yield slice(a, min(a + step, n))


def column_mean(x: np.ndarray) -> np.ndarray:
    """The float64 mean of each column."""
    total = np.zeros(x.shape[1])
    for s in row_chunks(x.shape[0]):
        total += np.asarray(x[s], dtype=np.float64).sum(0)
    return total / max(x.shape[0], 1)


def column_moments(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The float64 mean and (population) standard deviation of each column, in one pass."""
    s = np.zeros(x.shape[1])
    ss = np.zeros(x.shape[1])
    for part in row_chunks(x.shape[0]):
        c = np.asarray(x[part], dtype=np.float64)
        s += c.sum(0)
        ss += (c * c).sum(0)
    n = max(x.shape[0], 1)
    mean = s / n
    return mean, np.sqrt(np.clip(ss / n - mean**2, 0, None))


def scatter_matrix(x: np.ndarray, mean: np.ndarray | None = None) -> np.ndarray:
    """The D x D sum of (row - mean)^T (row - mean) in float64 (mean None: rows taken as they are)."""
    out = np.zeros((x.shape[1], x.shape[1]))
    for s in row_chunks(x.shape[0]):
        c = np.asarray(x[s], dtype=np.float64)
        if mean is not None:
            c = c - mean  # not in place: for a float64 input c is a view of it
        out += c.T @ c
    return out


def unit_rows(x: np.ndarray, dtype: type = np.float32) -> np.ndarray:
    """The rows scaled to unit length, as a new array of `dtype` (a zero row stays zero)."""
    out = np.empty(x.shape, dtype=dtype)
    for s in row_chunks(x.shape[0]):
        c = np.asarray(x[s], dtype=dtype)
        out[s] = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    return out
