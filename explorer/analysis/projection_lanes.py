"""UMAP of several layers side by side, on both cores, each layout still decided by the seed.

Seeded, umap-learn optimises a layout on one thread (it forces n_jobs=1 with a random_state, so
that the seed decides the picture) and holds the GIL while it does: a second thread gains
nothing. So a second *process* takes a share of the layers: this process projects one layer while
a worker process projects the next, each with the same seeded fit it would get one after another
(`project`), so the layouts are identical to the sequential ones (a test). The worker is spawned
(never forked: numba's threads), opens a cached layer's features from its file instead of
receiving a copy, and imports UMAP (its numba code from the machine's cache, projection.umap_module:
2-3 s). Started in the background (ProjectionLanes), it projects while this process does the rest
of the analysis, which leaves the second core mostly idle. Below LANES_MIN_WORK images x layers
(BACKGROUND_MIN_WORK in the background), or with one lane (one core, or a child process: a demo
job's, bounded in memory and CPU), the layers are projected here one after another."""

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
# ... and in the background (ProjectionLanes(background=True)), where the worker's start overlaps this
# process's other analysis: from about 5 s of fits (a 2,000-image run's 8 layers are about 12 s)
BACKGROUND_MIN_WORK = 8_000
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


class ProjectionLanes:
    """The projections of several layers, on both cores where that pays, begun now and finished
    later: with `background`, the worker starts at once and projects layers while this process does
    other work (its start and UMAP's import then cost nothing on the wall clock: the rest of the
    analysis leaves the second core mostly idle), and `finish()` has this process take the layers
    still waiting, beside the worker, as project_layers does. `stop()` (or leaving a `with` block on
    an error) lets the worker finish its layer and take no other.

    Layers go to the worker from BACKGROUND_MIN_WORK images x layers in the background, from
    LANES_MIN_WORK otherwise (module doc); below, or with one lane, `finish()` projects them all here.
    """

    def __init__(
        self,
        layers: dict[str, tuple[np.ndarray, KnnGraph | None]],
        spec: ProjectionSpec,
        done: Callable[[str, Projection], None] | None = None,
        *,
        background: bool = False,
    ) -> None:
        self._layers, self._spec, self._done = layers, spec, done
        self._queue = collections.deque(layers)
        self._lock = threading.Lock()
        self._theirs: dict[str, Projection] = {}
        self._failed: list[BaseException] = []
        self._pool: ProcessPoolExecutor | None = None
        self._helper: threading.Thread | None = None
        n = min((len(f) for f, _ in layers.values()), default=0)
        least = BACKGROUND_MIN_WORK if background else LANES_MIN_WORK
        enough = len(layers) >= (1 if background else 2) and n * len(layers) >= least
        if spec.method == "umap" and enough and lanes() >= 2:
            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
            self._helper = threading.Thread(target=self._worker_lane, name="umap-lane", daemon=True)
            self._helper.start()

    def __enter__(self) -> ProjectionLanes:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is not None:
            self.stop()

    def _take(self) -> str | None:
        with self._lock:
            return self._queue.popleft() if self._queue else None

    def _worker_lane(self) -> None:
        assert self._pool is not None
        while not self._failed and (name := self._take()) is not None:
            features, graph = self._layers[name]
            try:
                got = self._pool.submit(
                    _project_there, _portable(features), self._spec, graph.to_arrays() if graph else None
                )
                self._theirs[name] = Projection.from_arrays(got.result())
            except BrokenProcessPool as exc:  # the worker died (memory): this process takes its layer back
                log.warning("the UMAP worker process stopped (%s); projecting its layers here", exc)
                with self._lock:
                    self._queue.appendleft(name)
                return
            except BaseException as exc:  # its error is the run's: raised on this process's thread
                self._failed.append(exc)
                return

    def stop(self) -> None:
        """Take no more layers: the worker finishes the one it has (its result is dropped) and exits."""
        with self._lock:
            self._queue.clear()
        self._close()

    def _close(self) -> None:
        if self._helper is not None:
            self._helper.join()
            self._helper = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def finish(self) -> dict[str, Projection]:
        """{name: its projection} of every layer, in the order given; `done(name, projection)` is
        called here, on this thread, as each is ready (the worker's once this thread is free).

        Raises:
            the worker's error, or this process's (the worker then takes no other layer).
        """
        out: dict[str, Projection] = {}
        try:
            while not self._failed and (name := self._take()) is not None:
                features, graph = self._layers[name]
                out[name] = project(features, self._spec, graph=graph)
                if self._done:
                    self._done(name, out[name])
        except BaseException:  # stopped or failed here: the worker finishes its layer and takes no other
            self.stop()
            raise
        self._close()
        while not self._failed and (name := self._take()) is not None:  # a layer the worker gave back when it stopped
            features, graph = self._layers[name]
            out[name] = project(features, self._spec, graph=graph)
            if self._done:
                self._done(name, out[name])
        if self._failed:
            raise self._failed[0]
        for name, got in self._theirs.items():
            out[name] = got
            if self._done:
                self._done(name, got)
        return {name: out[name] for name in self._layers}


def project_layers(
    layers: dict[str, tuple[np.ndarray, KnnGraph | None]],
    spec: ProjectionSpec,
    done: Callable[[str, Projection], None] | None = None,
) -> dict[str, Projection]:
    """{name: its projection} of every layer ({name: (features, its kNN graph or None)}), in lanes
    when that pays (module doc), else one after another; `done(name, projection)` is called here,
    on this thread, as each is ready."""
    return ProjectionLanes(layers, spec, done).finish()
