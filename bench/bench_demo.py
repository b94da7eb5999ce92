"""Soak and fault benchmark of the demo (not a test): visitor sessions through real headless browsers
against a demo-mode server on a loopback address, then kill -9 of the server at random moments.

Usage:
    .venv/bin/python bench/bench_demo.py [--sessions 200] [--minutes 15] [--parallel 2] [--kills 10]
        [--cache-max-gb 0.02] [--out bench/results/demo_soak.json]
    .venv/bin/python bench/bench_demo.py --url http://127.0.0.1:18501 --pid PID --cache DIR --server-log LOG \
        --kills 0 --sessions 20  # a server started elsewhere: the container image (scripts/check_image.sh)

Visitors, in a fixed cycle: the bundled sample (the first visit's analysis), a small upload (a zip of
30 photos drawn from the sample: a new dataset, so a real extraction), a hostile upload (a zip
that climbs out of its folder), a hostile shard (the 3 KB WebDataset .tar whose pax record of
length 0 once stopped the demo), a hostile link (`?layers=` with a Markdown link; the page must show
it as text), a code link (`?model=os:abort`, refused outright), a cancel (an upload of 60 photos, cancelled once it runs), a costly model pick
(vit_h_14, refused by the demo's budget) and an over-limit link (a server path, 50,000 images).
Each visitor must end with a result, a queue position or one clear sentence; anything else
(a traceback, a timeout, a link on the page) is an error. Meanwhile the server's RSS, the cache's
size, the upload folders and the health endpoint's latency are sampled. The RSS is also read at
quiet moments, after the first 20 sessions, after 100 and at the end: the visitors stop starting
sessions, the server's CPU falls idle (its jobs have ended), and the RSS then is what the server
keeps, not what a running analysis happens to hold. Stops by itself after `--sessions` or
`--minutes`, whichever comes first.

Then, `--kills` times: a fresh analysis (a new stratified sample of the bundled photos) is started
and the server killed with SIGKILL at a random moment of it; after a restart the same analysis is
opened again and must draw, with no traceback in the log; `python -m explorer compare` on the same
cache must then give the metrics of the same analysis run uninterrupted in a cache of its own.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from serving import (  # bench/serving.py (bench/ is on the path of a script run from it)
    ARGS,
    CHROMIUM,
    MALLOC,
    ROOT,
    DemoServer,
    RunningServer,
)

SAMPLE = ROOT / "explorer" / "samples" / "clothing"
DRAWN = ".st-key-proj .explorer-projections[data-drawn='1']"  # the panels' own WebGL view (explorer/output/scatter/scatter.js)
POINTS = "(window.__explorerScatter && window.__explorerScatter.get('proj')?.state.debug().n) || 0"
UPLOADS = Path(tempfile.gettempdir()) / "explorer-uploads"
SENTENCES = ("Archive refused", "over this demo's budget", "opens only its bundled samples", "analyses at most",
             "Analysis cancelled", "the server is busy", "from your address", "still running",
             "Choose files to upload first", "its result was let go", "more than this server's cache holds",
             "is not an uncompressed tar", "serves only the models", "Waiting in the queue")  # fmt: skip
QUIET_AT = (20, 100)  # sessions after which the RSS is also read at a quiet moment (and at the end)
ANY_SENTENCE = " || ".join(f"document.body.innerText.includes({s!r})" for s in SENTENCES[:-1])


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def _upload_folders() -> set[Path]:
    return set(UPLOADS.glob("upload-*")) if UPLOADS.exists() else set()


class Sampler(threading.Thread):
    """Health latency every 0.5 s; RSS, cache size and upload folders every 2 s."""

    def __init__(self, server: DemoServer) -> None:
        super().__init__(daemon=True)
        self.server, self.stop_flag = server, threading.Event()
        self.health: list[float] = []
        self.health_errors = 0
        self.series: list[dict] = []
        self.older_folders = _upload_folders()  # another run's, not this one's to count

    def run(self) -> None:
        t0, last = time.time(), 0.0
        while not self.stop_flag.is_set():
            t = time.perf_counter()
            try:
                with urllib.request.urlopen(self.server.url + "/_stcore/health", timeout=10) as r:
                    r.read()
                self.health.append(time.perf_counter() - t)
            except OSError:
                self.health_errors += 1
            if time.time() - last >= 2:
                last = time.time()
                self.series.append(
                    {
                        "t": round(last - t0, 1),
                        "rss_mb": self.server.rss_mb(),
                        "cache_mb": _dir_bytes(self.server.cache) / 1e6,
                        "upload_folders": len(_upload_folders() - self.older_folders),
                    }
                )
            self.stop_flag.wait(0.5)


class QuietGate:
    """Stops the visitors between sessions while the server's RSS is read at a quiet moment."""

    def __init__(self, server: DemoServer, visitors: int, done: list) -> None:
        self.server, self.visitors, self.done = server, visitors, done
        self.cond = threading.Condition()
        self.holding, self.waiting = False, 0
        self.readings: list[dict] = []

    def after_session(self, count: int) -> None:
        with self.cond:
            if count in QUIET_AT:
                self.holding = True

    def _read_if_all_stopped(self) -> None:  # with the lock held
        if self.holding and self.waiting >= self.visitors:
            rss, waited = self.server.quiet_rss_mb()
            self.readings.append({"after_sessions": len(self.done), "rss_mb": rss, "waited_s": waited})
            print(f"quiet RSS after {len(self.done)} sessions: {rss:.0f} MB (server idle after {waited} s)", flush=True)
            self.holding = False
            self.cond.notify_all()

    def before_session(self) -> None:
        with self.cond:
            if not self.holding:
                return
            self.waiting += 1
            self._read_if_all_stopped()
            while self.holding:
                self.cond.wait()
            self.waiting -= 1

    def leave(self) -> None:
        with self.cond:
            self.visitors -= 1
            self._read_if_all_stopped()


