"""What the browser benchmarks share: a free loopback port, the server's health check, and the
malloc settings scripts/run.sh starts the server with (explorer/runtime.py)."""

from __future__ import annotations

import socket
import sys
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from explorer.runtime import MALLOC_ENV as MALLOC  # noqa: E402  (the repository root, put on the path above)


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
