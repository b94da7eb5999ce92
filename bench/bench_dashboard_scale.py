"""The projection view at scale (not a test), in headless Debian chromium (Playwright).

Usage:
    .venv/bin/python bench/bench_dashboard_scale.py --synthetic 100000x8 1000000x1 --before e52c916 \\
        [--visits 3] [--timeout 180] [--out docs/dashboard_synthetic.json]
    .venv/bin/python bench/bench_dashboard_scale.py /work/scale/clothing100k --cache-dir /work/scale/cache_pca2 \\
        [--projection pca] [--visits 3] [--out bench/results/dashboard_scale.json]

--synthetic: the real view on a bench page (bench/synthetic_page.py) with N made-up points per
panel, so that a million points can be measured without extracting a million images; --before
measures another commit's view in the same run (a git worktree). With a folder: a local-mode
dashboard on it, its analysis already cached (bench/bench_scale.py with the same --cache-dir):
this measures the page, not the engine.

Each visit: page load -> every panel drawn; the page idle until the view has prepared what a
selection is drawn over; a lasso over the middle of the first panel (the worst gap between
animation frames while it is drawn); mouse up -> the selection shown in every panel; mouse up ->
the grid's images loaded; a hover -> its thumbnail loaded; the JS heap (DevTools protocol) and
the RSS of chromium's processes (/proc). docs/benchmarks.md has the results.
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
import urllib.parse
from pathlib import Path

from bench_first_visit import bare_visits  # noqa: E402  (bench/ is on the path of a script run from it)
from serving import (  # bench/serving.py (bench/ is on the path of a script run from it)
    ARGS,
    CHROMIUM,
    MALLOC,
    cpu_model,
    free_port,
    healthy,
)

ROOT = Path(__file__).resolve().parents[1]


def _chromium_rss_mb() -> float:
    """Resident memory of every running chromium process, from /proc (MB)."""
    total = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"chrom" not in cmd.split(b"\0")[0]:
                continue
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _wait_images(page, at_least: int, timeout_ms: int) -> None:
    page.wait_for_function(
        "(n) => { const imgs = [...document.querySelectorAll('[data-testid=\"stImage\"] img')];"
        " return imgs.length >= n && imgs.every(i => i.complete && i.naturalWidth > 0); }",
        arg=at_least,
        timeout=timeout_ms,
    )


# --- synthetic mode: the projection view alone, on N made-up points per panel, this tree against another

NEW_ROOT = ".st-key-proj .explorer-projections"  # this tree's view (scatter.js)
OLD_PLOT = ".st-key-proj .js-plotly-plot"  # the plotly view before it
FRAMES = """() => { window.__frames = []; const tick = (t) => { if (window.__frames) { window.__frames.push(t); requestAnimationFrame(tick); } };
  requestAnimationFrame(tick); }"""
STOP_FRAMES = """() => { const f = window.__frames || []; window.__frames = null; let worst = 0;
  for (let i = 1; i < f.length; i++) worst = Math.max(worst, f[i] - f[i - 1]); return [worst, f.length]; }"""
# (the lassoed panel keeps plotly's own selection, which differs by the points on the lasso's outline)
OLD_ALL_PANELS = """(n) => { const gd = document.querySelector('.st-key-proj .js-plotly-plot'); const per = {};
  for (const t of gd.data) if (t.meta === 'points' && t.xaxis !== 'x') per[t.xaxis] = (per[t.xaxis] || 0) + (t.selectedpoints || []).length;
  const v = Object.values(per); return v.length > 0 && v.every(x => x === n); }"""


def visit(browser, url: str, new: bool, timeout_ms: int, out: dict | None = None) -> dict[str, float]:
    """One visit's times (filled into `out` as they come, so a step that times out keeps the ones before it)."""
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    out = {} if out is None else out
    t = time.perf_counter()
    page.goto(url)
    page.wait_for_selector((NEW_ROOT + "[data-drawn='1']") if new else (OLD_PLOT + "[data-drawn]"), timeout=timeout_ms)
    out["first_drawn_s"] = time.perf_counter() - t
    if new:
        out["points_drawn"], out["panels_drawn"] = page.evaluate(
            "() => { const s = window.__explorerScatter.get('proj').state; return [s.n, s.P]; }"
        )
        # the grey backdrops a selection is drawn over are made while the page is idle after the first
        # drawing (one panel per task): a person looks at the picture for that long before a lasso
        page.wait_for_function("() => window.__explorerScatter.get('proj').state.backdropsReady()", timeout=timeout_ms)
        out["drawn_to_backdrops_s"] = time.perf_counter() - t - out["first_drawn_s"]
    target = (NEW_ROOT + " .explorer-panel[data-panel='0'] canvas.overlay") if new else (OLD_PLOT + " .nsewdrag")
    page.locator(target).first.scroll_into_view_if_needed()
    box = page.locator(target).first.bounding_box()
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, min(box["width"], box["height"]) / 5
    page.mouse.move(cx - r, cy - r)
    page.mouse.down()
    page.evaluate(FRAMES)
    t = time.perf_counter()
    moves = 0
    for x, y in ((cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy - r + 2)):
        page.mouse.move(x, y, steps=6)
        moves += 6
    out["lasso_drag_s"] = time.perf_counter() - t
    out["lasso_per_move_ms"] = out["lasso_drag_s"] * 1000 / moves
    worst, frames = page.evaluate(STOP_FRAMES)
    out["lasso_worst_frame_ms"], out["lasso_frames"] = worst, frames
    t = time.perf_counter()
    page.mouse.up()
    if new:
        page.wait_for_selector(NEW_ROOT + "[data-highlighted]", timeout=timeout_ms)
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")  # painted
        out["release_to_all_panels_s"] = time.perf_counter() - t
    page.wait_for_function("document.body.innerText.includes('selected images')", timeout=timeout_ms)
    selected = int(page.get_by_text("selected images").first.inner_text().split()[0].replace(",", ""))
    _wait_images(page, min(48, selected), timeout_ms)
    out["release_to_grid_images_s"] = time.perf_counter() - t
    if not new:
        page.wait_for_function(OLD_ALL_PANELS, arg=selected, timeout=timeout_ms)
        out["release_to_all_panels_s"] = time.perf_counter() - t
    out["selected"] = float(selected)
    if new:  # hover: a point of the last panel, its thumbnail beside the cursor
        x, y = page.evaluate(
            "() => { const s = window.__explorerScatter.get('proj').state; return s.pointOnScreen(s.P - 1, 12345 % s.n); }"
        )
        page.mouse.move(x, y)
        t = time.perf_counter()
        page.wait_for_function(
            "() => { const i = document.querySelector('.explorer-tip img'); return i && i.complete && i.naturalWidth > 0; }",
            timeout=timeout_ms,
        )
        out["hover_to_thumbnail_s"] = time.perf_counter() - t
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    out["js_heap_mb"] = metrics.get("JSHeapUsedSize", float("nan")) / 1e6
    out["detail"] = page.evaluate("() => (window.__explorerTimes || {}).proj || {}")
    out["chromium_rss_mb"] = _chromium_rss_mb()
    page.close()
    return out