def _pax_of_length_zero() -> bytes:
    """A shard whose pax record declares a length of 0 (tests/ui/test_browser.py builds the same)."""

    def block(name: bytes, size: int, kind: bytes) -> bytes:
        head = bytearray(512)
        head[: len(name)] = name
        head[100:108], head[124:136], head[136:148] = b"0000644\0", b"%011o\0" % size, b"00000000000\0"
        head[156:157], head[257:263] = kind, b"ustar\0"
        head[148:156] = b" " * 8
        head[148:156] = b"%06o\0 " % sum(head)
        return bytes(head)

    record = b"0 path=x.jpg\n"
    return (
        block(b"PaxHeader", len(record), b"x")
        + record.ljust(512, b"\0")
        + block(b"a.jpg", 4, b"0")
        + b"jpg!".ljust(512, b"\0")
        + bytes(1024)
    )


def _zip_of_photos(n: int, rng: random.Random, evil: bool = False) -> bytes:
    photos = sorted(SAMPLE.rglob("*.jpg"))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for p in rng.sample(photos, n):
            zf.writestr(f"{p.parent.name}/{p.name}", p.read_bytes())
        if evil:
            zf.writestr("../../../tmp/evil.jpg", b"x")
    return buf.getvalue()


def _outcome(page, until: float) -> str:
    """result | queued | sentence | error: what the visitor ended with."""
    while time.time() < until:
        body = page.inner_text("body")
        if "Traceback" in body:
            return "error: traceback"
        if page.locator('a[href*="evil.example"]').count():
            return "error: a link from the request on the page"
        if page.locator(DRAWN).count():
            return "result"
        for s in SENTENCES:
            if s in body:
                return "queued" if s == "Waiting in the queue" else "sentence"
        page.wait_for_timeout(500)
    return "error: timeout"


