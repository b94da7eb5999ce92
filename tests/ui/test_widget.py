"""The notebook view (explorer/output/widget.py): the kernel side (points, thumbnails, the selection
trait) in Python, and the anywidget module drawn in Debian's chromium against a model object that
keeps anywidget's model interface (get, set, on, off, send, save_changes), its kernel messages
answered by the widget's own Python handler."""

from __future__ import annotations

import base64
import json
import os
import shutil

import pytest

import explorer

pytestmark = pytest.mark.slow  # a real model and a browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
LAYERS = ["features.14", "flatten"]


@pytest.fixture(scope="module")
def comp(tmp_path_factory: pytest.TempPathFactory) -> explorer.Comparison:
    return explorer.compare(
        "sample:clothing",
        layers=LAYERS,
        max_images=60,
        cache_dir=tmp_path_factory.mktemp("cache"),
        progress=False,
        leaderboard=False,
    )


def _sent(widget: object) -> list[tuple[dict, list]]:
    out: list[tuple[dict, list]] = []
    widget.send = lambda content, buffers=None: out.append((content, list(buffers or [])))  # type: ignore[attr-defined]
    return out


def test_the_kernel_side_of_the_widget(comp: explorer.Comparison) -> None:
    w = comp.show(colour_by="class")
    head_len = int.from_bytes(w.points[:4], "little")
    head = json.loads(w.points[4 : 4 + head_len])
    assert head["n"] == 60 and [p["title"].split(" ·")[0] for p in head["panels"]] == LAYERS and w.thumbnails
    sent = _sent(w)
    w._answer(w, {"type": "thumbnail", "index": 3}, [])
    w._answer(w, {"type": "thumbnail", "index": 999}, [])
    assert sent[0][0] == {"type": "thumbnail", "index": 3} and sent[0][1][0][:2] == b"\xff\xd8"  # a JPEG
    assert sent[1] == ({"type": "thumbnail", "index": 999}, [])  # out of range: no image, no error
    rows = w.select("shoes")
    assert rows == comp.selection("shoes") and list(w.selection()["label"].unique()) == ["shoes"]
    w.selected = [5, 2, 2]
    assert w.selected == [2, 5]
    with pytest.raises(Exception, match="between 0 and 59"):
        w.selected = [60]
    with pytest.raises(ValueError, match="colour_by='size'"):
        comp.show(colour_by="size")
    features_only = explorer.compare_features(
        {k: comp.features(k) for k in LAYERS}, labels=comp.dataset.labels, progress=False
    )
    assert not features_only.show().thumbnails  # no images to show


HARNESS = """
<!doctype html><html><body><div id="w" style="width:1200px"></div>
<script type="module">
const esm = %(esm)s;
const raw = Uint8Array.from(atob(%(points)s), (c) => c.charCodeAt(0));
const state = { points: new DataView(raw.buffer), selected: [], clicked: null, thumbnails: true };
const listeners = {};
window.saved = [];
window.model = {
  get: (k) => state[k],
  set: (k, v) => { state[k] = v; (listeners["change:" + k] || []).forEach((f) => f()); },
  save_changes: () => window.saved.push({ selected: state.selected, clicked: state.clicked }),
  on: (e, f) => { (listeners[e] = listeners[e] || []).push(f); },
  off: (e, f) => { listeners[e] = (listeners[e] || []).filter((g) => g !== f); },
  send: async (msg) => {
    const [reply, b64] = await window.kernel(msg);
    const buffers = b64 ? [Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer] : [];
    (listeners["msg:custom"] || []).forEach((f) => f(reply, buffers));
  },
};
const style = document.createElement("style");
style.textContent = %(css)s;
document.head.appendChild(style);
const mod = await import(URL.createObjectURL(new Blob([esm], { type: "text/javascript" })));
mod.default.render({ model: window.model, el: document.getElementById("w") });
</script></body></html>
"""


@pytest.mark.browser
@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian chromium not installed")
def test_the_widget_draws_selects_both_ways_and_shows_thumbnails(comp: explorer.Comparison, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    w = comp.show()
    sent = _sent(w)

    def kernel(msg: dict) -> list:
        w._answer(w, msg, [])
        reply, buffers = sent.pop()
        return [reply, base64.b64encode(buffers[0]).decode() if buffers else None]

    page_file = tmp_path / "widget.html"
    page_file.write_text(
        HARNESS
        % {
            "esm": json.dumps(w._esm),
            "css": json.dumps(w._css),
            "points": json.dumps(base64.b64encode(w.points).decode()),
        }
    )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.expose_function("kernel", kernel)
        page.goto(page_file.as_uri())
        grid = page.locator(".explorer-projections[data-drawn='1']")
        grid.wait_for(timeout=30_000)
        assert page.locator(".explorer-panel").count() == len(LAYERS)
        # from Python to every panel: setting `selected` highlights those images
        page.evaluate("window.model.set('selected', [1, 2, 3])")
        page.locator(".explorer-projections[data-highlighted='3']").wait_for(timeout=10_000)
        # from the browser to Python: a box over the whole first panel selects every image
        page.get_by_role("button", name="Box").click()
        box = page.locator(".explorer-panel canvas.overlay").first.bounding_box()
        page.mouse.move(box["x"] + 2, box["y"] + 2)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, steps=5)
        page.mouse.move(box["x"] + box["width"] - 2, box["y"] + box["height"] - 2, steps=5)
        page.mouse.up()
        page.locator(".explorer-projections[data-highlighted='60']").wait_for(timeout=10_000)
        assert page.evaluate("window.saved[window.saved.length - 1].selected.length") == 60
        # hover: the nearest image's thumbnail, asked of the kernel once, shown beside the cursor
        x, y = page.evaluate("document.getElementById('w').explorerScatter.pointOnScreen(1, 7)")
        page.mouse.move(x + 1, y + 1)
        page.wait_for_function(
            "() => { const i = document.querySelector('.explorer-tip img');"
            " return i && i.src.startsWith('blob:') && i.naturalWidth > 0; }",
            timeout=10_000,
        )
        assert comp.dataset.names[
            page.evaluate("document.getElementById('w').explorerScatter.hovered")
        ] in page.inner_text(".explorer-tip")
        page.screenshot(path=str(tmp_path / "widget.png"))
        browser.close()
    assert errors == []
