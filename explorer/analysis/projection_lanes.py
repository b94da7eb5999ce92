"""UMAP of several layers side by side, on both cores (lanes.py), each layout still decided by the seed.

Each layer is the same seeded fit (`project`) wherever it runs, so the layouts are identical to
the sequential ones (a test). The worker imports UMAP, its numba code from the machine's cache
(projection.umap_module), in 2-3 s, which a few layers of fits repay: below LANES_MIN_WORK images x
layers, or with one layer, the layers are projected here one after another."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ..config import ProjectionSpec
from .lanes import Lanes, one_thread, opened, portable
from .neighbors import KnnGraph
from .projection import Projection, project

# images x layers from which a worker projects beside this process: a layer's UMAP takes about
# 0.6 ms an image at 2,000-10,000 images, so 40,000 image-layers are about 25 s of fits, of which a
# lane saves half (the worker's start, about 10 s before numba's code was cached, is now 2-3 s)
LANES_MIN_WORK = 40_000


def _project_there(source: tuple, spec: ProjectionSpec, graph: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """One layer's projection, as arrays (a unit of lanes.Lanes, here or in the worker: on one
    thread in both, lanes.one_thread)."""
    knn = KnnGraph.from_arrays(graph) if graph is not None else None
    with one_thread():
        return project(opened(source), spec, graph=knn).to_arrays()


def project_layers(
    layers: dict[str, tuple[np.ndarray, KnnGraph | None]],
    spec: ProjectionSpec,
    done: Callable[[str, Projection], None] | None = None,
) -> dict[str, Projection]:
    """{name: its projection} of every layer ({name: (features, its kNN graph or None)}), in lanes
    when that pays (module doc), else one after another; `done(name, projection)` is called here,
    on this thread, as each is ready."""
    n = min((len(f) for f, _ in layers.values()), default=0)
    units = {
        name: (_project_there, (portable(features), spec, graph.to_arrays() if graph else None))
        for name, (features, graph) in layers.items()
    }
    worker = spec.method == "umap" and len(layers) >= 2 and n * len(layers) >= LANES_MIN_WORK
    got = Lanes(
        units, worker=worker, done=(lambda name, arrays: done(name, Projection.from_arrays(arrays))) if done else None
    ).finish()
    return {name: Projection.from_arrays(arrays) for name, arrays in got.items()}
