"""The dashboard at scale (not a test): a local-mode server on a large folder whose analysis is cached.

Usage:
    .venv/bin/python bench/bench_dashboard_scale.py /work/scale/clothing100k --cache-dir /work/scale/cache_pca2 \\
        [--projection pca] [--visits 3] [--out bench/results/dashboard_scale.json]

The cache folder should hold the analysis already (run bench/bench_scale.py with the same
--cache-dir first): this measures the page, not the engine. A first visit reads the folder (and
records what it found, read_index.py); then, in headless Debian chromium (Playwright), each timed
visit measures page load -> every panel drawn (scatter.js marks its plot), a lasso over the middle
of the first panel -> the selected images' grid shown with its thumbnails loaded, a click on a
point -> its image beside the chart, and the browser's memory for the page (JS heap from the
DevTools protocol; the RSS of chromium's processes from /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

from serving import ARGS, CHROMIUM, MALLOC, free_port, healthy  # bench/serving.py (bench/ is on the path of a script run from it)

ROOT = Path(__file__).resolve().parents[1]
PLOT = ".st-key-proj .js-plotly-plot"


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
        arg=at_least, timeout=timeout_ms,
    )  # fmt: skip


def visit(browser, url: str) -> dict[str, float]:
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")
    out: dict[str, float] = {}
    t = time.perf_counter()
    page.goto(url)
    page.wait_for_selector(PLOT + "[data-drawn]", timeout=900_000)
    out["first_projection_s"] = time.perf_counter() - t
    times = page.evaluate("() => (window.__explorerTimes || {}).proj || {}")
    out["points_arrived_s"] = times.get("received", float("nan")) / 1000  # after navigation start
    out["plotly_draw_s"] = times.get("plotly_ms", float("nan")) / 1000
    out["detail"] = times
    out["points_per_panel"] = float(page.evaluate(
        f"() => document.querySelector('{PLOT}').data.filter(t => t.meta === 'points' && t.xaxis === 'x').reduce((a, t) => a + t.x.length, 0)"))  # fmt: skip
    box = page.locator(PLOT + " .nsewdrag").first.bounding_box()
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, min(box["width"], box["height"]) / 5
    page.mouse.move(cx - r, cy - r)
    page.mouse.down()
    t = time.perf_counter()
    for x, y in ((cx + r, cy - r), (cx + r, cy + r), (cx - r, cy + r), (cx - r, cy - r + 2)):
        page.mouse.move(x, y, steps=6)
    out["lasso_drag_s"] = time.perf_counter() - t  # plotly selects points live while the lasso is drawn
    t = time.perf_counter()
    page.mouse.up()
    page.wait_for_function("document.body.innerText.includes('selected images')", timeout=120_000)
    out["lasso_to_grid_header_s"] = time.perf_counter() - t
    _wait_images(page, 48, 120_000)
    out["lasso_to_images_s"] = time.perf_counter() - t
    selected = int(page.get_by_text("selected images").first.inner_text().split()[0].replace(",", ""))
    # the other panels: the lassoed one shows plotly's own selection, which it keeps from the lasso's outline
    page.wait_for_function(
        """(n) => { const gd = document.querySelector('.st-key-proj .js-plotly-plot'); const per = {};
        for (const t of gd.data) if (t.meta === 'points' && t.xaxis !== 'x') per[t.xaxis] = (per[t.xaxis] || 0) + (t.selectedpoints || []).length;
        const v = Object.values(per); return v.length > 0 && v.every(x => x === n); }""", arg=selected, timeout=120_000)  # fmt: skip
    out["lasso_to_all_panels_s"] = time.perf_counter() - t
    out["selection_detail"] = page.evaluate("() => { const t = (window.__explorerTimes || {}).proj || {};"
                                            " return {...(t.selection || {}), now: performance.now()}; }")  # fmt: skip
    out["selected"] = float(selected)
    metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
    out["js_heap_mb"] = metrics.get("JSHeapUsedSize", float("nan")) / 1e6
    out["chromium_rss_mb"] = _chromium_rss_mb()
    page.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", help="the folder (as bench/scale_dataset.py made it)")
    ap.add_argument("--cache-dir", required=True)
    ap.add_argument("--projection", default="pca")
    ap.add_argument("--visits", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "dashboard_scale.json"))
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, **MALLOC, "EXPLORER_CACHE_DIR": args.cache_dir, "NUMBA_THREADING_LAYER": "omp"}
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "server.log"
        with open(log, "w") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "explorer.ui.serve", "--mode", "local", "--server.port", str(port),
                                     "--server.address", "127.0.0.1"], cwd=ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)  # fmt: skip
        try:
            while not healthy(base):
                if proc.poll() is not None:
                    raise RuntimeError(log.read_text()[-3000:])
                time.sleep(0.3)
            url = base + "/?" + urllib.parse.urlencode({"data": args.data, "projection": args.projection, "max_images": 0})
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
                t = time.perf_counter()
                page = browser.new_page(viewport={"width": 1500, "height": 1000})
                page.goto(url)
                page.wait_for_selector(PLOT + "[data-drawn]", timeout=1_800_000)
                first = time.perf_counter() - t
                page.close()
                t = time.time()  # a warm server: its one-off background UMAP compile (~20 s of CPU) done
                while "UMAP warm-up done" not in log.read_text(errors="replace") and time.time() - t < 300:
                    time.sleep(0.5)
                visits = [visit(browser, url) for _ in range(args.visits)]
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    result = {"machine": f"{os.cpu_count()} cores", "url": url, "first_visit_reading_the_folder_s": first, "visits": visits}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"first visit (reads the folder, records it): {first:.1f} s")
    print("| visit | points per panel | points arrived | plotly drew them in | first projection drawn | lasso -> its images | -> highlighted in all panels | selected | JS heap | chromium RSS |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for i, v in enumerate(visits, 1):
        print(f"| {i} | {v['points_per_panel']:,.0f} | {v['points_arrived_s']:.1f} s | {v['plotly_draw_s']:.1f} s | "
              f"{v['first_projection_s']:.1f} s | {v['lasso_to_images_s']:.1f} s | {v['lasso_to_all_panels_s']:.1f} s | "
              f"{v['selected']:,.0f} | {v['js_heap_mb']:.0f} MB | {v['chromium_rss_mb']:.0f} MB |")  # fmt: skip


if __name__ == "__main__":
    main()
