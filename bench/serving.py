"""What the browser benchmarks share: a free loopback port, the server's health check, the malloc
settings scripts/run.sh starts the server with (explorer/process_setup.py), the headless chromium they
drive, and the demo-mode server the demo benchmarks start and kill."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from explorer.process_setup import MALLOC_ENV as MALLOC  # noqa: E402  (the repository root, put on the path above)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo): timings are only comparable on the same one."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return "?"
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "?")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/_stcore/health", timeout=5) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


class DemoServer:
    """The demo as scripts/run.sh starts it (or, `plain`, as `EXPLORER_MODE=demo streamlit run app.py`
    does), on a free loopback port, with more Streamlit `options` (`--runner.fastReruns true`)."""

    def __init__(
        self, cache: Path, log: Path, cache_max_gb: float, *, plain: bool = False, options: tuple[str, ...] = ()
    ) -> None:
        self.cache, self.log, self.cache_max_gb = cache, log, cache_max_gb
        self.plain, self.options = plain, options
        self.proc: subprocess.Popen | None = None
        self.url = ""

    def start(self) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = {
            **os.environ,
            **MALLOC,
            "EXPLORER_CACHE_DIR": str(self.cache),
            "NUMBA_THREADING_LAYER": "omp",
            "EXPLORER_CACHE_MAX_GB": str(self.cache_max_gb),
            "EXPLORER_RESULT_TTL": "60",
            "EXPLORER_MODE": "demo",
            "EXPLORER_TRUSTED_PROXIES": "1",
        }  # the visitors say their address as a proxy would (bench_demo.py)
        command = ["-m", "streamlit", "run", "app.py"] if self.plain else ["-m", "explorer.ui.serve", "--mode", "demo"]
        with open(self.log, "a") as out:
            self.proc = subprocess.Popen(
                [sys.executable, *command, "--server.port", str(port), "--server.address", "127.0.0.1", *self.options],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        t0 = time.time()
        while not healthy(self.url):
            if self.proc.poll() is not None or time.time() - t0 > 180:
                raise RuntimeError("the server did not start: " + self.log.read_text()[-2000:])
            time.sleep(0.3)

    def rss_mb(self) -> float:
        try:
            for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        except (OSError, AttributeError):
            pass
        return float("nan")

    def cpu_seconds(self) -> float:
        """User + system CPU time the server has used so far."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, AttributeError, IndexError, ValueError):
            return float("nan")

    def quiet_rss_mb(self, timeout: float = 180) -> tuple[float, float]:
        """(RSS, seconds waited) once the server has used under 0.1 s of CPU in 3 s: no job runs."""
        t0 = time.time()
        last = self.cpu_seconds()
        while time.time() - t0 < timeout:
            time.sleep(3)
            now = self.cpu_seconds()
            if now - last < 0.1:
                break
            last = now
        return self.rss_mb(), round(time.time() - t0, 1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=30)


class RunningServer(DemoServer):
    """A demo server started elsewhere (the container image, scripts/check_image.sh): soaked and
    measured the same way, never started or stopped from here. `pid`: its process, for the RSS."""

    def __init__(self, url: str, pid: int, cache: Path, log: Path) -> None:
        super().__init__(cache, log, 0.0)
        self.url, self.pid = url.rstrip("/"), pid
        self.proc = _Pid(pid)  # type: ignore[assignment]

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def kill(self) -> None:
        raise RuntimeError("a server started elsewhere is not killed from here (--kills 0)")


class _Pid:
    """What rss_mb and cpu_seconds read of a Popen: the pid."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> None:
        return None
