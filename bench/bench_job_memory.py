"""The RSS a dashboard worker gives back after a job (what tests/ui/test_jobs.py checks by behaviour).

With the server's malloc settings (process_setup.tune_malloc: never trim, no mmap) the heap keeps a
job's peak; the queue's worker calls malloc_trim after each job. This measures the RSS before, at the
peak and after one 800 MB job, with and without that call.

    python bench/bench_job_memory.py
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from explorer import process_setup  # noqa: E402
from explorer.ui import jobs  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmRSS:"))


def one_job(trim: bool) -> dict[str, float]:
    jobs.release_free_memory = process_setup.release_free_memory if trim else (lambda: False)
    q = jobs.JobQueue(workers=1, max_pending=2)
    peak = {}

    def work(job: jobs.Job) -> float:
        blocks = [np.ones(2_500_000) for _ in range(40)]  # 800 MB in 20 MB blocks, freed on return
        peak["mb"] = rss_mb()
        return float(sum(b[0] for b in blocks))

    time.sleep(0.5)
    before = rss_mb()
    job = q.submit("a", work)
    while job.state not in ("done", "failed"):
        time.sleep(0.05)
    time.sleep(1.0)
    return {"before_mb": round(before), "peak_mb": round(peak["mb"]), "after_mb": round(rss_mb())}


def main() -> None:
    if not process_setup.tune_malloc():
        print("not glibc: nothing to measure")
        return
    import torch  # noqa: F401  (what the server's workers have loaded)

    print(json.dumps({"with trim": one_job(True), "without trim": one_job(False)}, indent=1))


if __name__ == "__main__":
    main()
