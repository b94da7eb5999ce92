"""First-visit benchmark (not a test): seconds from page load to the projection panels on screen.

Usage: .venv/bin/python bench/bench_first_visit.py [--visitors 3] [--against REV] [--mode demo]
           [--job-images 2000 --job-data FOLDER]
Starts the dashboard the way scripts/run.sh does (python -m explorer.ui.serve, tuned malloc) with an
empty cache folder, after what scripts/setup.sh does there (since issue 39: UMAP's numba code
compiled), and measures in headless Debian chromium (Playwright): the first visit to a fresh server
with no results cached (extraction, scoring, UMAP fit; and UMAP's compile where setup does not), the first visit after
a server restart with the results cached on disk, and later visitors to that running server: at
once (while the background UMAP warm-up compiles numba code, ~20 s of 2-core CPU) and after the
server has logged that the warm-up is done. With `--against REV` the same visits are made, in the
same run, one after the other, to a server started from a git worktree of REV (the previous commit, say),
so that the two columns share the machine's speed of the moment. With `--mode demo` the servers run
the demo (where each analysis runs in a process of its own since issue 35); "after the warm-up"
then means after the UMAP warm-up or, where there is none, after the job processes' forkserver is
ready. With `--job-images N --job-data FOLDER`, a zip of the first N images of FOLDER (a scale
dataset: bench/scale_dataset.py) is uploaded on the restarted server and timed from Run to its
panels drawn: a new dataset, so a real extraction, scoring and projection.
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


MODE = "local"
STARTED: list[float] = []  # seconds from each server's launch to its health check answering


def start(cache: str, log: Path, root: Path = ROOT) -> tuple[subprocess.Popen, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **MALLOC, "EXPLORER_CACHE_DIR": cache, "NUMBA_THREADING_LAYER": "omp"}
    cmd = [
        sys.executable,
        "-m",
        "explorer.ui.serve",
        "--mode",
        MODE,
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    t0 = time.time()
    while not healthy(url):
        if proc.poll() is not None or time.time() - t0 > 180:
            raise RuntimeError("the server did not start")
        time.sleep(0.1)
    STARTED.append(time.time() - t0)
    return proc, url


def wait_for_log(log: Path, *texts: str, timeout: float = 300) -> None:
    """Wait until the server's log holds any of `texts`."""
    t0 = time.time()
    while not any(t in log.read_text(errors="replace") for t in texts):
        if time.time() - t0 > timeout:
            raise RuntimeError(f"the server never logged any of {texts!r}")
        time.sleep(0.5)


def upload_job(browser, url: str, archive: Path, n: int) -> float:
    """Seconds from Run to the panels of an uploaded zip of `n` images drawn (after the first visit's
    own analysis is on screen)."""
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(f"{url}/?max_images={n}")  # the demo's slider starts at 400
    page.wait_for_selector(".st-key-proj .explorer-projections[data-drawn='1']", timeout=900_000)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset").click()
    page.get_by_role("option", name="Upload a zip").click()
    page.locator('input[type="file"]').set_input_files(str(archive))
    page.wait_for_selector('[data-testid="stFileChip"]', timeout=300_000)
    page.wait_for_selector('[data-testid="stFileChipIconSpinner"]', state="detached", timeout=300_000)
    t = time.perf_counter()
    page.get_by_role("button", name="Run analysis").click()
    page.wait_for_function(
        f"() => {{ const s = window.__explorerScatter && window.__explorerScatter.get('proj'); "
        f'return s && s.state && s.state.n === {n} && document.querySelector(".st-key-proj '
        f".explorer-projections[data-drawn='1']\"); }}",
        timeout=1_800_000,
    )
    took = time.perf_counter() - t
    page.close()
    return took


def zip_of(folder: Path, n: int, dest: Path) -> Path:
    import zipfile

    images = sorted(folder.rglob("*.jpg"))[:n]
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_STORED) as zf:
        for p in images:
            zf.write(p, f"{p.parent.name}/{p.name}")
    return dest


WHOLE: list[float] = []  # seconds from each visit's navigation to its whole result (every view), in order


def visit(browser, url: str) -> float:
    """Seconds from navigation to the projection panels drawn; the seconds to the whole result, every
    view drawn (since issue 39's third round the panels come first, a banner naming what is still
    computed), go to WHOLE."""
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    t = time.perf_counter()
    page.goto(url)
    # the projection panels drawn: scatter.js marks its view (.explorer-projections) or, in older
    # commits, its plotly plot, when every panel is drawn (older still: st.plotly_chart, key proj_chart)
    page.wait_for_selector(
        ".st-key-proj .explorer-projections[data-drawn='1'], .st-key-proj .js-plotly-plot[data-drawn], "
        ".st-key-proj_chart .js-plotly-plot",
        timeout=900_000,
    )
    took = time.perf_counter() - t
    page.wait_for_selector(".st-key-first_view_pending", state="detached", timeout=900_000)
    WHOLE.append(time.perf_counter() - t)
    page.close()
    return took


