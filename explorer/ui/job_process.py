"""A job's function run in a process of its own: its deadline and the visitor's cancel stop it whatever a
library does inside it (a reader that loops, a native call that blocks, a decoder that never
returns), and its memory is bounded. The demo runs every analysis this way (config.AppMode.
isolated_jobs); the server's own threads only wait on a pipe, so the page and the health endpoint
stay served throughout.

The processes fork from one forkserver (multiprocessing's), started once when the server starts, with
the libraries an analysis uses imported: a job's process starts in a fraction of a second and shares
no thread, lock or OpenMP pool with the server (a child forked from the server itself could hang in
OpenMP: GNU libgomp is not fork-safe once its threads started).

- Progress goes back over the pipe, and a first result to show while the job goes on (an
  analysis's first view: `show_early`, as a job on the server's thread offers it); the result
  comes back pickled once the job ends.
- Cancel and deadline: the worker thread sees them within `POLL_S` and kills the process (SIGKILL).
  Finished chunks of an extraction are in the store already; a demo's partial files are deleted at
  its next start (store.clean_leftovers).
- Memory: the process's data segment (malloc's heap and every private anonymous mapping, which is
  where numpy and torch allocate) may grow by at most `max_bytes` (RLIMIT_DATA); past it an
  allocation fails, the job ends with one sentence, and nothing else is touched.
- The process dies with its forkserver (PR_SET_PDEATHSIG), which dies with the server.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from typing import Any

from ..process_setup import without_main
from ..progress import Cancelled

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often the waiting thread looks at cancel and the deadline
PRELOAD = ["explorer.comparison", "explorer.data.datasets", "explorer.extraction.layer_features", "explorer.ui.job_process",
           "torchvision", "sklearn.linear_model", "umap", "pynndescent", "faiss", "PIL.Image", "pyarrow.parquet"]  # fmt: skip
_context_lock = threading.Lock()
_context: Any = None


class JobOutOfMemory(RuntimeError):
    """The job's process ran past the memory it may use."""


class JobDied(RuntimeError):
    """The job's process ended without an answer (a crash in a native library, or a kill)."""


def context() -> Any:
    """The forkserver context, its libraries set to preload (set once per process, before it starts)."""
    global _context
    with _context_lock:
        if _context is None:
            ctx = multiprocessing.get_context("forkserver")
            ctx.set_forkserver_preload(PRELOAD)
            _context = ctx
        return _context


def start_forkserver() -> None:
    """Start the forkserver now (its imports take seconds), so the first job does not wait for them."""
    from multiprocessing import forkserver

    ctx = context()
    t0 = time.perf_counter()
    with without_main():
        forkserver.ensure_running()
        first = ctx.Process(target=_ready, name="explorer-job-warmup")  # joins once the forkserver has imported PRELOAD
        first.start()
    first.join()
    log.info("job processes: forkserver ready in %.1f s", time.perf_counter() - t0)


def _ready() -> None:
    """A process that does nothing: the first fork waits for the forkserver's imports."""


class _ChildJob:
    """What a job's function sees of its job inside the process: progress and a first result go to
    the pipe; it is never asked to stop (the server kills the process instead)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._last = 0.0

    def progress(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last >= 0.1 or done >= total:  # a few messages a second at most
            self._last = now
            self._conn.send(("progress", str(stage), int(done), int(total)))

    def should_stop(self) -> bool:
        return False

    def show_early(self, value: Any) -> None:
        """A first result for the page while the job goes on (Job.show_early on the server's side);
        one that cannot be sent is left out (the whole result still comes)."""
        try:
            self._conn.send(("early", value))
        except Exception:  # noqa: BLE001  (MemoryError, or a value that cannot be pickled)
            log.exception("job process: the first result could not be sent; the whole result will be")


def _limit_memory(max_bytes: int | None) -> None:
    import ctypes
    import resource
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the forkserver
    except (OSError, AttributeError):
        pass
    if max_bytes is None:
        return
    with open("/proc/self/status") as f:
        data_kb = next(int(line.split()[1]) for line in f if line.startswith("VmData:"))
    limit = data_kb * 1024 + max_bytes
    resource.setrlimit(resource.RLIMIT_DATA, (limit, limit))


def _child(conn: Any, fn: Callable[[Any], Any], max_bytes: int | None) -> None:
    """The job's process: run `fn`, send ("done", result) or what went wrong, in words."""

    try:
        _limit_memory(max_bytes)
        outcome: tuple = ("done", fn(_ChildJob(conn)))
    except MemoryError:
        outcome = ("memory", "")
    except Cancelled:
        outcome = ("cancelled", "")
    except (ValueError, TypeError) as exc:
        outcome = ("bad_input", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
    except BaseException as exc:  # noqa: BLE001  everything reaches the server as words
        log.exception("job process: the job failed")
        outcome = ("error", f"{type(exc).__name__}: {str(exc)[:500]}")
    try:
        conn.send(outcome)
    except MemoryError:
        conn.send(("memory", ""))
    except Exception as exc:  # noqa: BLE001  a result that cannot be pickled
        log.exception("job process: the result could not be sent")
        conn.send(("error", f"the result could not be sent back: {type(exc).__name__}"))
    finally:
        conn.close()


def run(job: Any, fn: Callable[[Any], Any], max_bytes: int | None) -> Any:
    """Run `fn(job-like)` in a process of its own and return its result, raising what the job raised
    as the in-thread path would: ValueError for bad input (one sentence), progress.Cancelled when
    cancelled or stopped at the deadline (`job.should_stop()` says which), JobOutOfMemory, JobDied,
    or RuntimeError for anything else (the server log has the process's traceback)."""

    ctx = context()
    ours, theirs = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_child, args=(theirs, fn, max_bytes), name=f"explorer-job-{getattr(job, 'id', '?')}")
    with without_main():
        proc.start()
    theirs.close()
    outcome: tuple | None = None
    try:
        while outcome is None:
            if job.should_stop():
                raise Cancelled
            if ours.poll(POLL_S):
                try:
                    message = ours.recv()
                except EOFError:  # the process ended without an answer
                    break
                if message[0] == "progress":
                    job.progress(*message[1:])
                elif message[0] == "early":
                    if hasattr(job, "show_early"):
                        job.show_early(message[1])
                else:
                    outcome = message
            elif not proc.is_alive() and not ours.poll():
                break
    finally:
        if proc.is_alive() and outcome is None:
            proc.kill()
        proc.join(timeout=10)
        if proc.is_alive():
            proc.kill()
            proc.join()
        ours.close()
    if outcome is None:
        raise JobDied(
            f"its process ended with {'signal ' + str(-proc.exitcode) if (proc.exitcode or 0) < 0 else 'code ' + str(proc.exitcode)}"
        )
    kind, payload = outcome
    if kind == "done":
        return payload
    if kind == "bad_input":
        raise ValueError(payload)
    if kind == "cancelled":
        raise Cancelled
    if kind == "memory":
        raise JobOutOfMemory("the analysis needed more memory than this server gives one analysis")
    raise RuntimeError(payload)
