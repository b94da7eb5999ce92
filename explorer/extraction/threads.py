"""The operating system's side of the decode threads: below the model's thread in priority, and one
OpenMP thread each, so that decoding fills the model's idle gaps instead of competing with it."""

from __future__ import annotations

import contextlib
import os
import threading

DECODE_NICE = 10


def lower_priority() -> None:
    """Run this background decode thread below the thread that drives the model: when cores are
    scarce it fills that thread's idle gaps instead of pre-empting it. (With the model on the CPU an
    OpenMP region waits for its slowest thread: 400 images took 3.2 s at equal priority and 2.4-2.6 s
    niced, and decoding between batches instead was no slower, so the CPU now does that.)"""
    with contextlib.suppress(AttributeError, OSError, PermissionError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICE)
    one_omp_thread()


def one_omp_thread() -> None:
    """Give the calling thread's tensor ops one OpenMP thread. Without that, libgomp gives every
    thread that starts a parallel region a team of its own (one thread per core), which spins
    beside the model's team."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="openmp")
