"""The dashboard's process-wide job queue: order, quotas, busy answers, cancellation, errors."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from explorer.progress import Cancelled
from explorer.ui.jobs import FRIENDLY_ERROR, AlreadyRunning, Job, JobQueue, QueueFull


def _wait(job: Job, timeout: float = 10) -> None:
    t0 = time.time()
    while job.active and time.time() - t0 < timeout:
        time.sleep(0.01)
    assert not job.active, f"job {job.id} still {job.state}"


def _blocker(gate: threading.Event):
    def fn(job: Job) -> str:
        job.progress("working", 0, 1)
        while not gate.wait(0.01):
            if job.should_stop():
                raise Cancelled("stopped")
        return "finished"

    return fn


def test_fifo_positions_one_job_per_session_and_busy() -> None:
    q = JobQueue(workers=1, max_pending=2)
    gate = threading.Event()
    running = q.submit("a", _blocker(gate))
    while running.state != "running":
        time.sleep(0.01)
    b = q.submit("b", lambda job: "b")
    c = q.submit("c", lambda job: "c")
    assert (q.position(running), q.position(b), q.position(c)) == (0, 1, 2)
    assert not q.has_free_worker() and not q.idle()
    with pytest.raises(AlreadyRunning):
        q.submit("b", lambda job: "again")
    with pytest.raises(QueueFull):
        q.submit("d", lambda job: "d")
    gate.set()
    for job in (running, b, c):
        _wait(job)
    assert [running.result, b.result, c.result] == ["finished", "b", "c"]
    t0 = time.time()
    while not q.idle() and time.time() - t0 < 5:  # the counter drops just after the job's state
        time.sleep(0.01)
    assert q.idle() and q.has_free_worker()
    assert q.submit("b", lambda job: "next") is not b  # a finished session may submit again


def test_cancel_waiting_and_running_jobs() -> None:
    q = JobQueue(workers=1, max_pending=4)
    gate = threading.Event()
    running = q.submit("a", _blocker(gate))
    waiting = q.submit("b", lambda job: "never")
    while running.state != "running":
        time.sleep(0.01)
    q.cancel(waiting)
    assert waiting.state == "cancelled" and q.pending() == 0 and waiting.result is None
    q.cancel(running)  # stops at its next should_stop() check
    _wait(running)
    assert running.state == "cancelled" and running.result is None
    gate.set()


def test_failures_reach_the_visitor_as_one_sentence(caplog: pytest.LogCaptureFixture) -> None:
    q = JobQueue(workers=1, max_pending=4)

    def bad_input(job: Job) -> None:
        raise ValueError("no images found in the upload\nsecond line")

    def crash(job: Job) -> None:
        raise RuntimeError("internal detail that visitors must not see")

    j1, j2 = q.submit("a", bad_input), q.submit("b", crash)
    _wait(j1)
    _wait(j2)
    assert (j1.state, j1.error) == ("failed", "no images found in the upload")
    assert (j2.state, j2.error) == ("failed", FRIENDLY_ERROR)
    assert "internal detail" in caplog.text  # the full trace goes to the log
    ok = q.submit("c", lambda job: 42)  # the worker survived both
    _wait(ok)
    assert ok.result == 42


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt(), GeneratorExit()])
def test_a_worker_survives_a_base_exception(exc: BaseException) -> None:
    q = JobQueue(workers=1, max_pending=4)

    def escape(job: Job) -> None:
        raise exc

    bad = q.submit("a", escape)
    _wait(bad)
    assert (bad.state, bad.error) == ("failed", FRIENDLY_ERROR)
    ok = q.submit("b", lambda job: 42)
    _wait(ok)
    assert (ok.state, ok.result) == ("done", 42)


def test_an_outcome_is_seen_whole() -> None:
    """A reader that sees a job ended sees its error text (or its result) with it, never before."""
    q = JobQueue(workers=1, max_pending=64)
    seen_bad: list[tuple[str, str, object]] = []
    stop = threading.Event()
    jobs: list[Job] = []

    def watch() -> None:
        while not stop.is_set():
            for j in list(jobs):
                state, error, result = j.state, j.error, j.result
                if (state == "failed" and not error) or (state == "done" and result is None):
                    seen_bad.append((state, error, result))

    def slow_failure(job: Job) -> None:
        time.sleep(0.002)
        raise ValueError("bad input, said in words")

    reader = threading.Thread(target=watch)
    reader.start()
    for i in range(40):
        jobs.append(q.submit(f"s{i}", slow_failure if i % 2 else (lambda job: "ok")))
        _wait(jobs[-1])
    stop.set()
    reader.join()
    assert not seen_bad
    assert {j.state for j in jobs} == {"failed", "done"}


def test_workers_size_torch_and_numba_threads() -> None:
    import numba
    import torch

    before = torch.get_num_threads()
    try:
        q = JobQueue(workers=1, max_pending=2, threads_per_worker=1)
        job = q.submit("a", lambda job: (torch.get_num_threads(), numba.get_num_threads()))
        _wait(job, timeout=60)
        assert job.result == (1, 1)
    finally:
        torch.set_num_threads(before)


def test_results_live_in_their_session_not_in_the_queue() -> None:
    """A taken result is forgotten by the queue; one nobody takes (the visitor left) expires after
    the TTL; a finished job no longer holds its closure (the request, an upload's bytes)."""
    q = JobQueue(workers=1, max_pending=4, ttl=0.2)
    big = bytearray(10**6)
    taken = q.submit("a", lambda job: len(big))
    left = q.submit("b", lambda job: "nobody takes this")
    _wait(taken)
    _wait(left)
    assert taken.fn is None and left.fn is None
    assert q.take(taken) == 10**6 and taken.result is None
    assert q.job_of("a") is None and q.sessions() == 1
    time.sleep(0.3)
    q.submit("c", lambda job: "c")  # a sweep runs on submit (and now and then on job_of)
    assert q.job_of("b") is None and left.result == "nobody takes this"  # the queue let go of it


def test_a_finished_job_gives_its_peak_memory_back(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the server's malloc settings (never trim, no mmap) the heap would keep a job's peak for
    good, so the worker hands free pages back after each job, once the job's memory is gone (the
    RSS this gives back is measured by bench/bench_job_memory.py, not asserted here)."""
    from explorer.ui import jobs

    alive: list[int] = []
    trims: list[tuple[int, str]] = []
    go = threading.Event()
    q = JobQueue(workers=1, max_pending=2)

    def trim() -> bool:
        if threading.current_thread() in q._threads:  # not another test's queue finishing meanwhile
            trims.append((len(alive), job.state))
        return True

    monkeypatch.setattr(jobs, "release_free_memory", trim)

    def peak(_: Job) -> float:
        go.wait(10)  # `job` is named before the worker can finish it
        block = np.ones(1000)
        alive.append(1)
        try:
            return float(block[0])
        finally:
            alive.pop()

    job = q.submit("a", peak)
    go.set()
    _wait(job, timeout=60)
    t0 = time.time()
    while not trims and time.time() - t0 < 10:
        time.sleep(0.01)
    assert job.result == 1.0
    assert trims == [(0, "done")]  # once, after the job's own memory was let go and it was marked done


@pytest.mark.parametrize("how", ["done", "failed", "cancelled while waiting", "cancelled while running"])
def test_the_cleanup_runs_however_the_job_ends(how: str) -> None:
    q = JobQueue(workers=1, max_pending=4)
    gate = threading.Event()
    cleaned = threading.Event()
    first = q.submit("first", _blocker(gate))  # occupies the worker
    if how == "cancelled while running":
        job = first
        first.cleanup = cleaned.set
        while first.state != "running":
            time.sleep(0.01)
        q.cancel(first)
    else:
        fn = {"done": lambda job: 1, "failed": lambda job: 1 / 0, "cancelled while waiting": lambda job: 1}[how]
        job = q.submit("second", fn, cleanup=cleaned.set)
        if how == "cancelled while waiting":
            q.cancel(job)
            assert cleaned.is_set() and job.fn is None  # at once, without a worker
        gate.set()
    _wait(job)
    assert cleaned.wait(5) and job.cleanup is None


def test_one_visitor_cannot_fill_the_queue_from_many_sessions() -> None:
    q = JobQueue(workers=1, max_pending=8, max_per_client=2)
    gate = threading.Event()
    q.submit("s1", _blocker(gate), client="203.0.113.9")
    q.submit("s2", _blocker(gate), client="203.0.113.9")
    with pytest.raises(AlreadyRunning, match="from your address"):
        q.submit("s3", _blocker(gate), client="203.0.113.9")  # a third session, the same address
    q.submit("s4", _blocker(gate), client="198.51.100.7")  # someone else is served
    q.submit("s5", _blocker(gate))  # an unknown address (a local connection) is not limited
    gate.set()
