"""Drive JupyterLab in Debian's chromium through the example notebook (scripts/check_jupyterlab.sh)."""

import sys
import time

from playwright.sync_api import sync_playwright

URL = sys.argv[1]
with sync_playwright() as p:
    b = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
    page = b.new_page(viewport={"width": 1500, "height": 1000})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(URL)
    page.wait_for_selector(".jp-Notebook", timeout=60000)
    time.sleep(5)
    # wait for kernel idle
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=30000)
    page.keyboard.press("Escape")
    page.locator(".jp-Notebook").click()
    page.keyboard.press("Control+Shift+C")
    page.keyboard.type("Run All Cells")
    time.sleep(1)
    page.keyboard.press("Enter")
    t0 = time.time()
    drawn = page.locator(".explorer-projections[data-drawn='1']")
    drawn.wait_for(timeout=600000)
    print("widget drawn after", round(time.time() - t0, 1), "s; panels:", page.locator(".explorer-panel").count())
    page.locator(".explorer-projections[data-highlighted]").first.wait_for(timeout=120000)
    print("highlighted:", page.locator(".explorer-projections").first.get_attribute("data-highlighted"))
    # hover: find a point via the element's state
    page.locator(".explorer-projections").first.scroll_into_view_if_needed()
    time.sleep(1)
    x, y = page.evaluate("""() => { const host = [...document.querySelectorAll('*')].find(e => e.explorerScatter);
        return host.explorerScatter.pointOnScreen(7, 3); }""")
    page.mouse.move(x + 1, y + 1)
    page.wait_for_function(
        "() => { const i = document.querySelector('.explorer-tip img'); return i && i.src.startsWith('blob:') && i.naturalWidth > 0; }",
        timeout=60000,
    )
    print("hover tip:", page.inner_text(".explorer-tip").replace("\n", " | "))
    page.screenshot(path="artifacts/notebook_view.png")
    # wait for the whole notebook to finish: last cell has an output
    page.wait_for_function(
        "() => { const c = document.querySelectorAll('.jp-Notebook .jp-CodeCell'); const last = c[c.length-1]; return last && last.querySelector('.jp-OutputArea-output'); }",
        timeout=600000,
    )
    errs = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()
    tracebacks = [e for e in errs if "Traceback" in e or "Error" in e]
    print("cells with tracebacks:", len(tracebacks), [t[:300] for t in tracebacks])
    print("page errors:", errors[:5])
    b.close()
    sys.exit(1 if tracebacks or errors else 0)