def visit(browser, url: str, kind: str, rng: random.Random, tmp: Path, session: int = 0) -> str:
    # each session a visitor of its own address, as the host's proxy reports it (the server trusts one
    # proxy: EXPLORER_TRUSTED_PROXIES=1); without it every loopback visitor shares one limit
    page = browser.new_page(
        viewport={"width": 1400, "height": 900},
        extra_http_headers={"X-Forwarded-For": f"198.51.100.{session % 250 + 1}"},
    )
    try:
        if kind == "sample":
            page.goto(url)
            return _outcome(page, time.time() + 300)
        if kind == "hostile link":
            page.goto(url + "/?layers=" + urllib.parse.quote("[Sign in](https://evil.example/x)"))
            out = _outcome(page, time.time() + 300)
            return out if out.startswith("error") or "has no layer" in page.inner_text("body") else "error: no warning"
        if kind == "code link":  # a link naming a function to run: refused outright by the demo
            page.goto(url + "/?model=os:abort")
            out = _outcome(page, time.time() + 300)
            return (
                out
                if out.startswith("error") or "serves only the models" in page.inner_text("body")
                else "error: no refusal"
            )
        if kind == "costly model":
            page.goto(url + "/?model=vit_h_14&weights=random")
            return _outcome(page, time.time() + 300)
        if kind == "over limit":
            page.goto(url + "/?data=/etc&max_images=50000")
            _outcome(page, time.time() + 300)
            body = page.inner_text("body")
            return (
                "sentence" if "not a path on the server" in body and "analyses at most" in body else "error: no refusal"
            )
        page.goto(url)
        page.wait_for_selector(DRAWN, timeout=600_000)  # the first visit's analysis done: a session runs one at a time
        if kind == "hostile shard":  # the 3 KB WebDataset shard whose pax record of length 0 once stopped the demo
            archive = tmp / f"shard_{rng.randrange(10**9)}.tar"
            archive.write_bytes(_pax_of_length_zero())
        else:
            archive = tmp / f"photos_{rng.randrange(10**9)}.zip"
            archive.write_bytes(_zip_of_photos(60 if kind == "cancel" else 30, rng, evil=kind == "hostile upload"))
        page.locator('[data-testid="stSelectbox"]').filter(has_text="Dataset").click()
        page.get_by_role("option", name="Upload a zip").click()
        page.locator('input[type="file"]').set_input_files(str(archive))
        # uploaded: its chip is shown, without the spinner (a Run before that finds no file)
        page.wait_for_selector('[data-testid="stFileChip"]', timeout=120_000)
        page.wait_for_selector('[data-testid="stFileChipIconSpinner"]', state="detached", timeout=120_000)
        page.get_by_role("button", name="Run analysis").click()
        if kind == "cancel":
            try:
                # exact: the file chip's "Remove <name>.zip" button matches "cancel" in a name otherwise
                page.get_by_role("button", name="Cancel", exact=True).click(timeout=120_000)
            except Exception as exc:  # the analysis ended before the button could be pressed
                print(f"cancel not pressed: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}", flush=True)
            # the upload's own result: panels of fewer points than the sample's 400 (identical photos count once)
            page.wait_for_function(
                f'(document.querySelector("{DRAWN}") && ({POINTS}) < 400) || ' + ANY_SENTENCE, timeout=300_000
            )
            return "sentence" if any(s in page.inner_text("body") for s in SENTENCES) else "result"
        if kind in ("hostile upload", "hostile shard"):
            page.wait_for_function(ANY_SENTENCE, timeout=300_000)
            return "sentence"
        page.get_by_role("tab", name="Dataset").click()
        page.wait_for_function("/Images\\s*30/.test(document.body.innerText) || " + ANY_SENTENCE, timeout=600_000)
        return "result" if re.search(r"Images\s*30", page.inner_text("body")) else "sentence"
    except Exception as exc:  # a visitor's failure is a finding, not the benchmark's end
        shots = ROOT / "bench" / "results" / "demo_errors"
        shots.mkdir(parents=True, exist_ok=True)
        stem = shots / f"{kind.replace(' ', '_')}_{time.strftime('%H%M%S')}"
        try:  # the page, the sidebar (its own scroll) and the text, to match with the server log's times
            page.screenshot(path=f"{stem}.png", full_page=True)
            page.locator('[data-testid="stSidebar"]').screenshot(path=f"{stem}_sidebar.png")
            Path(f"{stem}.txt").write_text(page.inner_text("body"))
        except Exception:
            pass
        return f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    finally:
        page.close()


KINDS = ("sample", "small upload", "hostile upload", "hostile shard", "hostile link", "code link", "cancel", "costly model",
         "over limit")  # fmt: skip


