"""PCA / UMAP / t-SNE projections to 2-D or 3-D, with guards for tiny datasets and alignment."""

from __future__ import annotations

import functools
import logging
import threading
import warnings
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from ..config import ProjectionSpec
from ..process_setup import NUMBA_THREADING_LAYER, configured
from .neighbors import KnnGraph, knn_graph

log = logging.getLogger(__name__)

UMAP_PCA_DIMS = 50  # UMAP on wide layers first reduces with PCA: same picture, much less time
MIN_POINTS = {"pca": 2, "umap": 10, "tsne": 6}
UMAP_SPECTRAL_MAX = (
    20_000  # above, UMAP starts from PCA: spectral init took 95 s of a 130 s fit at 100k (docs/benchmarks.md)
)
# the layout optimiser's epochs: umap-learn's own schedule is 500 up to 10,000 images and 200 beyond,
# so a 10,000-image layer cost 2.5 times a 10,001-image one. From UMAP_MID_N up to UMAP_LEARN_500_MAX
# images it runs UMAP_MID_EPOCHS instead of 500, from UMAP_LARGE_N UMAP_LARGE_EPOCHS instead of 200.
# Each kept every layer's neighbourhood preservation within 0.01 of plain umap-learn's on the mean of
# three seeds: 400 at 10,000 images of MobileNetV2's layers lost at most 0.004 against the project's
# 500 (300 lost 0.008: too near the edge), at 5,000 and 2,000 images at most 0.0053 and 0.0056
# against plain umap-learn; 170 at 50,000 images within 0.01 of umap-learn's 200 (150 was not); the
# fit is nearly all the optimiser's epochs (docs/benchmarks.md, "UMAP of 8 layers at 50,000 images",
# "Fifth round" and "Sixth round"). Below UMAP_MID_N (the bundled samples) nothing was measured.
UMAP_LEARN_500_MAX = 10_000  # umap-learn runs 500 epochs up to this many images, 200 beyond
UMAP_MID_N, UMAP_MID_EPOCHS = 2_000, 400
UMAP_LARGE_N, UMAP_LARGE_EPOCHS = 40_000, 170
TSNE_MAX_POINTS = 10_000  # t-SNE (Barnes-Hut, scikit-learn) beyond this takes many minutes per layer on a small machine


