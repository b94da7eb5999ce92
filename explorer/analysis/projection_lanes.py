"""UMAP of several layers side by side, on both cores, each layout still decided by the seed.

Seeded, umap-learn optimises a layout on one thread (it forces n_jobs=1 with a random_state, so
that the seed decides the picture) and holds the GIL while it does: a second thread gains
nothing. So a second *process* takes a share of the layers: this process projects one layer while
a worker process projects the next, each with the same seeded fit it would get one after another
(`project`), so the layouts are identical to the sequential ones (a test). The worker is spawned
(never forked: numba's threads), opens a cached layer's features from its file instead of
receiving a copy, and compiles UMAP's numba code once (about 10 s): below LANES_MIN_WORK images x
layers, or with one layer to project, one core, or in a child process (a demo job's: its memory and CPU
are bounded), the layers are projected here one after another."""

from __future__ import annotations

import collections
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from ..config import ProjectionSpec
from .neighbors import KnnGraph
from .projection import Projection, project

log = logging.getLogger(__name__)
# images x layers below which the worker's start and UMAP compile (about 10 s) cost more than its
# share saves: a layer's UMAP takes about 0.6 ms an image at 2,000-10,000 images on 2 cores (less
# beyond), so 40,000 image-layers are about 25 s of fits, of which a lane saves half
LANES_MIN_WORK = 40_000
LANES = 2  # this process and one worker: UMAP's seeded optimisation is single-threaded


def lanes() -> int:
    """How many layers can be projected at once here: LANES in a program's own process with two
    cores, else 1. A child process (a demo job's, bounded in memory and CPU; a lane's worker)
    starts no worker of its own."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return LANES if cpus >= 2 and multiprocessing.parent_process() is None else 1


def _portable(x: np.ndarray) -> tuple:
    """How the worker gets a layer's features: a memory map's file, offset and shape (opened
    there, not copied through the pipe), or the array itself."""
    if isinstance(x, np.memmap) and x.filename and x.base is not None and x.flags.c_contiguous:
        return ("map", str(x.filename), int(x.offset), tuple(x.shape), x.dtype.str)
    return ("array", np.asarray(x))


def _opened(source: tuple) -> np.ndarray:
    if source[0] == "map":
        _, filename, offset, shape, dtype = source
        return np.memmap(filename, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape)
    return source[1]


def _project_there(source: tuple, spec: ProjectionSpec, graph: dict[str, np.ndarray] | None) -> dict[str, np.ndarray]:
    """In the worker: one layer's projection, as arrays."""
    from ..process_setup import configure

    configure()
    knn = KnnGraph.from_arrays(graph) if graph is not None else None
    return project(_opened(source), spec, graph=knn).to_arrays()


def project_layers(
    layers: dict[str, tuple[np.ndarray, KnnGraph | None]],
    spec: ProjectionSpec,
    done: Callable[[str, Projection], None] | None = None,
) -> dict[str, Projection]:
    """{name: its projection} of every layer ({name: (features, its kNN graph or None)}), in lanes
    when that pays (module doc), else one after another; `done(name, projection)` is called here,
    on this thread, as each is ready."""
    names = list(layers)
    n = min((len(f) for f, _ in layers.values()), default=0)
    out: dict[str, Projection] = {}

    def here(name: str) -> None:
        features, graph = layers[name]
        out[name] = project(features, spec, graph=graph)
        if done:
            done(name, out[name])

    if spec.method != "umap" or len(names) < 2 or n * len(names) < LANES_MIN_WORK or lanes() < 2:
        for name in names:
            here(name)
        return out
    queue = collections.deque(names)
    lock = threading.Lock()
    theirs: dict[str, Projection] = {}
    failed: list[BaseException] = []

    def take() -> str | None:
        with lock:
            return queue.popleft() if queue else None

    def worker_lane(pool: ProcessPoolExecutor) -> None:
        while not failed and (name := take()) is not None:
            features, graph = layers[name]
            try:
                got = pool.submit(_project_there, _portable(features), spec, graph.to_arrays() if graph else None)
                theirs[name] = Projection.from_arrays(got.result())
            except BrokenProcessPool as exc:  # the worker died (memory): this process takes its layer back
                log.warning("the UMAP worker process stopped (%s); projecting its layers here", exc)
                with lock:
                    queue.appendleft(name)
                return
            except BaseException as exc:  # its error is the run's: raised on this process's thread
                failed.append(exc)
                return

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        helper = threading.Thread(target=worker_lane, args=(pool,), name="umap-lane", daemon=True)
        helper.start()
        try:
            while not failed and (name := take()) is not None:
                here(name)
        except BaseException:  # stopped or failed here: the worker finishes its layer and takes no other
            with lock:
                queue.clear()
            raise
        finally:
            helper.join()
        while not failed and (name := take()) is not None:  # a layer the worker gave back when it stopped
            here(name)
    if failed:
        raise failed[0]
    for name in names:  # the worker's, reported once this thread is free
        if name in theirs:
            out[name] = theirs[name]
            if done:
                done(name, out[name])
    return {name: out[name] for name in names}