def soak(args: argparse.Namespace, tmp: Path) -> dict:
    from playwright.sync_api import sync_playwright

    before = _upload_folders()  # not this run's to count
    if args.url:  # a server started elsewhere (the container image): soaked as it is
        server = RunningServer(args.url, args.pid, Path(args.cache), Path(args.server_log))
    else:
        server = DemoServer(tmp / "cache", tmp / "server.log", args.cache_max_gb)
    server.start()
    sampler = Sampler(server)
    sampler.start()
    outcomes: list[dict] = []
    rss_after: dict[int, float] = {}
    gate = QuietGate(server, args.parallel, outcomes)
    lock = threading.Lock()
    deadline = time.time() + args.minutes * 60
    counter = iter(range(args.sessions))

    def visitor(worker: int) -> None:
        try:
            visits(worker)
        finally:
            gate.leave()

    def visits(worker: int) -> None:
        rng = random.Random(worker)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            for i in counter:
                gate.before_session()
                if time.time() > deadline:
                    break
                kind = KINDS[i % len(KINDS)]
                t = time.perf_counter()
                out = visit(browser, server.url, kind, rng, tmp, i)
                with lock:
                    outcomes.append(
                        {"session": i, "kind": kind, "outcome": out, "seconds": round(time.perf_counter() - t, 1)}
                    )
                    done = len(outcomes)
                    if done in (20, 50, 100, 150, 200) or done % 25 == 0:
                        rss_after[done] = server.rss_mb()
                    print(f"{done:4d} {kind:15s} {out}  (RSS {server.rss_mb():.0f} MB)", flush=True)
                gate.after_session(done)
            browser.close()

    threads = [threading.Thread(target=visitor, args=(w,)) for w in range(args.parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    t0 = time.time()  # the last jobs finish (or are cancelled) before uploads are counted
    while _upload_folders() - before and time.time() - t0 < 300:
        time.sleep(1)
    rss_after[len(outcomes)] = server.rss_mb()
    rss, waited = server.quiet_rss_mb()
    gate.readings.append({"after_sessions": len(outcomes), "rss_mb": rss, "waited_s": waited})
    print(f"quiet RSS after {len(outcomes)} sessions: {rss:.0f} MB (server idle after {waited} s)", flush=True)
    sampler.stop_flag.set()
    sampler.join()
    server.stop()
    log = server.log.read_text(errors="replace")
    (ROOT / "bench" / "results").mkdir(parents=True, exist_ok=True)
    (ROOT / "bench" / "results" / "demo_soak_server.log").write_text(log)  # for the errors' causes
    h = sorted(sampler.health)
    return {
        "sessions": len(outcomes),
        "outcomes": outcomes,
        "rss_after_sessions_mb": rss_after,
        "quiet_rss": gate.readings,
        "health_p50_s": h[len(h) // 2] if h else None,
        "health_p99_s": h[int(len(h) * 0.99)] if h else None,
        "health_max_s": h[-1] if h else None,
        "health_errors": sampler.health_errors,
        "series": sampler.series,
        "cache_limit_mb": args.cache_max_gb * 1024**3 / 1e6,
        "cache_max_seen_mb": max((s["cache_mb"] for s in sampler.series), default=0),
        "upload_folders_left": len(_upload_folders() - before),
        "tracebacks_in_log": log.count("Traceback"),
    }


def _metrics_csv(cache: Path, n: int, out: Path) -> str:
    """metrics.csv of `compare` on the sample's stratified n images, with this cache folder."""
    env = {**os.environ, **MALLOC, "EXPLORER_CACHE_DIR": str(cache)}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "explorer",
            "compare",
            "--data",
            "sample:clothing",
            "--model",
            "mobilenet_v2",
            "--max-images",
            str(n),
            "--projection",
            "pca",
            "--out",
            str(out),
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
    )
    return (out / "metrics.csv").read_text()


def kills(args: argparse.Namespace, tmp: Path) -> list[dict]:
    """kill -9 during an analysis, restart, open it again; then the CLI on that cache must agree with
    an uninterrupted run of its own."""
    from playwright.sync_api import sync_playwright

    rng = random.Random(7)
    server = DemoServer(tmp / "kill_cache", tmp / "kill_server.log", args.cache_max_gb)
    rows = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for k in range(args.kills):
            n = 100 + 29 * k  # a new dataset each time (a stratified sample of n): a real extraction
            query = f"/?projection=pca&max_images={n}"
            server.start()
            page = browser.new_page()
            page.goto(server.url + query)
            at = rng.uniform(1, 25)
            page.wait_for_timeout(at * 1000)
            server.kill()
            page.close()
            server.start()
            page = browser.new_page()
            page.goto(server.url + query)
            out = _outcome(page, time.time() + 600)
            page.close()
            server.stop()
            same = _metrics_csv(tmp / "kill_cache", n, tmp / f"k{k}") == _metrics_csv(
                tmp / "clean_cache", n, tmp / f"c{k}"
            )
            rows.append(
                {
                    "kill": k,
                    "images": n,
                    "killed_after_s": round(at, 1),
                    "after_restart": out,
                    "metrics_equal_uninterrupted": same,
                }
            )
            print(
                f"kill {k}: {n} images, after {at:.1f} s -> {out}; metrics equal to an uninterrupted run: {same}",
                flush=True,
            )
        browser.close()
    log = server.log.read_text(errors="replace")
    return [*rows, {"tracebacks_in_log": log.count("Traceback")}]


def plot(result: dict, path: Path) -> None:
    """The server's RSS, the cache's size and the health latency over the soak (a PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = result["soak"]["series"]
    t = [p["t"] / 60 for p in series]
    fig, (a, b) = plt.subplots(2, 1, figsize=(8, 5), sharex=True)
    a.plot(t, [p["rss_mb"] for p in series], color="#4C6EF5", label="server RSS (MB)")
    a.set_ylim(0, max(p["rss_mb"] for p in series) * 1.2)
    a.set_ylabel("MB")
    a.legend(loc="lower right")
    a.set_title(f"demo soak: {result['soak']['sessions']} visitor sessions, {result['args']['parallel']} at a time")
    b.plot(t, [p["cache_mb"] for p in series], color="#12B886", label="feature cache (MB)")
    b.axhline(result["soak"]["cache_limit_mb"], color="#868E96", ls="--", lw=1, label="cache limit")
    b.plot(t, [p["upload_folders"] for p in series], color="#E8590C", label="upload folders (this run's)")
    b.set_xlabel("minutes")
    b.legend(loc="center right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=200)
    ap.add_argument("--minutes", type=float, default=15)
    ap.add_argument("--parallel", type=int, default=2, help="visitors at once")
    ap.add_argument("--kills", type=int, default=10)
    ap.add_argument(
        "--cache-max-gb",
        type=float,
        default=0.02,
        help="small, so that eviction happens: 0.02 GB is 21 MB, about 5 sample analyses (3.7 MB each) "
        "beside numba's compiled code (3 MB)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "demo_soak.json"))
    ap.add_argument(
        "--url",
        default="",
        help="soak a demo server started elsewhere (the container image) instead of "
        "starting one; with --pid, --cache and --server-log, and --kills 0",
    )
    ap.add_argument("--pid", type=int, default=0, help="that server's process (its RSS)")
    ap.add_argument("--cache", default="", help="that server's cache folder")
    ap.add_argument("--server-log", default="", help="that server's log")
    args = ap.parse_args()
    if args.url and (args.kills or not args.pid or not args.cache or not args.server_log):
        ap.error("--url needs --pid, --cache and --server-log, and --kills 0")
    with tempfile.TemporaryDirectory() as tmp:
        result = {"machine": f"{os.cpu_count()} cores", "args": vars(args), "soak": soak(args, Path(tmp))}
        if args.kills:
            result["kills"] = kills(args, Path(tmp))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    plot(result, Path(args.out).with_suffix(".png"))
    s = result["soak"]
    counts: dict[str, int] = {}
    for o in s["outcomes"]:
        key = o["outcome"] if o["outcome"].startswith("error") else o["outcome"]
        counts[key] = counts.get(key, 0) + 1
    print(json.dumps({k: v for k, v in s.items() if k not in ("outcomes", "series")}, indent=1))
    print("outcomes:", counts)
    if "kills" in result:
        print("kills:", json.dumps(result["kills"], indent=1))


if __name__ == "__main__":
    main()