def check_size(method: str, n: int) -> None:
    """Refuse a projection that cannot finish in reasonable time on `n` images, naming what can.

    Raises:
        ValueError: t-SNE asked for more than TSNE_MAX_POINTS images.
    """
    if method == "tsne" and n > TSNE_MAX_POINTS:
        raise ValueError(
            f"t-SNE is limited to {TSNE_MAX_POINTS:,} images (this dataset has {n:,}): beyond that it takes many "
            "minutes per layer; use --projection umap (same neighbourhood picture, scales to 100,000s) or pca, "
            "or fewer images with --max-images"
        )


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

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The projection as named arrays, as the store keeps them."""
        return {"coords": self.coords, "method": np.array(self.method), "message": np.array(self.message)}

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> Projection:
        """The projection from the arrays to_arrays made."""
        return cls(a["coords"], str(a["method"]), str(a["message"]))


def _pca(x: np.ndarray, k: int, random_state: int) -> np.ndarray:
    from sklearn.decomposition import PCA

    n, d = x.shape
    usable = max(min(k, n, d), 1)
    out = np.zeros((n, k), dtype=np.float32)
    if n >= 2:
        # from the D x D covariance when N >= D: no N x D copy, and a memory map is read in place
        solver = "covariance_eigh" if n >= d else "full"
        out[:, :usable] = PCA(n_components=usable, svd_solver=solver, random_state=random_state).fit_transform(x)[
            :, :usable
        ]
    return out


# umap_module's first call, once: two threads at once (the dashboard's background compile beside a UMAP
# job) iterated umap's module while the other imported into it ('dictionary changed size during iteration')
_umap_lock = threading.Lock()


@functools.cache
def umap_module() -> ModuleType:
    """umap-learn, its kernels compiled once per machine instead of once per process.

    umap-learn caches only some of its numba functions on disk: the fuzzy simplicial set's and the
    layout optimiser's kernels were compiled afresh in every process, 6.6 s of a 2,000-image fit's
    10.6 s here (docs/benchmarks.md). Turning numba's cache on for them (Dispatcher.enable_caching,
    into NUMBA_CACHE_DIR; process_setup.configure) keeps the machine code of the first compile, keyed
    by numba on the source file, the argument types and the CPU; a kernel numba cannot cache, or a
    cache folder it cannot write, leaves that kernel compiled per process, as before.
    """
    with _umap_lock:
        try:
            import umap
            import umap.layouts
            import umap.umap_
            from numba.core.caching import NullCache
            from numba.core.registry import CPUDispatcher
        except ImportError as exc:  # pragma: no cover - umap-learn is a requirement
            raise ValueError("UMAP needs umap-learn: pip install umap-learn") from exc
        for module in (umap.umap_, umap.layouts):
            for kernel in list(vars(module).values()):
                if isinstance(kernel, CPUDispatcher) and isinstance(kernel._cache, NullCache):
                    try:
                        kernel.enable_caching()
                    except RuntimeError as exc:  # no writable cache folder: compiled in this process only
                        log.debug("numba cannot cache %s: %s", kernel.py_func.__name__, exc)
    return umap


def compile_umap() -> None:
    """Compile UMAP's numba code now (a tiny seeded fit): into numba's cache, once per machine
    (umap_module), and into this process. scripts/setup.sh calls it after installing, so that the
    first analysis does not pay the 18-23 s; the dashboard calls it in the background.

    The fit goes the analysis's way, from a neighbour graph (neighbors.knn_graph): numba compiles a
    kernel once per argument types, and UMAP's own neighbour search hands its kernels other types
    (a first analysis compiled the fuzzy simplicial set's again, 1.9 s)."""
    x = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    project(x, ProjectionSpec(method="umap"), knn_graph(x))


def _umap(x: np.ndarray, spec: ProjectionSpec, graph: KnnGraph | None = None) -> np.ndarray:
    import numba

    umap = umap_module()
    # pynndescent swaps numba's `omp` layer for `workqueue` when TBB is missing, and workqueue aborts
    # the process when two threads run UMAP at once (docs/design.md, "numba"); omp is thread-safe and we never fork.

    if numba.config.THREADING_LAYER == "workqueue" and configured():
        numba.config.THREADING_LAYER = NUMBA_THREADING_LAYER
    n_neighbors = min(spec.n_neighbors, x.shape[0] - 1)
    knn = _umap_knn(graph, n_neighbors)
    if x.shape[1] > UMAP_PCA_DIMS and x.shape[0] > UMAP_PCA_DIMS:
        x = _pca(x, UMAP_PCA_DIMS, spec.random_state)
    a, b = umap_curve(spec.min_dist)
    reducer = umap.UMAP(
        n_components=spec.n_components,
        n_neighbors=n_neighbors,
        min_dist=spec.min_dist,
        a=a,
        b=b,
        random_state=spec.random_state,
        init=_umap_init(x.shape[0], spec.n_components),
        n_epochs=umap_epochs(x.shape[0]),
        metric="cosine",
        precomputed_knn=knn,
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)  # seeded => 1 thread, as wanted
        warnings.filterwarnings(
            "ignore", message=r"precomputed_knn\[2\]", category=UserWarning
        )  # no transform() needed
        return reducer.fit_transform(x)


@functools.cache
def umap_curve(min_dist: float, spread: float = 1.0) -> tuple[np.float32, np.float32]:
    """The a and b of UMAP's low-dimensional similarity 1 / (1 + a d^(2b)): umap-learn's own fit for
    `min_dist` (what UMAP(min_dist=...) would find), as float32.

    umap-learn passes them on as float64, and its numba optimiser then computes every attraction and
    repulsion with a double-precision pow on float32 distances; given float32, numba compiles the
    same loop with single-precision pow: 21 % less of a 50,000-image layer's fit (12.9 s against
    16.3 s for 170 epochs), with the neighbourhood preservation unchanged (docs/benchmarks.md,
    "Eighth round")."""
    a, b = umap_module().umap_.find_ab_params(spread, min_dist)
    return np.float32(a), np.float32(b)


def umap_epochs(n: int) -> int | None:
    """The layout optimiser's epochs for `n` images (see UMAP_MID_N): None is umap-learn's own."""
    if n >= UMAP_LARGE_N:
        return UMAP_LARGE_EPOCHS
    if UMAP_MID_N <= n <= UMAP_LEARN_500_MAX:
        return UMAP_MID_EPOCHS
    return None


def _umap_init(n: int, n_components: int) -> str:
    """UMAP's starting layout: spectral (its default) up to UMAP_SPECTRAL_MAX points, PCA beyond
    (an informative start that is 3x faster to reach at 100k), random for a handful of points."""
    if n <= n_components + 1:
        return "random"
    return "spectral" if n <= UMAP_SPECTRAL_MAX else "pca"


def _umap_knn(graph: KnnGraph | None, n_neighbors: int) -> tuple:
    """UMAP's precomputed_knn from the layer's graph: each image first (itself, at distance 0),
    then its n_neighbors - 1 nearest others; (None, None, None) when the graph is too small."""
    if graph is None or graph.k < n_neighbors - 1:
        return (None, None, None)
    n = graph.indices.shape[0]
    idx = np.empty((n, n_neighbors), dtype=np.int64)
    dist = np.empty((n, n_neighbors), dtype=np.float32)
    idx[:, 0], dist[:, 0] = np.arange(n), 0.0
    idx[:, 1:], dist[:, 1:] = graph.indices[:, : n_neighbors - 1], graph.distances[:, : n_neighbors - 1]
    return (idx, dist, None)


def _tsne(x: np.ndarray, spec: ProjectionSpec) -> np.ndarray:
    from sklearn.manifold import TSNE

    if x.shape[1] > UMAP_PCA_DIMS and x.shape[0] > UMAP_PCA_DIMS:
        x = _pca(x, UMAP_PCA_DIMS, spec.random_state)
    perplexity = float(min(spec.perplexity, (x.shape[0] - 1) / 3))
    return TSNE(
        n_components=spec.n_components, perplexity=perplexity, init="pca", random_state=spec.random_state
    ).fit_transform(x)


def project(features: np.ndarray, spec: ProjectionSpec, graph: KnnGraph | None = None) -> Projection:
    """Project one layer's features.

    Args:
        features: (N, D) array or memory map (not modified).
        spec: method, components and parameters.
        graph: the layer's cosine kNN graph, which UMAP then reuses instead of searching again.

    Returns:
        A Projection; with too few points for the method it falls back to PCA and says so.
    """
    x = features if features.dtype == np.float32 else np.asarray(features, dtype=np.float32)
    n = x.shape[0]
    method = spec.method
    check_size(method, n)
    if method == "none":
        return Projection(np.zeros((n, spec.n_components), np.float32), "none")
    message = ""
    if n < MIN_POINTS[method]:
        message = f"{method.upper()} needs at least {MIN_POINTS[method]} images (got {n}); showing PCA"
        method = "pca"
    if method == "pca":
        coords = _pca(x, spec.n_components, spec.random_state)
    elif method == "umap":
        coords = _umap(x, spec, graph)
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


if __name__ == "__main__":  # scripts/setup.sh: python -m explorer.analysis.projection
    from ..process_setup import configure

    configure()
    compile_umap()
