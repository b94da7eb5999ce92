"""Whether a *Run analysis* click followed at once by another interaction reaches an analysis.

Each visitor (a headless chromium on loopback, against the demo as scripts/run.sh starts it):
opens the page, waits for the sample's result, chooses a 30-photo zip, clicks *Run analysis* and
at once the *Dataset* tab, then waits 60 s for the upload's result or a sentence. A click that
got neither is "lost": the BackMsgs the page sent around it are printed (decoded), a screenshot is
kept in bench/results/run_clicks/, and Run is clicked once more to tell a lost click from a
stuck page. Several visitors at once load the 2 cores as a busy demo does.

    .venv/bin/python bench/bench_run_clicks.py --visitors 3 --rounds 12
    .venv/bin/python bench/bench_run_clicks.py --plain --fast-reruns --widen-ms 300  # as Community Cloud runs it

`--widen-ms 300` makes the server pause that long at the start of every script run, after it took
the run's request and before it applies the request's widget states (a `sitecustomize` on the
server's path delays `ScriptRunContext.reset`). A click is lost when another request arrives in
that window (Streamlit then raises the newer rerun at its first yield point, before the click's
trigger was applied); widening it shows whether the dashboard still honours such clicks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_demo as demo  # noqa: E402  (the demo page's markers and photo zips)
from serving import ARGS, CHROMIUM, ROOT, DemoServer  # noqa: E402

OUT = ROOT / "bench" / "results" / "run_clicks"
DONE = "/Images\\s*30/.test(document.body.innerText) || " + demo.ANY_SENTENCE


WIDEN_START = """\
import time
from streamlit.runtime.scriptrunner_utils.script_run_context import ScriptRunContext

_reset = ScriptRunContext.reset


def _slow_reset(self, *args, **kwargs):
    time.sleep({seconds})
    return _reset(self, *args, **kwargs)


ScriptRunContext.reset = _slow_reset
"""


def _decode(frame: bytes | str) -> object:
    """A sent websocket frame as a short summary: a rerun's triggers and tab, or the message kind."""
    from streamlit.proto.BackMsg_pb2 import BackMsg

    try:
        msg = BackMsg.FromString(frame if isinstance(frame, bytes) else frame.encode())
    except Exception:
        return f"undecodable ({len(frame)} bytes)"
    kind = msg.WhichOneof("type")
    if kind != "rerun_script":
        return kind
    states = [
        (w.id.rsplit("-", 1)[-1], w.WhichOneof("value"), str(getattr(w, w.WhichOneof("value")))[:40])
        for w in msg.rerun_script.widget_states.widgets
        if w.WhichOneof("value") and ("trigger" in w.WhichOneof("value") or w.id.endswith("-view"))
    ]
    return {"rerun": states, "fragment": msg.rerun_script.fragment_id}


def visitor(url: str, worker: int, rounds: int, tmp: Path, outcomes: list) -> None:
    from playwright.sync_api import sync_playwright

    rng = random.Random(worker)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for i in range(rounds):
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            sent: list[tuple[float, object]] = []
            page.on("websocket", lambda ws: ws.on("framesent", lambda f: sent.append((time.time(), f))))
            page.goto(url)
            page.wait_for_selector(demo.DRAWN, timeout=600_000)
            archive = tmp / f"photos_{worker}_{i}.zip"
            archive.write_bytes(demo._zip_of_photos(30, rng))
            page.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset").click()
            page.get_by_role("option", name="Upload a zip").click()
            page.locator('input[type="file"]').set_input_files(str(archive))
            page.wait_for_selector('[data-testid="stFileChip"]', timeout=120_000)
            page.wait_for_selector('[data-testid="stFileChipIconSpinner"]', state="detached", timeout=120_000)
            t_click = time.time()
            page.get_by_role("button", name="Run analysis").click()
            page.get_by_role("tab", name="Dataset").click()
            uploads = [t for t, f in sent if t < t_click and _decode(f) == "file_urls_request"]
            after_upload = round(t_click - uploads[-1], 2) if uploads else None  # s from the upload's start
            try:
                page.wait_for_function(DONE, timeout=60_000)
                outcomes.append({"worker": worker, "round": i, "outcome": "reached", "after_upload_s": after_upload})
                print(f"{time.strftime('%H:%M:%S')} visitor {worker} round {i}: reached", flush=True)
            except Exception:
                around = [(round(t - t_click, 2), _decode(f)) for t, f in sent if abs(t - t_click) < 3]
                OUT.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(OUT / f"lost_{worker}_{i}.png"), full_page=True)
                page.get_by_role("button", name="Run analysis").click()
                try:
                    page.wait_for_function(DONE, timeout=60_000)
                    again = "reached"
                except Exception:
                    again = "lost"
                outcomes.append(
                    {
                        "worker": worker,
                        "round": i,
                        "outcome": "lost",
                        "second_click": again,
                        "after_upload_s": after_upload,
                        "clicked_at": time.strftime("%H:%M:%S", time.localtime(t_click)),
                        "sent": around,
                    }
                )
                print(
                    f"{time.strftime('%H:%M:%S')} visitor {worker} round {i}: LOST (second click {again}); "
                    f"sent around the click: {around}",
                    flush=True,
                )
            page.close()
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--visitors", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--out", default=str(OUT / "run_clicks.json"))
    ap.add_argument(
        "--widen-ms",
        type=float,
        default=0.0,
        help="pause every script run this long between taking its request and applying its widget states",
    )
    ap.add_argument("--plain", action="store_true", help="start the server as `streamlit run app.py` (Community Cloud)")
    ap.add_argument("--fast-reruns", action="store_true", help="runner.fastReruns = true, as Community Cloud forces")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        if args.widen_ms:
            (tmp / "sitecustomize.py").write_text(WIDEN_START.format(seconds=args.widen_ms / 1000))
            os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp), os.environ.get("PYTHONPATH")]))
        server = DemoServer(
            tmp / "cache",
            tmp / "server.log",
            0.02,
            plain=args.plain,
            options=("--runner.fastReruns", "true") if args.fast_reruns else (),
        )
        server.start()
        outcomes: list[dict] = []
        try:
            threads = [
                threading.Thread(target=visitor, args=(server.url, w, args.rounds, tmp, outcomes))
                for w in range(args.visitors)
            ]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        finally:
            server.stop()
            OUT.mkdir(parents=True, exist_ok=True)
            (OUT / "server.log").write_text(server.log.read_text(errors="replace"))
    lost = sum(o["outcome"] == "lost" for o in outcomes)
    result = {
        "visitors": args.visitors,
        "rounds": args.rounds,
        "widen_ms": args.widen_ms,
        "plain": args.plain,
        "fast_reruns": args.fast_reruns,
        "clicks": len(outcomes),
        "lost": lost,
        "outcomes": outcomes,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"{lost} of {len(outcomes)} clicks lost; {args.out}", flush=True)


if __name__ == "__main__":
    main()