def synthetic(args) -> None:
    from playwright.sync_api import sync_playwright

    trees = [("this tree", ROOT)]
    worktree = None
    if args.before:
        worktree = Path(tempfile.mkdtemp(prefix="before_")) / "tree"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(worktree), args.before],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        trees.insert(0, (f"before ({args.before})", worktree))
    rows = []
    try:
        for n, panels in args.synthetic:
            for label, tree in trees:
                port = free_port()
                base = f"http://127.0.0.1:{port}"
                env = {**os.environ, **MALLOC, "SYNTH_N": str(n), "SYNTH_PANELS": str(panels), "PYTHONPATH": str(tree)}
                page_file = ROOT / "bench" / "synthetic_page.py"
                if (
                    tree != ROOT
                ):  # at the tree's root, where Streamlit serves its static/ (the plotly view loaded plotly.js from there)
                    page_file = Path(shutil.copy(page_file, tree / "synthetic_page.py"))
                script = str(page_file)
                if (tree / "explorer" / "ui" / "server_app.py").exists():  # the thumbnails' route is an st.App's own
                    script = str(tree / "synthetic_app.py")
                    Path(script).write_text(
                        "import streamlit as st\nfrom explorer.ui import server_app\n"
                        f"app = st.App({str(page_file)!r}, routes=server_app.routes())\n"
                    )
                launch = (
                    "import sys\ntry:\n from explorer.ui import thumbs; thumbs.install()\nexcept (ImportError, AttributeError): pass\n"
                    "from streamlit.web import cli\n"
                    f"sys.argv = ['streamlit', 'run', {script!r}, '--server.port', '{port}',"
                    " '--server.address', '127.0.0.1', '--server.headless', 'true', '--server.enableStaticServing', 'true']\n"
                    "sys.exit(cli.main())"
                )
                with tempfile.NamedTemporaryFile("w+", suffix=".log") as log:
                    proc = subprocess.Popen(
                        [sys.executable, "-c", launch], cwd=tree, env=env, stdout=log, stderr=subprocess.STDOUT
                    )
                    try:
                        while not healthy(base):
                            if proc.poll() is not None:
                                raise RuntimeError(Path(log.name).read_text()[-3000:])
                            time.sleep(0.3)
                        with sync_playwright() as p:
                            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                            new = tree == ROOT
                            for v in range(
                                args.visits + 1
                            ):  # the first one warms: the page's data made and cached once
                                row = {"tree": label, "n": n, "panels": panels}
                                try:
                                    visit(browser, base, new, args.timeout * 1000, row)
                                except (
                                    Exception
                                ) as e:  # a view that cannot finish in time: say which step, keep the rest
                                    row["error"] = str(e).splitlines()[0]
                                if v or "error" in row:
                                    rows.append(row)
                                if "error" in row:
                                    break
                            browser.close()
                    finally:
                        proc.terminate()
                        proc.wait(timeout=60)
    finally:
        if worktree is not None:
            subprocess.run(["git", "worktree", "remove", "--force", str(worktree)], cwd=ROOT, capture_output=True)
    _report(rows, args.out)


