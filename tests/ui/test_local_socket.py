"""Local mode serves this machine only: started as the README says (scripts/run.sh's launcher, or
`streamlit run app.py`), nothing listens on a wildcard address; a server other machines can reach
runs demo mode unless local mode is asked for by name (config.app_mode: fail closed)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from explorer.config import app_mode, is_loopback

ROOT = Path(__file__).resolve().parents[2]
LOOPBACK_HEX = {"0100007F", "00000000000000000000000001000000"}  # 127.0.0.1 and ::1 as /proc/net/tcp{,6} write them


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _listening(port: int) -> list[str]:
    """The local addresses (hex, as /proc/net writes them) of every socket listening on `port`."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                address, hex_port = fields[1].split(":")
                if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.append(address)
    return found


def _start(command: list[str], port: int, log: Path, env: dict[str, str]) -> subprocess.Popen:
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, *command, "--server.port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    t0 = time.time()
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as r:
                if r.read().strip() == b"ok":
                    return proc
        except OSError:
            pass
        assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
        assert time.time() - t0 < 180, "server did not start: " + log.read_text(errors="replace")[-2000:]
        time.sleep(0.5)


@pytest.mark.parametrize(
    "command", [["-m", "explorer.ui.serve"], ["-m", "streamlit", "run", "app.py"]], ids=["run.sh", "streamlit-run"]
)
def test_nothing_listens_on_a_wildcard_address_by_default(tmp_path: Path, command: list[str]) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_") and k != "EXPLORER_MODE"}
    port = _port()
    proc = _start(command, port, tmp_path / "server.log", env)
    try:
        addresses = _listening(port)
        assert addresses and set(addresses) <= LOOPBACK_HEX, f"listening on {addresses}"
        assert "local mode: listening on 127.0.0.1: this machine only" in (tmp_path / "server.log").read_text()
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_a_server_other_machines_reach_runs_demo_unless_local_is_asked_for(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_") and k != "EXPLORER_MODE"}
    port = _port()
    proc = _start(["-m", "explorer.ui.serve", "--server.address", "0.0.0.0"], port, tmp_path / "server.log", env)
    try:
        log = (tmp_path / "server.log").read_text()
        assert "demo mode" in log and "other machines can reach it" in log, log[-2000:]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_mode_fails_closed() -> None:
    assert app_mode({}, server_address="127.0.0.1").name == "local"
    assert app_mode({}, server_address="::1").name == "local"
    assert app_mode({}, server_address="localhost").name == "local"
    for reachable in ("", None, "0.0.0.0", "::", "192.0.2.10", "myhost.example"):
        assert app_mode({}, server_address=reachable).name == "demo", reachable
    assert app_mode({"SPACE_ID": "me/space"}, server_address="127.0.0.1").name == "demo"
    assert app_mode({}, server_address="127.0.0.1", cwd="/mount/src/bottleneck-explorer").name == "demo"
    chosen = app_mode({"EXPLORER_MODE": "local"}, server_address="0.0.0.0")  # asked for by name: served, and said
    assert chosen.name == "local" and "other machines can reach this server" in chosen.why
    assert app_mode({"EXPLORER_MODE": "demo"}, server_address="127.0.0.1").name == "demo"
    assert is_loopback("127.0.0.2") and not is_loopback("0.0.0.0") and not is_loopback("")
