"""The process-wide bounded job queue of the dashboard (plain module objects, not st.cache entries).

One or two worker threads run heavy work (extraction, UMAP, metrics) off the script thread; each
session may have one active job; a full queue answers "busy" instead of piling up work. The queue
keeps a job only until its session takes the result (`take`), or for `ttl` seconds after it ends
when nobody does (a visitor who left): results live in their session, not in the process.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..process_setup import release_free_memory, size_threads
from ..progress import Cancelled
from . import job_process
from .job_process import JobDied, JobOutOfMemory

log = logging.getLogger(__name__)

FRIENDLY_ERROR = "Something went wrong while analysing this dataset; the details are in the server log."


class QueueFull(RuntimeError):
    """The queue holds as many jobs as it may; the visitor should try again shortly."""


class AlreadyRunning(RuntimeError):
    """This session already has a job queued or running."""


@dataclass
class Job:
    """A unit of heavy work and what the page shows about it."""

    id: int
    session: str
    fn: Callable[[Job], Any] | None
    state: str = "queued"  # queued | running | done | failed | cancelled
    stage: str = "waiting for a worker"
    done: int = 0
    total: int = 0
    result: Any = None
    error: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)
    submitted: float = field(default_factory=time.time)
    finished: float | None = None
    cleanup: Callable[[], None] | None = None  # run once when the job ends, however it ends
    deadline: float | None = None  # time.monotonic() past which should_stop() stops it
    client: str | None = None  # the visitor's address, when known
    timed_out: bool = False
    finish: Callable[[Any], Any] | None = None  # what the worker makes of fn's result, on the server's side
    isolated: bool = False  # fn runs in a process of its own (job_process.py)
    early: Any = None  # a first result to show while the job goes on (show_early), until its session takes it

    def show_early(self, value: Any) -> None:
        """Offer `value`, made into what the page shows as the result will be (`finish`), to the
        session while the job goes on: an analysis's first view (run.run_analysis's `first_view`)."""
        self.early = self.finish(value) if self.finish is not None else value

    def release(self) -> None:
        """Run the cleanup (delete the job's upload, say), once; a failure is logged, not raised."""
        cleanup, self.cleanup = self.cleanup, None
        if cleanup is not None:
            try:
                cleanup()
            except Exception:
                log.exception("job %d: cleanup failed", self.id)

    def progress(self, stage: str, done: int, total: int) -> None:
        self.stage, self.done, self.total = stage, done, total

    def should_stop(self) -> bool:
        """Whether the job should stop: cancelled, or past its deadline (which cancels it)."""
        if self.deadline is not None and not self.cancel.is_set() and time.monotonic() > self.deadline:
            self.timed_out = True
            self.cancel.set()
        return self.cancel.is_set()

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


class JobQueue:
    """A bounded FIFO of jobs served by a fixed number of daemon worker threads.

    Args:
        workers: worker threads (1-2: torch already uses every core within a job).
        max_pending: most jobs waiting (not running) at once.
    """

    def __init__(
        self,
        workers: int = 1,
        max_pending: int = 8,
        threads_per_worker: int | None = None,
        ttl: float = 600.0,
        max_seconds: float | None = None,
        max_per_client: int | None = None,
        max_job_bytes: int | None = None,
    ) -> None:
        self.max_pending = max_pending
        self.max_job_bytes = max_job_bytes  # an isolated job's memory beyond its process's start
        self.max_per_client = max_per_client
        self.ttl = ttl
        self.max_seconds = max_seconds
        self._swept = time.monotonic()
        self.threads_per_worker = threads_per_worker
        self._pending: deque[Job] = deque()
        self._by_session: dict[str, Job] = {}
        self._lock = threading.Condition()
        self._ids = itertools.count(1)
        self._running = 0
        self._threads = [
            threading.Thread(target=self._work, name=f"explorer-worker-{i}", daemon=True) for i in range(workers)
        ]
        for t in self._threads:
            t.start()

    def submit(
        self,
        session: str,
        fn: Callable[[Job], Any],
        cleanup: Callable[[], None] | None = None,
        client: str | None = None,
        finish: Callable[[Any], Any] | None = None,
        isolated: bool = False,
    ) -> Job:
        """Queue `fn(job)` for a session; `cleanup()` runs when the job ends (done, failed, cancelled
        while waiting or running). When the job is refused, the caller keeps the cleanup. `client`
        (the visitor's key, ui/proxy.visitor_key) may have at most `max_per_client` jobs waiting or
        running over all its sessions: sessions are free to open. `isolated`: `fn` (picklable) runs
        in a process of its own, killed at the deadline or on cancel whatever it is doing, its memory
        bounded by `max_job_bytes` (job_process.py); `finish(result)` then runs on the worker thread.

        Raises:
            AlreadyRunning: the session, or the client, has as many active jobs as it may.
            QueueFull: max_pending jobs are already waiting.
        """
        with self._lock:
            self._sweep()
            current = self._by_session.get(session)
            if current is not None and current.active:
                raise AlreadyRunning("your previous analysis is still running")
            if client is not None and self.max_per_client is not None:
                mine = sum(1 for j in self._by_session.values() if j.client == client and j.active)
                if mine >= self.max_per_client:
                    raise AlreadyRunning(
                        f"{mine} analyses from your address are waiting or running, the most this "
                        "server takes from one visitor; wait for one to finish"
                    )
            if len(self._pending) >= self.max_pending:
                raise QueueFull("the server is busy; please try again in a minute")
            job = Job(next(self._ids), session, fn, cleanup=cleanup, client=client, finish=finish, isolated=isolated)
            self._pending.append(job)
            self._by_session[session] = job
            self._lock.notify()
            log.info("job %d (session %s): queued, %d waiting", job.id, session[:8], len(self._pending))
            return job

    def job_of(self, session: str) -> Job | None:
        """The latest job of a session (until it is taken or expires)."""
        with self._lock:
            if time.monotonic() - self._swept > min(self.ttl, 30.0):
                self._sweep()
            return self._by_session.get(session)

    def take_early(self, job: Job) -> Any:
        """A running job's first result (Job.show_early), handed to its session once; None when
        there is none, or the job has ended (its whole result is then the one to take)."""
        with self._lock:
            if not job.active:
                return None
            early, job.early = job.early, None
            return early

    def take(self, job: Job) -> Any:
        """A finished job's result, handed to its session and forgotten here."""
        with self._lock:
            if self._by_session.get(job.session) is job and not job.active:
                del self._by_session[job.session]
            result, job.result = job.result, None
            log.info("job %d: %s, taken by its session", job.id, job.state)
            return result

    def sessions(self) -> int:
        """How many sessions the queue holds a job for."""
        with self._lock:
            return len(self._by_session)

    def _sweep(self) -> None:
        """Forget finished jobs nobody took within `ttl` seconds (called with the lock held)."""
        self._swept = time.monotonic()
        cutoff = time.time() - self.ttl
        for session, job in list(self._by_session.items()):
            if not job.active and job.finished is not None and job.finished < cutoff:
                del self._by_session[session]
                log.info(
                    "job %d (session %s): %s, not taken within %.0f s: forgotten",
                    job.id,
                    session[:8],
                    job.state,
                    self.ttl,
                )

    def position(self, job: Job) -> int:
        """1-based place among waiting jobs (0 when running or finished)."""
        with self._lock:
            for i, j in enumerate(self._pending):
                if j is job:
                    return i + 1
        return 0

    def pending(self) -> int:
        with self._lock:
            return len(self._pending)

    def has_free_worker(self) -> bool:
        """A worker is not busy (a job at position 1 starts at once)."""
        with self._lock:
            return self._running < len(self._threads)

    def idle(self) -> bool:
        """No job waiting or running."""
        with self._lock:
            return not self._pending and self._running == 0

    def cancel(self, job: Job) -> None:
        """Cancel a waiting job at once, or ask a running one to stop after its batch."""
        job.cancel.set()
        with self._lock:
            if job not in self._pending:
                return
            self._pending.remove(job)
            job.state, job.finished, job.fn = "cancelled", time.time(), None
        job.release()

    def _work(self) -> None:
        if self.threads_per_worker:
            try:
                size_threads(self.threads_per_worker)
            except Exception:  # sizing is an optimisation; the worker must live on
                log.exception("could not size the worker's thread pools")
        while True:  # a worker outlives anything a job raises, BaseException included
            with self._lock:
                while not self._pending:
                    self._lock.wait()
                job = self._pending.popleft()
                job.state = "running"
                if self.max_seconds is not None:
                    job.deadline = time.monotonic() + self.max_seconds
                self._running += 1
            try:
                self._run(job)
            except BaseException:  # noqa: BLE001  (the outcome is published; nothing may end this thread)
                log.exception("worker: job %d ended abnormally", job.id)

    def _run(self, job: Job) -> None:
        """Run one job, then publish its outcome at once: error text and result before the state
        that tells a reader to look at them, all under the lock."""
        result, error = None, ""
        try:
            if job.isolated:
                result = job_process.run(job, job.fn, self.max_job_bytes)  # type: ignore[arg-type]
            else:
                result = job.fn(job)  # type: ignore[misc]
            if job.finish is not None:
                result = job.finish(result)
            state = "done"
        except BaseException as exc:  # noqa: BLE001  every failure reaches the visitor as one sentence
            state, error = self._failure(job, exc)
        finally:
            job.fn = job.finish = job.early = None  # the closure holds the request: not past the job
            job.release()
        finished = time.time()
        with self._lock:
            job.result, job.error, job.finished, job.state = result, error, finished, state
            self._running -= 1
        log.info("job %d: %s in %.1f s", job.id, state, finished - job.submitted)
        release_free_memory()  # the heap would keep this job's peak (process_setup.py)

    def _failure(self, job: Job, exc: BaseException) -> tuple[str, str]:
        """(state, one sentence for the visitor) of a job that raised `exc`."""

        if isinstance(exc, Cancelled) and job.timed_out:
            log.info("job %d: stopped after %.0f s", job.id, self.max_seconds or 0)
            limit = self.max_seconds or 0
            said = f"{limit / 60:.0f} minutes" if limit >= 120 else f"{limit:.0f} seconds"
            return "failed", (
                f"This analysis ran past this server's limit of {said} and was stopped; try fewer images, "
                "fewer layers or a smaller model"
            )
        if isinstance(exc, Cancelled):
            return "cancelled", "cancelled"

        if isinstance(exc, JobOutOfMemory):
            log.warning("job %d: out of its memory (%s)", job.id, exc)
            return "failed", (
                "This analysis needed more memory than this server gives one analysis and was stopped; "
                "try fewer images, fewer layers or a smaller model"
            )
        if isinstance(exc, JobDied):
            log.error("job %d: %s", job.id, exc)
            return "failed", f"This analysis stopped unexpectedly ({exc}); the details are in the server log"
        if isinstance(exc, (ValueError, TypeError)):
            log.info("job %d: bad input: %s", job.id, exc)
            return "failed", str(exc).splitlines()[0]
        log.error("job %d failed", job.id, exc_info=exc)
        return "failed", FRIENDLY_ERROR
