"""Process-wide runtime settings: glibc malloc tuning, numba cache and threading, torch threads.

`configure()` is the one place that sets other libraries' environment variables (numba's), before
they are imported; what the environment asks of this project is read by config.settings()."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import threading
from collections.abc import Iterator

from .config import settings
from .fsutil import default_cache_root

log = logging.getLogger(__name__)

# With glibc's defaults every batch's large activation buffers are mmap'ed and unmapped again,
# paying page faults each time; measured here this halves CPU throughput (docs/benchmarks.md, "Measured").
# Memory freed is then kept by its arena, never returned: with glibc's default of 8 arenas per core,
# the threads of a server (a script thread per visitor, workers) each grew one to its own peak, and
# the demo's RSS reached 16 GB after 41 soak sessions. Two arenas: 1.3-1.6 GB (docs/hosting.md).
MALLOC_ENV = {
    "MALLOC_MMAP_MAX_": "0",
    "MALLOC_TRIM_THRESHOLD_": "68719476736",
    "MALLOC_TOP_PAD_": "536870912",
    "MALLOC_ARENA_MAX": "2",
}
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -2, -4, -8
NUMBA_THREADING_LAYER = "omp"  # thread-safe; `workqueue` aborted the process when two threads ran UMAP at once
SERVER_LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_configured = False
_start_lock = threading.Lock()  # one process started at a time (without_main)


def tune_malloc() -> bool:
    """Apply MALLOC_ENV through mallopt(3) in this process (glibc only).

    Returns:
        True when glibc accepted all four settings.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1  # mallopt takes a C int: 2 GiB is its "never"
    ok &= mallopt(_M_TOP_PAD, int(MALLOC_ENV["MALLOC_TOP_PAD_"])) == 1
    ok &= mallopt(_M_ARENA_MAX, int(MALLOC_ENV["MALLOC_ARENA_MAX"])) == 1
    return bool(ok)


def release_free_memory() -> bool:
    """Give the pages malloc holds free back to the system now (glibc's malloc_trim(0), which also
    returns whole free pages inside the heap, not only its top). A long-running server calls it
    after each job: with MALLOC_ENV's "never trim" the heap otherwise keeps every job's peak, so
    the RSS between jobs would be the largest job's, not what is alive.

    Returns:
        True when memory was returned (False elsewhere than glibc, or when there was none).
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        return bool(ctypes.CDLL(name).malloc_trim(0))
    except (OSError, AttributeError):
        return False


def configure(*, malloc: bool = True) -> None:
    """Set the process-wide knobs once, before heavy libraries start working.

    numba compiles UMAP once into a persistent cache (NUMBA_CACHE_DIR) and uses the `omp`
    threading layer: several UMAP fits at once crashed with `workqueue`.
    """
    global _configured
    if _configured:
        return
    _configured = True
    os.environ.setdefault("NUMBA_CACHE_DIR", str(default_cache_root() / "numba"))
    os.environ.setdefault("NUMBA_THREADING_LAYER", NUMBA_THREADING_LAYER)
    if malloc and settings().malloc_tune:
        ok = tune_malloc()
        log.debug("malloc tuning %s", "applied" if ok else "not available")


@contextlib.contextmanager
def without_main() -> Iterator[None]:
    """Start processes that do not import this process's `__main__`: multiprocessing re-imports it
    in every spawned child, and under Streamlit `__main__` is the page script (app.py), which would
    start a second server runtime in the child (a dashboard job's process; the analysis lanes'
    worker, where it broke the first analysis of a server). A child needs only what its pickled
    function names. One process is started at a time."""
    from multiprocessing import spawn

    with _start_lock:
        original = spawn.get_preparation_data

        def prepared(name: str) -> dict:
            data = original(name)
            data.pop("init_main_from_name", None)
            data.pop("init_main_from_path", None)
            return data

        spawn.get_preparation_data = prepared
        try:
            yield
        finally:
            spawn.get_preparation_data = original


def configured() -> bool:
    """Whether configure() has run in this process (numba's threading layer is then ours to keep)."""
    return _configured


def size_threads(threads: int) -> None:
    """Size torch's and numba's thread pools for the calling thread (a job worker).

    With W workers on C cores each gets C // W threads, so two jobs at once do not fight over the
    cores. Both settings apply to the calling thread's parallel regions.
    """
    import torch

    threads = max(1, threads)
    torch.set_num_threads(threads)
    try:
        import numba

        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    except (ImportError, ValueError) as exc:  # numba is optional for extraction
        log.debug("numba threads not set: %s", exc)


if __name__ == "__main__":  # `eval "$(python -m explorer.process_setup)"`: the scripts' environment, from MALLOC_ENV
    print(" ".join(f"export {k}={v}" for k, v in MALLOC_ENV.items()))