def bare_visits(browser, visitors: int) -> list[float]:
    """The floor: a bare Streamlit page drawing one plotly scatter of 400 points (bench/bare_page.py)."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    cmd = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(ROOT / "bench" / "bare_page.py"),
        "--server.port",
        str(port),
        "--server.address",
        "127.0.0.1",
        "--server.headless",
        "true",
    ]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env={**os.environ, **MALLOC}, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )
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


def measure(
    browser, root: Path, visitors: int, cache: str, job: tuple[Path, int] | None = None
) -> list[tuple[str, list[float]]]:
    """The four kinds of first visit against a server started from `root`, with `cache` empty at first
    (and the upload `job`, a zip and its number of images, timed on the restarted server)."""
    log = Path(cache) / "server.log"
    rows = []
    # what scripts/setup.sh leaves before scripts/run.sh starts the server: since issue 39 UMAP's
    # numba code compiled into the cache (`python -m explorer.analysis.projection`; a revision
    # without it runs nothing there)
    env = {**os.environ, **MALLOC, "EXPLORER_CACHE_DIR": cache, "NUMBA_THREADING_LAYER": "omp"}
    subprocess.run([sys.executable, "-m", "explorer.analysis.projection"], cwd=root, env=env, check=False)
    proc, url = start(cache, log, root)
    rows.append(("the server's start (launch to health check)", [STARTED[-1]]))
    try:
        rows.append(
            ("cold: fresh server after setup, no results cached (extract + score + UMAP fit)", [visit(browser, url)])
        )
        rows.append(("cold, to the whole result (every view)", [WHOLE[-1]]))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    proc, url = start(cache, log, root)
    try:
        rows.append(("server restarted, results cached on disk", [visit(browser, url)]))
        rows.append(
            ("later visitors, at once (UMAP warm-up compiling)", [visit(browser, url) for _ in range(visitors)])
        )
        wait_for_log(log, "UMAP warm-up done", "forkserver ready")
        rows.append(("later visitors after the warm-up", [visit(browser, url) for _ in range(visitors)]))
        if job is not None:
            rows.append((f"a {job[1]:,}-image upload, Run to panels drawn", [upload_job(browser, url, *job)]))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visitors", type=int, default=3, help="later visitors timed on the restarted server")
    ap.add_argument("--against", help="also measure this git revision (a worktree of it), in the same run")
    ap.add_argument("--mode", choices=("local", "demo"), default="local", help="the servers' mode")
    ap.add_argument("--job-images", type=int, default=0, help="also time an upload of this many images")
    ap.add_argument("--job-data", type=Path, help="the folder of class folders the upload's images come from")
    args = ap.parse_args()
    global MODE
    MODE = args.mode
    from playwright.sync_api import sync_playwright

    roots = {"this checkout": ROOT}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as p:
        if args.against:
            other = Path(tmp) / "other"
            subprocess.run(
                ["git", "worktree", "add", "--detach", str(other), args.against],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            roots[args.against] = other
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        results: dict[str, list[tuple[str, list[float]]]] = {}
        try:
            floor = bare_visits(browser, args.visitors)
            job = (
                (zip_of(args.job_data, args.job_images, Path(tmp) / "job.zip"), args.job_images)
                if args.job_images
                else None
            )
            for name, root in roots.items():
                with tempfile.TemporaryDirectory(dir=tmp) as cache:
                    results[name] = measure(browser, root, args.visitors, cache, job)
        finally:
            browser.close()
            if args.against:
                subprocess.run(
                    ["git", "worktree", "remove", "--force", str(roots[args.against])], cwd=ROOT, check=False
                )
    print(
        f"machine: {os.cpu_count()} cores; {MODE} mode; default analysis (sample:clothing, mobilenet_v2, 8 layers, UMAP)\n"
    )
    names = list(results)
    print("| first visit | " + " | ".join(names) + " |\n|---|" + "---:|" * len(names))
    for i, (what, _) in enumerate(results[names[0]]):
        print(f"| {what} | " + " | ".join(", ".join(f"{s:.1f} s" for s in results[n][i][1]) for n in names) + " |")
    bare = sorted(floor)[len(floor) // 2]
    print(
        f"\nbare Streamlit page, one plotly scatter of 400 points: {', '.join(f'{s:.2f} s' for s in floor)} (median {bare:.2f} s)"
    )
    for n in names:
        after = next(r[1] for r in results[n] if r[0].startswith("later visitors after"))
        warm = sorted(after)[len(after) // 2]
        print(f"{n}: cached sample visit after the warm-up, median {warm:.2f} s = {warm / bare:.2f}x the bare page")


if __name__ == "__main__":
    main()
