"""PCA / UMAP / t-SNE projections to 2-D or 3-D, with guards for tiny datasets and alignment."""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass

import numpy as np

from .config import ProjectionSpec

log = logging.getLogger(__name__)

UMAP_PCA_DIMS = 50  # UMAP on wide layers first reduces with PCA: same picture, much less time
MIN_POINTS = {"pca": 2, "umap": 10, "tsne": 6}


@dataclass(frozen=True)
class Projection:
    """A projection of one layer.

    Attributes:
        coords: (N, n_components) float32.
        method: the method that produced it (may differ from the one asked for, see message).
        message: why another method was used, or "" when the asked one ran.
    """

    coords: np.ndarray
    method: str
    message: str = ""


def _pca(x: np.ndarray, k: int, random_state: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    n, d = x.shape
    usable = max(min(k, n, d), 1)
    out = np.zeros((n, k), dtype=np.float32)
    if n >= 2:
        out[:, :usable] = PCA(n_components=usable, random_state=random_state).fit_transform(x)[:, :usable]
    return out


def _umap(x: np.ndarray, spec: ProjectionSpec) -> np.ndarray:
    try:
        import numba
        import umap
    except ImportError as exc:  # pragma: no cover - umap-learn is a requirement
        raise ValueError("UMAP needs umap-learn: pip install umap-learn") from exc
    # pynndescent swaps numba's `omp` layer for `workqueue` when TBB is missing, and workqueue aborts
    # the process when two threads run UMAP at once (DESIGN.md); omp is thread-safe and we never fork.
    if numba.config.THREADING_LAYER == "workqueue" and os.environ.get("NUMBA_THREADING_LAYER") == "omp":
        numba.config.THREADING_LAYER = "omp"
    if x.shape[1] > UMAP_PCA_DIMS and x.shape[0] > UMAP_PCA_DIMS:
        x = _pca(x, UMAP_PCA_DIMS, spec.random_state)
    reducer = umap.UMAP(
        n_components=spec.n_components,
        n_neighbors=min(spec.n_neighbors, x.shape[0] - 1),
        min_dist=spec.min_dist,
        random_state=spec.random_state,
        init="spectral" if x.shape[0] > spec.n_components + 1 else "random",
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)  # seeded => 1 thread, as wanted
        return reducer.fit_transform(x)


def _tsne(x: np.ndarray, spec: ProjectionSpec) -> np.ndarray:
    from sklearn.manifold import TSNE

    if x.shape[1] > UMAP_PCA_DIMS and x.shape[0] > UMAP_PCA_DIMS:
        x = _pca(x, UMAP_PCA_DIMS, spec.random_state)
    perplexity = float(min(spec.perplexity, (x.shape[0] - 1) / 3))
    return TSNE(
        n_components=spec.n_components, perplexity=perplexity, init="pca", random_state=spec.random_state
    ).fit_transform(x)


def project(features: np.ndarray, spec: ProjectionSpec) -> Projection:
    """Project one layer's features.

    Args:
        features: (N, D) array (not modified).
        spec: method, components and parameters.

    Returns:
        A Projection; with too few points for the method it falls back to PCA and says so.
    """
    x = np.nan_to_num(np.asarray(features, dtype=np.float32))
    n = x.shape[0]
    method = spec.method
    if method == "none":
        return Projection(np.zeros((n, spec.n_components), np.float32), "none")
    message = ""
    if n < MIN_POINTS[method]:
        message = f"{method.upper()} needs at least {MIN_POINTS[method]} images (got {n}); showing PCA"
        method = "pca"
    if method == "pca":
        coords = _pca(x, spec.n_components, spec.random_state)
    elif method == "umap":
        coords = _umap(x, spec)
    else:
        coords = _tsne(x, spec)
    return Projection(np.asarray(coords, dtype=np.float32), method, message)


def align(reference: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Rotate/reflect, scale and shift `coords` onto `reference` (orthogonal Procrustes).

    Point i keeps its place from panel to panel as far as a rigid motion allows, so the eye can
    follow it; the shape of each projection is unchanged.

    Args:
        reference: (N, k) coordinates to match.
        coords: (N, k) coordinates to move.

    Returns:
        New (N, k) coordinates.
    """
    from scipy.linalg import orthogonal_procrustes

    ref = reference - reference.mean(0)
    cur = coords - coords.mean(0)
    ref_norm, cur_norm = np.linalg.norm(ref), np.linalg.norm(cur)
    if ref_norm == 0 or cur_norm == 0:
        return coords.copy()
    rot, _ = orthogonal_procrustes(cur / cur_norm, ref / ref_norm)
    return ((cur / cur_norm) @ rot * ref_norm + reference.mean(0)).astype(np.float32)


def align_chain(panels: list[np.ndarray]) -> list[np.ndarray]:
    """Align each panel to the one before it, so neighbours in depth look alike."""
    out: list[np.ndarray] = []
    for c in panels:
        out.append(c.copy() if not out else align(out[-1], c))
    return out