def _report(rows: list[dict], out: str) -> None:
    result = {"machine": _machine(), "rows": rows}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    print(result["machine"])
    print(
        "| view | points x panels | first drawn | worst frame while drawing the lasso | release -> all panels highlighted | release -> grid's images | hover -> thumbnail | JS heap |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")

    def cell(r: dict, key: str, fmt: str) -> str:
        return (
            fmt.format(r[key])
            if key in r
            else ("no thumbnail" if key.startswith("hover") and "error" not in r else "did not finish")
        )

    for r in rows:
        print(
            f"| {r['tree']} | {r['n']:,} x {r['panels']} | {cell(r, 'first_drawn_s', '{:.1f} s')} | "
            f"{cell(r, 'lasso_worst_frame_ms', '{:.0f} ms')} | {cell(r, 'release_to_all_panels_s', '{:.2f} s')} | "
            f"{cell(r, 'release_to_grid_images_s', '{:.2f} s')} | {cell(r, 'hover_to_thumbnail_s', '{:.2f} s')} | "
            f"{cell(r, 'js_heap_mb', '{:.0f} MB')} |" + (f" ({r['error']})" if "error" in r else "")
        )


def _machine() -> str:
    return f"{os.cpu_count()} cores, {cpu_model()}, headless Debian chromium (software WebGL)"


def _size(text: str) -> tuple[int, int]:
    n, _, panels = text.partition("x")
    return int(n), int(panels or 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", help="the folder (as bench/scale_dataset.py made it)")
    ap.add_argument("--cache-dir")
    ap.add_argument(
        "--synthetic",
        type=_size,
        nargs="+",
        metavar="NxPANELS",
        help="measure the projection view alone on made-up points, e.g. 100000x8 1000000x1",
    )
    ap.add_argument(
        "--before", help="with --synthetic: also measure this commit's view, in the same run (a git worktree)"
    )
    ap.add_argument("--timeout", type=int, default=300, help="seconds any one step may take")
    ap.add_argument("--projection", default="pca")
    ap.add_argument("--visits", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "dashboard_scale.json"))
    args = ap.parse_args()
    if args.synthetic:
        synthetic(args)
        return
    if not args.data or not args.cache_dir:
        ap.error("a folder and --cache-dir, or --synthetic")
    from playwright.sync_api import sync_playwright

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **MALLOC, "EXPLORER_CACHE_DIR": args.cache_dir, "NUMBA_THREADING_LAYER": "omp"}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        with open(log, "w") as fh:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "explorer.ui.serve",
                    "--mode",
                    "local",
                    "--server.port",
                    str(port),
                    "--server.address",
                    "127.0.0.1",
                ],
                cwd=ROOT,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
            )
        try:
            while not healthy(base):
                if proc.poll() is not None:
                    raise RuntimeError(log.read_text()[-3000:])
                time.sleep(0.3)
            url = (
                base
                + "/?"
                + urllib.parse.urlencode({"data": args.data, "projection": args.projection, "max_images": 0})
            )
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                t = time.perf_counter()
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.goto(url)
                page.wait_for_selector(NEW_ROOT + "[data-drawn='1']", timeout=1_800_000)
                first = time.perf_counter() - t
                page.close()
                t = time.time()  # a warm server: its one-off background UMAP compile (~20 s of CPU) done
                while "UMAP warm-up done" not in log.read_text(errors="replace") and time.time() - t < 300:
                    time.sleep(0.5)
                rows = []
                for _ in range(args.visits):
                    v = visit(browser, url, True, args.timeout * 1000)
                    rows.append(
                        {"tree": "this tree", "n": int(v["points_drawn"]), "panels": int(v["panels_drawn"]), **v}
                    )
                # the floor, in the same run: a bare Streamlit page drawing one plotly scatter of 400 points
                floor = bare_visits(browser, args.visits)
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    print(f"first visit (reads the folder, records it): {first:.1f} s")
    bare = sorted(floor)[len(floor) // 2]
    drawn = sorted(r["first_drawn_s"] for r in rows if "first_drawn_s" in r)
    print(
        f"bare Streamlit page, one plotly scatter of 400 points: {', '.join(f'{x:.2f} s' for x in floor)} (median {bare:.2f} s)"
    )
    if drawn:
        print(
            f"this view, first drawn: median {drawn[len(drawn) // 2]:.2f} s = {drawn[len(drawn) // 2] / bare:.2f}x the bare page"
        )
    rows.append({"tree": "bare page (floor)", "n": 400, "panels": 1, "first_drawn_s": bare, "visits_s": floor})
    _report(rows, args.out)


if __name__ == "__main__":
    main()
