"""The whole `python -m explorer compare` command, cold, against another revision in the same run.

Each run is a fresh process with an empty feature cache (and numba's compiled code cached, as a
user's second run has it), on the same images; this tree and a git worktree of REV alternate, so
the machine's drift falls on both. Wall time and peak RSS per run.

    .venv/bin/python bench/bench_cli_run.py /tmp/scale2k --against 658a725 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def one_run(tree: Path, data: str, projection: str, work: Path) -> dict[str, float]:
    """One cold `compare` from `tree`'s package; (seconds, peak RSS in GB)."""
    cache, out = work / "cache", work / "out"
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "EXPLORER_CACHE_DIR": str(cache)}
    env["NUMBA_CACHE_DIR"] = str(work / "numba")  # compiled once, shared by both trees' runs
    argv = [
        sys.executable,
        "-m",
        "explorer",
        "compare",
        "--data",
        data,
        "--projection",
        projection,
        "--out",
        str(out),
        "-q",
    ]
    rss = work / "rss"
    t = time.perf_counter()
    subprocess.run(["/usr/bin/time", "-o", str(rss), "-f", "%M", *argv], cwd=tree, env=env, check=True)
    seconds = time.perf_counter() - t
    return {"seconds": round(seconds, 1), "peak_rss_gb": round(int(rss.read_text().split()[-1]) / 1024**2, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="the images (bench/scale_dataset.py makes them)")
    ap.add_argument("--against", required=True, help="the git revision to compare with")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--projection", default="umap")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-cli-"))
    other = work / "tree"
    subprocess.run(
        ["git", "worktree", "add", "--detach", str(other), args.against], cwd=ROOT, check=True, capture_output=True
    )
    try:
        one_run(ROOT, args.data, args.projection, work)  # numba's cache filled, the files in the page cache
        rows = []
        for r in range(args.rounds):
            for name, tree in (
                (("this tree", ROOT), (args.against, other))
                if r % 2 == 0
                else ((args.against, other), ("this tree", ROOT))
            ):
                got = one_run(tree, args.data, args.projection, work)
                rows.append({"round": r + 1, "tree": name, **got})
                print(json.dumps(rows[-1]), flush=True)
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(other)], cwd=ROOT, check=False)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
