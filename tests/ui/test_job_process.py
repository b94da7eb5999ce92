"""The demo's analyses run in processes of their own (ui/job_process.py): a job that loops forever or
blocks in a native call is killed at its deadline or on cancel, one that takes too much memory
fails with one sentence, and the server's own thread stays free meanwhile; results, progress and
bad-input sentences come back as from a job on the thread."""

from __future__ import annotations

import ctypes
import time
from typing import Any

import pytest

from explorer.ui.jobs import JobQueue


def _loops_forever(job: Any) -> None:
    job.progress("reading images", 1, 3)
    while True:  # a reader that never returns (the pax record of length 0 did this)
        pass


def _blocks_in_native_code(job: Any) -> None:
    ctypes.CDLL(None).sleep(3600)  # a C call that never checks for Python's signals


def _takes_memory(job: Any) -> None:
    import numpy as np

    hoard = [np.ones(256 * 1024**2 // 8) for _ in range(64)]  # 16 GB, a page at a time
    print(len(hoard))


def _bad_input(job: Any) -> None:
    raise ValueError("dataset.tar is not an uncompressed tar (a pax record at byte 0 declares 0 bytes)\nmore")


def _answers(job: Any) -> dict:
    for i in range(3):
        job.progress("extracting", i + 1, 3)
    import os

    return {"pid": os.getpid(), "value": 42}


def _wait(job: Any, timeout: float = 120) -> None:
    t0 = time.time()
    while job.active and time.time() - t0 < timeout:
        time.sleep(0.05)
    assert not job.active, f"the job is still {job.state} after {timeout} s"


@pytest.fixture(scope="module")
def queue() -> JobQueue:
    """A 4 s deadline, for the tests of the deadline."""
    from explorer.ui import job_process

    job_process.start_forkserver()  # as the demo does at its start
    return JobQueue(workers=1, max_seconds=4.0, max_job_bytes=1024**3)


@pytest.fixture(scope="module")
def roomy() -> JobQueue:
    """A deadline far off, for the tests of anything else: on a slow machine a 4 s deadline ran out
    while a job waited for the worker."""
    from explorer.ui import job_process

    job_process.start_forkserver()
    return JobQueue(workers=1, max_seconds=300.0, max_job_bytes=1024**3)


def test_a_result_and_its_progress_come_back_from_the_process(roomy: JobQueue) -> None:
    import os

    job = roomy.submit("ok", _answers, isolated=True, finish=lambda r: {**r, "finished": True})
    _wait(job)
    assert job.state == "done", job.error
    assert job.result["value"] == 42 and job.result["finished"]
    assert job.result["pid"] != os.getpid() and job.stage == "extracting" and job.done == 3


def _first_then_whole(job: Any) -> dict:
    import time

    job.show_early({"part": "first"})
    job.show_early(lambda: None)  # cannot be pickled: left out, and the job goes on
    time.sleep(3.0)
    return {"part": "whole"}


def test_a_first_result_comes_back_from_the_process_while_the_job_goes_on(roomy: JobQueue) -> None:
    """An analysis's first view (Job.show_early) comes over the pipe as on the server's thread, made
    into what the page shows (`finish`), while the job is still running; one that cannot be sent
    is left out, and the whole result still comes."""
    job = roomy.submit("early", _first_then_whole, isolated=True, finish=lambda r: {**r, "finished": True})
    t0 = time.time()
    while (early := roomy.take_early(job)) is None and (job.state == "queued" or job.active) and time.time() - t0 < 120:
        time.sleep(0.05)
    assert early == {"part": "first", "finished": True}
    assert job.active and roomy.take_early(job) is None  # handed over once; the job goes on
    _wait(job)
    assert job.state == "done", job.error
    assert job.result == {"part": "whole", "finished": True}


@pytest.mark.parametrize("fn", [_loops_forever, _blocks_in_native_code], ids=["python-loop", "native-call"])
def test_a_job_that_never_returns_is_killed_at_its_deadline_and_the_server_stays_free(queue: JobQueue, fn: Any) -> None:
    job = queue.submit(fn.__name__, fn, isolated=True)
    t0 = time.time()
    gaps = []
    while job.active and time.time() - t0 < 60:  # the server's own threads meanwhile: never held up
        t = time.perf_counter()
        time.sleep(0.01)
        gaps.append(time.perf_counter() - t)
    assert job.state == "failed" and "ran past this server's limit" in job.error
    assert time.time() - t0 < 4.0 + 3.0  # the deadline, plus a poll and the kill
    assert max(gaps) < 0.5, f"a 10 ms sleep took {max(gaps):.2f} s while the job ran"


def test_cancel_kills_a_job_blocked_in_native_code(queue: JobQueue) -> None:
    job = queue.submit("cancel", _blocks_in_native_code, isolated=True)
    while job.state == "queued":
        time.sleep(0.05)
    time.sleep(0.5)
    t0 = time.time()
    queue.cancel(job)
    _wait(job, timeout=10)
    assert job.state == "cancelled" and time.time() - t0 < 2.0


def test_a_job_past_its_memory_fails_in_one_sentence(roomy: JobQueue) -> None:
    job = roomy.submit("memory", _takes_memory, isolated=True)
    _wait(job, timeout=300)
    assert job.state == "failed" and "needed more memory than this server gives one analysis" in job.error


def test_bad_input_in_the_process_is_one_sentence(roomy: JobQueue) -> None:
    job = roomy.submit("bad", _bad_input, isolated=True)
    _wait(job)
    assert (
        job.state == "failed"
        and job.error == "dataset.tar is not an uncompressed tar (a pax record at byte 0 declares 0 bytes)"
    )


def test_the_demo_isolates_its_analyses_and_local_mode_does_not() -> None:
    from explorer.config import DEMO, LOCAL, app_mode

    assert DEMO.isolated_jobs and DEMO.max_job_bytes and not LOCAL.isolated_jobs
    assert app_mode({"EXPLORER_MODE": "demo", "EXPLORER_JOB_MEMORY_GB": "1.5"}).max_job_bytes == int(1.5 * 1024**3)
