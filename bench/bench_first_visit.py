"""First-visit benchmark (not a test): seconds from page load to the projection panels on screen.

Usage: .venv/bin/python bench/bench_first_visit.py [--visitors 3] [--against REV]
Starts the dashboard the way scripts/run.sh does (python -m explorer.ui.serve, tuned malloc) with an
empty cache folder, and measures in headless Debian chromium (Playwright): the first visit to a
fresh server with nothing cached (extraction, scoring, UMAP compile and fit), the first visit after
a server restart with the results cached on disk, and later visitors to that running server: at
once (while the background UMAP warm-up compiles numba code, ~20 s of 2-core CPU) and after the
server has logged that the warm-up is done. With `--against REV` the same visits are made, in the
same run, one after the other, to a server started from a git worktree of REV (the previous commit, say),
so that the two columns share the machine's speed of the moment.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from serving import (  # bench/serving.py (bench/ is on the path of a script run from it)
    ARGS,
    CHROMIUM,
    MALLOC,
    free_port,
    healthy,
)

ROOT = Path(__file__).resolve().parents[1]


def start(cache: str, log: Path, root: Path = ROOT) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **MALLOC, "EXPLORER_CACHE_DIR": cache, "NUMBA_THREADING_LAYER": "omp"}
    cmd = [sys.executable, "-m", "explorer.ui.serve", "--server.port", str(port), "--server.address", "127.0.0.1"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    t0 = time.time()
    while not healthy(url):
        if proc.poll() is not None or time.time() - t0 > 180:
            raise RuntimeError("the server did not start")
        time.sleep(0.3)
    return proc, url


def wait_for_log(log: Path, text: str, timeout: float = 300) -> None:
    t0 = time.time()
    while text not in log.read_text(errors="replace"):
        if time.time() - t0 > timeout:
            raise RuntimeError(f"the server never logged {text!r}")
        time.sleep(0.5)


def visit(browser, url: str) -> float:
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    t = time.perf_counter()
    page.goto(url)
    # the projection panels drawn: scatter.js marks its view (.explorer-projections) or, in older
    # commits, its plotly plot, when every panel is drawn (older still: st.plotly_chart, key proj_chart)
    page.wait_for_selector(".st-key-proj .explorer-projections[data-drawn='1'], .st-key-proj .js-plotly-plot[data-drawn], "
                           ".st-key-proj_chart .js-plotly-plot", timeout=900_000)  # fmt: skip
    took = time.perf_counter() - t
    page.close()
    return took


def bare_visits(browser, visitors: int) -> list[float]:
    """The floor: a bare Streamlit page drawing one plotly scatter of 400 points (bench/bare_page.py)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "bench" / "bare_page.py"), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true"]  # fmt: skip
    proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **MALLOC}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        while not healthy(url):
            time.sleep(0.3)
        out = []
        for _ in range(visitors + 1):  # the first one warms the server
            page = browser.new_page(viewport={"width": 1500, "height": 1000})
            t = time.perf_counter()
            page.goto(url)
            page.wait_for_selector(".js-plotly-plot .scatterlayer .point", timeout=120_000)
            out.append(time.perf_counter() - t)
            page.close()
        return out[1:]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def measure(browser, root: Path, visitors: int, cache: str) -> list[tuple[str, list[float]]]:
    """The four kinds of first visit against a server started from `root`, with `cache` empty at first."""
    log = Path(cache) / "server.log"
    rows = []
    proc, url = start(cache, log, root)
    try:
        rows.append(("cold: empty cache, fresh server (extract + score + UMAP compile + fit)", [visit(browser, url)]))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    proc, url = start(cache, log, root)
    try:
        rows.append(("server restarted, results cached on disk", [visit(browser, url)]))
        rows.append(("later visitors, at once (UMAP warm-up compiling)", [visit(browser, url) for _ in range(visitors)]))
        wait_for_log(log, "UMAP warm-up done")
        rows.append(("later visitors after the warm-up", [visit(browser, url) for _ in range(visitors)]))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visitors", type=int, default=3, help="later visitors timed on the restarted server")
    ap.add_argument("--against", help="also measure this git revision (a worktree of it), in the same run")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    roots = {"this checkout": ROOT}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        if args.against:
            other = Path(tmp) / "other"
            subprocess.run(["git", "worktree", "add", "--detach", str(other), args.against], cwd=ROOT, check=True,
                           capture_output=True)  # fmt: skip
            roots[args.against] = other
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        results: dict[str, list[tuple[str, list[float]]]] = {}
        try:
            floor = bare_visits(browser, args.visitors)
            for name, root in roots.items():
                with tempfile.TemporaryDirectory(dir=tmp) as cache:
                    results[name] = measure(browser, root, args.visitors, cache)
        finally:
            browser.close()
            if args.against:
                subprocess.run(["git", "worktree", "remove", "--force", str(roots[args.against])], cwd=ROOT, check=False)
    print(f"machine: {os.cpu_count()} cores; default analysis (sample:clothing, mobilenet_v2, 8 layers, UMAP)\n")
    names = list(results)
    print("| first visit | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    for i, (what, _) in enumerate(results[names[0]]):
        print(f"| {what} | " + " | ".join(", ".join(f"{s:.1f} s" for s in results[n][i][1]) for n in names) + " |")
    bare = sorted(floor)[len(floor) // 2]
    print(f"\nbare Streamlit page, one plotly scatter of 400 points: {', '.join(f'{s:.2f} s' for s in floor)} (median {bare:.2f} s)")
    for n in names:
        warm = sorted(results[n][-1][1])[len(results[n][-1][1]) // 2]
        print(f"{n}: cached sample visit after the warm-up, median {warm:.2f} s = {warm / bare:.2f}x the bare page")


if __name__ == "__main__":
    main()
