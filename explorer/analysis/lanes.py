"""Units of work run on both cores: this process and one worker process take them from one queue.

Much of the analysis runs on one thread: seeded UMAP (umap-learn forces one thread so that the seed
decides the picture, and holds the GIL), the probe's L-BFGS loop and the many small matrix
products of a 2,000-image layer. A second thread gains nothing, so a second *process* does: a
worker, spawned (never forked: numba's threads), takes a unit while this process takes the next,
each unit the same function call it would be here, so the results are the same wherever a unit
ran (the tests check it to the last bit). A unit's arguments reach the worker pickled: a memory
map goes as its file, offset and shape (`portable`), opened there, not copied through the pipe.

One lane only (`lanes()`): one core, or a child process (a demo job's, bounded in memory and CPU;
a lane's worker), where everything runs here one unit after another.
"""

from __future__ import annotations

import collections
import contextlib
import importlib
import logging
import multiprocessing
import os
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ..config import settings
from ..process_setup import without_main

log = logging.getLogger(__name__)
LANES = 2  # this process and one worker
WORKER_WAITING = 1  # units queued in the worker beyond the one it runs (_worker_lane)

Unit = tuple[Callable[..., Any], tuple]  # a module-level function (picklable) and its arguments


def lanes() -> int:
    """How many units can run at once here: LANES in a program's own process with two cores per
    analysis (EXPLORER_WORKERS analyses at once share them), unless EXPLORER_LANES=0; else 1. A
    child process (a demo job's, bounded in memory and CPU; a lane's worker) starts no worker of
    its own."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    given = settings()
    own = multiprocessing.parent_process() is None
    return LANES if cpus // given.workers >= 2 and own and given.lanes else 1


def portable(x: np.ndarray) -> tuple:
    """How a worker gets an array: a memory map's file, offset and shape (opened there, not copied
    through the pipe), or the array itself."""
    if isinstance(x, np.memmap) and x.filename and x.base is not None and x.flags.c_contiguous:
        return ("map", str(x.filename), int(x.offset), tuple(x.shape), x.dtype.str)
    return ("array", np.asarray(x))


def opened(source: tuple) -> np.ndarray:
    """The array `portable` describes (a read-only memory map, or the array sent)."""
    if source[0] == "map":
        _, filename, offset, shape, dtype = source
        return np.memmap(filename, dtype=np.dtype(dtype), mode="r", offset=offset, shape=shape)
    return source[1]


# the libraries whose thread pools a layer's results use besides numpy's BLAS: scipy's own OpenBLAS
# (its linear algebra, scikit-learn's PCA), faiss's OpenMP and OpenBLAS (the neighbour graphs)
THREAD_POOL_MODULES = ("scipy.linalg", "faiss")


def one_thread() -> threadpool_limits:
    """One thread for BLAS and OpenMP (faiss) while a layer's own results are computed, in
    whichever process computes them: the number of threads changes a sum's rounding, and a layer's
    numbers must not depend on whether the worker of lanes.py computed it (layer_lanes.py) or this
    process did (two lanes keep both cores busy instead).

    threadpoolctl limits the libraries loaded when it is called: one first loaded inside the limit
    (a fresh process's first graph imports faiss) ran on every core, so a process's first layer got
    other rounding than the next. THREAD_POOL_MODULES are imported first (a look-up once they are)."""
    for name in THREAD_POOL_MODULES:
        with contextlib.suppress(ImportError):  # an optional library: the unit that needs it says so
            importlib.import_module(name)
    return threadpool_limits(limits=1)


_stopped: Any = None  # in the worker: the Event its Lanes sets on stop() (_worker_started)


def _worker_started(stopped: Any) -> None:
    """The worker's initializer: keep the Event that says its Lanes stopped."""
    global _stopped
    _stopped = stopped


def _in_worker(function: Callable[..., Any], args: tuple) -> Any:
    """A unit, in the worker: the process set up as a program's (malloc, numba), on one thread
    (the other core is this process's); nothing once its Lanes stopped (a unit that was waiting in
    the worker's queue: its result would be dropped)."""
    if _stopped is not None and _stopped.is_set():
        return None
    from ..process_setup import configure

    configure()
    with one_thread():
        return function(*args)


class Lanes:
    """Units of work ({name: (function, args)}) run here and, with `worker`, in a worker process
    started at once, or with `start_after` once a unit run here has taken longer than that many
    seconds (so that units whose results are already stored, read back in a moment, start no
    process). The worker takes units from the front of the queue while this process does other
    work (one more waiting in its own queue, WORKER_WAITING), and `finish()` has this process take
    the units still waiting, beside it. Units run here get the keyword arguments `here` besides
    their own (a progress reporter that hears a Stop, say, which cannot go to another process).
    `stop()` (or leaving a `with` block on an error) lets the worker finish the unit it runs, skip
    the one waiting and take no other.

    `after` ({unit: the unit it waits for}) holds a unit back until another is done (one that reads
    what the other stores), and `finish(names)` returns once those units are done while the worker
    goes on with the queue: a first view's units, say, whose later units the worker starts while
    this process shows it; `finish()` then does the rest. While the worker runs the last of
    `names`, this process takes units from the back of the queue (the smallest, as units are
    queued largest first).

    A worker that dies (out of memory, say) gives its units back, and this process runs them. The
    worker's error is raised here, by finish().
    """

    def __init__(
        self,
        units: dict[str, Unit],
        *,
        worker: bool,
        done: Callable[[str, Any], None] | None = None,
        start_after: float = 0.0,
        here: dict[str, Any] | None = None,
        after: dict[str, str] | None = None,
    ) -> None:
        self._units, self._done, self._here_kwargs = units, done, here or {}
        self._after = after or {}
        if not set(self._after.values()) <= set(units):
            raise ValueError(f"units wait for units not given: {set(self._after.values()) - set(units)}")
        self._may_start = worker and bool(units) and lanes() >= 2
        self._start_after = start_after
        self._queue = collections.deque(units)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a unit done, given back or failed; the queue cleared
        self._finished: set[str] = set()
        self._out: dict[str, Any] = {}  # every unit's result, reported (finish)
        self._theirs: dict[str, Any] = {}
        self._failed: list[BaseException] = []
        self._pool: ProcessPoolExecutor | None = None
        self._stopped: Any = None  # set on stop(): the worker skips a unit waiting in its queue
        self._helper: threading.Thread | None = None
        if self._may_start and start_after <= 0:
            self._start_worker()

    def _start_worker(self) -> None:
        with self._lock:
            if not self._may_start or not self._queue:
                return
            self._may_start = False
            spawn = multiprocessing.get_context("spawn")
            self._stopped = spawn.Event()
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=spawn, initializer=_worker_started, initargs=(self._stopped,)
            )
            self._helper = threading.Thread(
                target=self._worker_lane, args=(self._pool,), name="explorer-lane", daemon=True
            )
            self._helper.start()

    @property
    def in_background(self) -> bool:
        """Whether a worker process is running units beside this one."""
        return self._pool is not None

    def __enter__(self) -> Lanes:
        return self

    def __exit__(self, kind: object, *exc: object) -> None:
        if kind is not None:
            self.stop()

    def _take(self, among: set[str] | None = None, last: bool = False, spare: bool = False) -> str | None:
        """The first unit in the queue (of `among`; `last`: the last) not waiting for one still to be
        done; with `spare` (a unit to wait in the worker's queue) only while another is left for
        this process: the queue's last unit waiting behind the worker's while this process had
        none made a run of equal units end a unit late (a worker ready at once took 5 of 8 UMAP
        layers of 50,000 images: 81 s instead of 65)."""
        with self._lock:
            if spare and len(self._queue) < 2:
                return None
            return self._pick(among, last)

    def _pick(self, among: set[str] | None, last: bool) -> str | None:
        """_take, under the lock."""
        order = range(len(self._queue) - 1, -1, -1) if last else range(len(self._queue))
        for i in order:
            name = self._queue[i]
            waits_for = self._after.get(name)
            if (among is None or name in among) and (waits_for is None or waits_for in self._finished):
                del self._queue[i]
                return name
        return None

    def _mark(self, name: str | None = None, failed: BaseException | None = None) -> None:
        """A unit done (or the worker failed): wake whoever waits for it."""
        with self._changed:
            if name is not None:
                self._finished.add(name)
            if failed is not None:
                self._failed.append(failed)
            self._changed.notify_all()

    def _worker_lane(self, pool: ProcessPoolExecutor) -> None:
        """Feed the worker: WORKER_WAITING units beyond the one it runs wait in its queue, so that it
        starts the next at once (handing it over here needs this process's GIL, which a numba loop
        here, UMAP's optimiser, holds for an epoch at a time: 0.7-0.9 s between a worker's layers at
        50,000 images)."""
        sent: collections.deque[tuple[str, Any]] = collections.deque()  # (name, its future), oldest first
        first = True
        while True:
            while (
                len(sent) <= WORKER_WAITING and not self._failed and (name := self._take(spare=bool(sent))) is not None
            ):
                function, args = self._units[name]
                try:
                    if first:  # the worker is spawned now: without this process's __main__ (a Streamlit page)
                        with without_main():
                            sent.append((name, pool.submit(_in_worker, function, args)))
                        first = False
                    else:
                        sent.append((name, pool.submit(_in_worker, function, args)))
                except Exception as exc:  # noqa: BLE001 - no worker: this process runs the units itself
                    log.warning("no worker process could start (%s); running its units here", exc)
                    self._give_back([name, *(n for n, _ in sent)])
                    return
            if not sent:
                with self._changed:
                    if not self._queue or self._failed:
                        return
                    self._changed.wait(1.0)  # the units left wait for units this process runs
                continue
            name, future = sent.popleft()
            try:
                self._theirs[name] = future.result()
                self._mark(name)
            except BrokenProcessPool as exc:  # the worker died (memory): this process takes its units back
                log.warning("the worker process stopped (%s); running its units here", exc)
                self._give_back([name, *(n for n, _ in sent)])
                return
            except BaseException as exc:  # its error is the run's: raised on this process's thread
                self._mark(failed=exc)
                return

    def _give_back(self, names: list[str]) -> None:
        """Units the worker will not finish, back to the front of the queue, in their order."""
        with self._changed:
            self._queue.extendleft(reversed(names))
            self._changed.notify_all()

    def stop(self) -> None:
        """Take no more units: the worker finishes the one it runs (its result is dropped), skips
        the one waiting, and exits."""
        with self._changed:
            self._queue.clear()
            self._may_start = False
            self._changed.notify_all()
        if self._stopped is not None:
            self._stopped.set()
        self._close()

    def _close(self) -> None:
        if self._helper is not None:
            self._helper.join()
            self._helper = None
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _here(self, name: str, out: dict[str, Any]) -> None:
        function, args = self._units[name]
        # a unit still running after start_after is real work, not a stored result read back
        timer = threading.Timer(self._start_after, self._start_worker) if self._may_start else None
        if timer is not None:
            timer.daemon = True
            timer.start()
        try:
            out[name] = function(*args, **self._here_kwargs)
        finally:
            if timer is not None:
                timer.cancel()
                timer.join()
        self._mark(name)
        if self._done:
            self._done(name, out[name])
        self._report_theirs(out)

    def _report_theirs(self, out: dict[str, Any]) -> None:
        """The worker's results that came in since, reported on this thread."""
        for name in [n for n in list(self._theirs) if n not in out]:
            out[name] = self._theirs[name]
            if self._done:
                self._done(name, out[name])

    def finish(self, names: list[str] | None = None) -> dict[str, Any]:
        """{name: its result} of every unit (or of `names`, and the units they wait for), in the
        order given; `done(name, result)` is called here, on this thread, as each is ready (the
        worker's when this thread is next free). With `names` it returns once they are done, the
        worker going on with the units left; a later finish() does those.

        Raises:
            the worker's error, or this process's (the worker then takes no other unit).
        """
        wanted = list(self._units) if names is None else list(names)
        out = self._out
        try:
            self._run_here(set(wanted), out, until_done=names is not None)
        except BaseException:  # stopped or failed here: the worker finishes its unit and takes no other
            self.stop()
            raise
        if names is None:
            self._close()
            # a unit the worker gave back when it stopped
            while not self._failed and (name := self._take()) is not None:
                self._here(name, out)
        if self._failed:
            raise self._failed[0]
        self._report_theirs(out)
        return {name: out[name] for name in wanted}

    def _run_here(self, wanted: set[str], out: dict[str, Any], until_done: bool) -> None:
        """Take the wanted units from the queue until none is left there (`until_done`: and the
        worker's are done too; meanwhile this process takes the other units from the back of the
        queue, the smallest, so that the wanted ones' end is put off by a small unit at most);
        wait while those left wait for units the worker runs."""
        while True:
            while not self._failed and (name := self._take(wanted)) is not None:
                self._here(name, out)
            with self._changed:
                if self._failed:
                    return
                left = any(n in wanted for n in self._queue)
                if not left and (not until_done or wanted <= self._finished):
                    return
                smallest = None if left else self._pick(None, last=True)
                if smallest is None:
                    self._changed.wait(1.0)
                    continue
            self._here(smallest, out)
