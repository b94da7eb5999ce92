"""Real-browser tests: Debian's chromium driven by Python Playwright against a live server.

Screenshots are saved under artifacts/ (look at them)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import pytest

from .conftest import make_class_folders, zip_folder

ROOT = Path(__file__).resolve().parents[1]
ART = ROOT / "artifacts"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.browser, pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")]
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]  # fmt: skip


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _health(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


@contextlib.contextmanager
def serve(mode: str):
    """The dashboard as scripts/run.sh starts it, in `mode`, on a free loopback port."""
    port = _port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "EXPLORER_WORKERS": "1", "EXPLORER_MAX_PENDING": "8"}
    proc = subprocess.Popen([sys.executable, "-m", "explorer.ui.serve", "--mode", mode, "--server.port", str(port),
                             "--server.address", "127.0.0.1"], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    t0 = time.time()
    while not _health(url):
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        assert time.time() - t0 < 120, "server did not start"
        time.sleep(0.5)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def server():
    with serve("local") as url:
        yield url


@pytest.fixture(scope="module")
def demo_server():
    with serve("demo") as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    ART.mkdir(exist_ok=True)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def _open(browser, url: str):
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(url)
    page.wait_for_selector(".js-plotly-plot", timeout=600_000)
    return page


def test_first_visit_renders_projection(server, browser) -> None:
    page = _open(browser, server)
    assert page.locator(".js-plotly-plot").count() >= 1
    assert "features.17.conv.3" in page.inner_text("body")
    page.screenshot(path=str(ART / "first_visit.png"))
    page.close()


PLOT = ".st-key-proj .js-plotly-plot"
DRAWN = PLOT + "[data-drawn]"


def _lasso_first_panel(page) -> None:
    box = page.locator(PLOT + " .nsewdrag").first.bounding_box()  # the first layer's panel
    x0, y0, x1, y1 = box["x"] + 3, box["y"] + 3, box["x"] + box["width"] - 3, box["y"] + box["height"] - 3
    page.mouse.move(x0, y0)
    page.mouse.down()
    for x, y in ((x1, y0), (x1, y1), (x0, y1), (x0, y0 + 5)):  # a lasso around the whole panel
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


# scatter.js draws one trace per colour group per panel (meta "points"), one ring trace per panel
# (meta "ring") and the path (meta "path")
SELECTED_PER_PANEL = """(sel) => { const gd = document.querySelector(sel); const per = {};
  for (const t of gd.data) if (t.meta === 'points') per[t.xaxis] = (per[t.xaxis] || 0) + (t.selectedpoints || []).length;
  return Object.values(per); }"""


def _selected_per_panel(page, plot: str) -> list[int]:
    return page.evaluate(SELECTED_PER_PANEL, plot)


def test_the_modebar_covers_no_panel_title(server, browser) -> None:
    """Plotly's modebar (shown on hover, top right) sat over the top-right panel's title."""
    page = _open(browser, server)
    page.wait_for_selector(DRAWN, timeout=120_000)
    box = page.locator(DRAWN).bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.8, box["y"] + box["height"] * 0.3)
    bar = page.locator(PLOT + " .modebar").bounding_box()
    titles = [t.bounding_box() for t in page.locator(PLOT + " .annotation-text").all()]
    assert bar is not None and len(titles) == 8

    def overlap(a: dict, b: dict) -> bool:
        return a["x"] < b["x"] + b["width"] and b["x"] < a["x"] + a["width"] and a["y"] < b["y"] + b["height"] and b["y"] < a["y"] + a["height"]

    assert not [t for t in titles if overlap(bar, t)]
    page.close()


def test_lasso_in_one_panel_selects_the_same_images_in_every_panel(server, browser) -> None:
    page = _open(browser, server)
    page.wait_for_selector(DRAWN, timeout=120_000)
    _lasso_first_panel(page)
    page.wait_for_function("document.body.innerText.includes('selected images')", timeout=60_000)
    header = page.get_by_text("selected images").first.inner_text()
    n = int(header.split()[0].replace(",", ""))
    assert n >= 300  # (nearly) every one of the 400 points lies in the panel
    # the same images highlighted in all 8 panels (the other panels after the images have loaded)
    page.wait_for_function(f"(n) => {{ const c = ({SELECTED_PER_PANEL})('{PLOT}'); return c.length === 8 && c.every(v => v === n); }}",
                           arg=n, timeout=30_000)  # fmt: skip
    page.wait_for_function("document.querySelectorAll('[data-testid=\"stImage\"]').length >= 48", timeout=30_000)  # the grid
    page.screenshot(path=str(ART / "lasso_selection.png"), full_page=True)
    page.get_by_role("tab", name="Layer similarity").click()  # ...and in the two-layer view
    page.wait_for_selector(".st-key-cka_pair .js-plotly-plot[data-drawn]", timeout=60_000)
    page.wait_for_function(f"(n) => {{ const c = ({SELECTED_PER_PANEL})('.st-key-cka_pair .js-plotly-plot'); return c.length === 2 && c.every(v => v === n); }}",
                           arg=n, timeout=30_000)  # fmt: skip
    page.screenshot(path=str(ART / "lasso_in_cka_pair.png"), full_page=True)
    page.close()


def _point_on_screen(page, axis: str) -> tuple[float, float]:
    """Where the first point of the panel on `axis` (x, x2, ...) is drawn."""
    return tuple(page.evaluate(
        """([sel, axis]) => { const gd = document.querySelector(sel);
        const t = gd._fullData.findIndex(tr => tr.meta === 'points' && tr.xaxis === axis && tr.x.length > 0); const i = 0;
        const tr = gd._fullData[t];
        const xa = gd._fullLayout[tr.xaxis.replace('x', 'xaxis')], ya = gd._fullLayout[tr.yaxis.replace('y', 'yaxis')];
        const r = gd.getBoundingClientRect();
        return [r.left + xa._offset + xa.d2p(tr.x[i]), r.top + ya._offset + ya.d2p(tr.y[i])]; }""", [PLOT, axis]))  # fmt: skip


def test_clicking_a_point_shows_its_image_neighbours_and_path(server, browser) -> None:
    page = _open(browser, server)
    page.wait_for_selector(DRAWN, timeout=120_000)
    page.locator(PLOT).scroll_into_view_if_needed()
    x, y = _point_on_screen(page, "x8")  # a point of the last panel
    page.mouse.click(x, y)
    page.wait_for_function("document.body.innerText.includes('closest images to')", timeout=60_000)
    side = page.locator('[data-testid="stColumn"]').filter(has=page.locator('[data-testid="stImage"]')).first
    assert side.locator('[data-testid="stImage"]').count() >= 1  # the image itself, beside the chart
    rings = page.evaluate(f"() => document.querySelector('{PLOT}').data.filter(t => t.meta === 'ring').map(t => t.x.length)")
    assert rings == [1] * 8  # ringed in every panel
    path = page.evaluate(f"() => document.querySelector('{PLOT}').data.find(t => t.meta === 'path').x.length")
    assert path == 8  # its path through the 8 aligned panels
    page.wait_for_function("document.querySelectorAll('[data-testid=\"stImage\"]').length >= 1 + 8 * 6",
                           timeout=30_000)  # fmt: skip  (+ 6 neighbours per layer)
    page.screenshot(path=str(ART / "clicked_point.png"), full_page=True)
    page.close()


def test_search_by_class_highlights_and_follows_an_image(server, browser) -> None:
    page = _open(browser, server)
    page.wait_for_selector(DRAWN, timeout=120_000)
    cls = page.evaluate("() => document.querySelector('.explorer-legend').innerText.split('\\n')[0].trim()")
    field = page.locator(".st-key-find input")
    field.fill(cls)
    field.press("Enter")
    page.wait_for_function("/[0-9,]+ matches/.test(document.body.innerText)", timeout=60_000)
    n = int(page.get_by_text("matches").first.inner_text().split()[0].replace(",", ""))
    assert n > 0
    page.wait_for_function(f"() => ({SELECTED_PER_PANEL})('{PLOT}').every(v => v === {n})", timeout=30_000)
    page.locator(".st-key-find_pick").click()
    page.get_by_role("option").first.click()
    page.wait_for_function("document.body.innerText.includes('closest images to')", timeout=60_000)
    page.screenshot(path=str(ART / "search.png"), full_page=True)
    page.close()


def test_colour_by_switches_every_panel_to_its_own_probe(server, browser) -> None:
    page = _open(browser, server)
    page.wait_for_selector(DRAWN, timeout=120_000)
    colours = f"() => [...new Set(document.querySelector('{PLOT}').data.filter(t => t.meta === 'points' && t.x.length).map(t => t.marker.color))]"
    assert len(page.evaluate(colours)) == 10  # one per class
    page.get_by_text("probe correct / wrong").click()
    page.wait_for_function("document.querySelector('.explorer-legend') && document.querySelector('.explorer-legend').innerText.includes('wrong')",
                           timeout=60_000)  # fmt: skip
    page.wait_for_selector(DRAWN, timeout=60_000)
    page.wait_for_function(f"() => ({colours})().length <= 3", timeout=30_000)
    assert set(page.evaluate(colours)) <= {"#2CA02C", "#D62728", "#C8C8C8"}  # correct, wrong (and not scored)
    page.screenshot(path=str(ART / "colour_by_correct.png"), full_page=True)
    page.close()


def test_a_local_folder_is_opened_by_its_path_and_coloured_by_a_labels_csv_column(server, browser, tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "mine", per_class=5)
    rows = ["filename,label,shade"] + [f"{p.relative_to(data).as_posix()},{p.parent.name},{'light' if i % 3 else '[dark](https://example.com/x)'}"
                                       for i, p in enumerate(sorted(data.rglob("*.jpg")))]  # fmt: skip
    (data / "labels.csv").write_text("\n".join(rows) + "\n")
    page = _open(browser, server)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset").click()
    page.get_by_role("option", name="A folder or zip on this machine").click()
    path = page.locator(".st-key-data_path input")
    path.fill(str(data))
    path.press("Enter")
    page.wait_for_timeout(1000)
    page.get_by_role("button", name="Run analysis").click()
    page.get_by_role("tab", name="Dataset").click()
    page.wait_for_function("/Images\\s*15\\s*Classes\\s*3/.test(document.body.innerText)", timeout=300_000)
    assert "Mode: local" in page.inner_text("body")
    page.screenshot(path=str(ART / "local_folder.png"), full_page=True)
    page.get_by_role("tab", name="Projections").click()
    page.wait_for_selector(DRAWN, timeout=120_000)
    page.get_by_text("labels.csv: shade").click()  # the column after the label
    page.wait_for_function("document.querySelector('.explorer-legend').innerText.includes('light')", timeout=60_000)
    colours = f"() => [...new Set(document.querySelector('{PLOT}').data.filter(t => t.meta === 'points' && t.x.length).map(t => t.marker.color))]"
    page.wait_for_function(f"() => ({colours})().length === 2", timeout=30_000)
    assert "[dark](https://example.com/x)" in page.inner_text(".explorer-legend")  # a value is text, not a link
    assert page.locator('a[href^="https://example.com"]').count() == 0
    page.screenshot(path=str(ART / "colour_by_column.png"), full_page=True)
    page.close()


def test_demo_mode_refuses_a_server_path_and_an_over_limit_request(demo_server, browser) -> None:
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(demo_server + "/?data=/etc&max_images=50000&layers=" + urllib.parse.quote("[Sign in](https://example.com/x)"))
    page.wait_for_selector(".js-plotly-plot", timeout=600_000)
    body = page.inner_text("body")
    assert "has no layer [Sign in](https://example.com/x)" in body  # the link's words as text...
    assert page.locator('a[href^="https://example.com"]').count() == 0  # ...never a link on the page
    assert "opens only its bundled samples and your uploads, not a path on the server" in body
    assert "analyses at most 2,000 images per run" in body
    assert "Mode: demo" in body
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset").click()
    assert page.get_by_role("option", name="A folder or zip on this machine").count() == 0
    page.keyboard.press("Escape")
    page.screenshot(path=str(ART / "demo_refusals.png"), full_page=True)
    page.close()


def test_demo_mode_refuses_a_costly_model_with_what_would_fit(demo_server, browser) -> None:
    page = browser.new_page(viewport={"width": 1500, "height": 1000})
    page.goto(demo_server + "/?model=vit_h_14&weights=random")
    page.wait_for_function("document.body.innerText.includes(\"over this demo's budget\")", timeout=300_000)
    body = page.inner_text("body")
    assert "400 images through vit_h_14 need about" in body and "at most 59 images" in body
    assert "Traceback" not in body
    page.screenshot(path=str(ART / "demo_costly_model.png"), full_page=True)
    page.close()


def test_clicking_a_cka_cell_shows_that_pair(server, browser) -> None:
    page = _open(browser, server)
    page.get_by_role("tab", name="Layer similarity").click()
    chart = page.locator(".st-key-cka_chart .js-plotly-plot")
    chart.wait_for(timeout=60_000)
    n = page.evaluate("() => document.querySelector('.st-key-cka_chart .js-plotly-plot').data[0].x.length")
    names = page.evaluate("() => document.querySelector('.st-key-cka_chart .js-plotly-plot').data[0].x")
    picker_a, picker_b = page.locator(".st-key-cka_a input"), page.locator(".st-key-cka_b input")
    assert (picker_a.input_value(), picker_b.input_value()) == (names[0], names[-1])  # the default pair
    box = chart.locator(".nsewdrag").first.bounding_box()
    row, col = 1, n - 2  # another cell: rows run top to bottom, columns left to right
    page.mouse.click(box["x"] + (col + 0.5) * box["width"] / n, box["y"] + (row + 0.5) * box["height"] / n)
    page.wait_for_function(
        "(want) => { const e = document.querySelector('.st-key-cka_a input'); return e && e.value === want; }",
        arg=names[row], timeout=60_000,
    )  # fmt: skip
    assert page.locator(".st-key-cka_b input").input_value() == names[col]
    page.locator(".st-key-cka_pair .js-plotly-plot").last.wait_for(timeout=60_000)
    page.screenshot(path=str(ART / "cka_cell.png"), full_page=True)
    page.close()


def test_export_tab_downloads_the_report_and_metrics(server, browser, tmp_path: Path) -> None:
    page = _open(browser, server)
    page.get_by_role("tab", name="Export").click()
    with page.expect_download(timeout=120_000) as got:
        page.get_by_role("button", name="report.html").click()
    report = tmp_path / "report.html"
    got.value.save_as(report)
    html = report.read_text()
    assert html.count('class="plotly-graph-div"') >= 4 and "<script src=" not in html  # self-contained
    with page.expect_download(timeout=60_000) as got:
        page.get_by_role("button", name="metrics.csv").click()
    got.value.save_as(tmp_path / "metrics.csv")
    assert (tmp_path / "metrics.csv").read_text().startswith("model,layer,node,depth,dim")
    page.close()


def test_cancel_stops_a_running_analysis(server, browser) -> None:
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    page.goto(server + "/?data=sample:digits&model=mobilenet_v2&projection=pca&max_images=1500&layers=features.9.conv.2")
    page.wait_for_function("document.body.innerText.includes('extracting')", timeout=300_000)
    page.get_by_role("button", name="Cancel").click()
    page.wait_for_function("document.body.innerText.includes('Analysis cancelled')", timeout=120_000)
    page.screenshot(path=str(ART / "cancelled.png"))
    assert "Traceback" not in page.inner_text("body")
    page.get_by_role("button", name="Run analysis").click()  # the session may start again
    page.wait_for_function("document.body.innerText.includes('extracting') || document.querySelector('.js-plotly-plot')",
                           timeout=300_000)  # fmt: skip
    if page.get_by_role("button", name="Cancel").count():
        page.get_by_role("button", name="Cancel").click()  # leave the worker free for the next test
    page.close()


def _upload_and_run(page, path: Path) -> None:
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset").click()
    page.get_by_role("option", name="Upload a zip").click()
    page.locator('input[type="file"]').set_input_files(str(path))
    page.wait_for_timeout(1500)
    page.get_by_role("button", name="Run analysis").click()


def test_upload_zip_runs_end_to_end(server, browser, tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "colors", per_class=8)
    archive = zip_folder(data, tmp_path / "colors.zip", prefix="colors/")
    page = _open(browser, server)
    _upload_and_run(page, archive)
    page.get_by_role("tab", name="Dataset").click()
    page.wait_for_function("/Images\\s*24\\s*Classes\\s*3/.test(document.body.innerText)", timeout=300_000)
    assert "green" in page.inner_text("body")
    page.screenshot(path=str(ART / "upload_dataset.png"), full_page=True)
    page.get_by_role("tab", name="Separability").click()
    page.wait_for_timeout(1000)
    page.screenshot(path=str(ART / "upload_separability.png"))
    page.close()


def test_upload_images_with_labels_csv_and_a_broken_file(server, browser, tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "src", per_class=6)
    flat = tmp_path / "flat"
    flat.mkdir()
    rows = ["filename,label"]
    for img in sorted(data.rglob("*.jpg")):
        (flat / img.name).write_bytes(img.read_bytes())
        rows.append(f"{img.name},{img.parent.name}")
    (flat / "labels.csv").write_text("\n".join(rows) + "\n")
    (flat / "broken.jpg").write_bytes(b"this is not a jpeg")
    page = _open(browser, server)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset").click()
    page.get_by_role("option", name="Upload images").click()
    page.locator('input[type="file"]').set_input_files(sorted(str(p) for p in flat.iterdir()))
    page.wait_for_timeout(2000)
    page.get_by_role("button", name="Run analysis").click()
    page.get_by_role("tab", name="Dataset").click()
    # the Dataset tab's counters for this upload: 18 images in 3 classes, 1 file skipped
    page.wait_for_function("/Images\\s*18\\s*Classes\\s*3\\s*Skipped files\\s*1/.test(document.body.innerText)", timeout=300_000)
    body = page.inner_text("body")
    assert "green" in body and "Traceback" not in body
    page.screenshot(path=str(ART / "upload_files_dataset.png"), full_page=True)
    page.close()


def test_unsafe_zip_shows_message_and_app_keeps_working(server, browser, tmp_path: Path) -> None:
    bad = tmp_path / "evil.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("cats/a.jpg", b"x")
        zf.writestr("../../../tmp/[Sign in](https://evil.example/x).jpg", b"x")
    page = _open(browser, server)
    _upload_and_run(page, bad)
    page.wait_for_function("document.body.innerText.includes('Archive refused')", timeout=120_000)
    body = page.inner_text("body")
    assert "Traceback" not in body and "[Sign in](https:\u200b//evil.example/x).jpg" in body  # the entry's name as text...
    assert page.locator('a[href*="evil.example"]').count() == 0  # ...never a link
    page.screenshot(path=str(ART / "unsafe_zip.png"))
    assert _health(server)
    page.close()
    again = _open(browser, server)  # a fresh visitor still gets results
    assert again.locator(".js-plotly-plot").count() >= 1
    again.close()


# Remembers whether the page ever showed a queue position (jobs may finish before the test looks).
SAW_QUEUE_POSITION = """
new MutationObserver(() => {
  if (document.body && document.body.innerText.includes('Waiting in the queue')) window.__sawQueuePosition = true;
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def test_four_sessions_at_once_stay_served(server, browser) -> None:
    alive = {"ok": 0, "fail": 0}
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            alive["ok" if _health(server) else "fail"] += 1
            time.sleep(0.5)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    pages = []
    for i in range(4):  # each asks for a fresh, uncached analysis (a different layer each)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        page.add_init_script(SAW_QUEUE_POSITION)
        page.goto(server + f"/?data=sample:digits&model=mobilenet_v2&projection=pca&max_images=800&layers=features.{2 + i}.conv.2",
                  wait_until="commit", timeout=180_000)  # fmt: skip
        pages.append(page)
    for i, page in enumerate(pages):
        page.wait_for_function(
            "document.body.innerText.includes('position') || document.querySelector('.js-plotly-plot') !== null "
            "|| document.body.innerText.includes('busy')",
            timeout=180_000,
        )  # fmt: skip
        page.screenshot(path=str(ART / f"session_{i}.png"))
    waited = 0
    for i, page in enumerate(pages):
        page.wait_for_selector(".js-plotly-plot", timeout=300_000)
        waited += page.evaluate("window.__sawQueuePosition === true")
        page.wait_for_function(f"document.body.innerText.includes('features.{2 + i}.conv.2')", timeout=60_000)
        page.screenshot(path=str(ART / f"session_{i}_result.png"))
        page.close()
    stop.set()
    t.join()
    assert waited >= 1, "with one worker, at least one of four fresh sessions waits in the queue"
    assert alive["fail"] == 0 and alive["ok"] > 0, alive
