"""The projection view's JavaScript (grid index, drawing order) under node's own test runner
(tests/ui/js/): an equivalence check of the lasso's grid against testing every point, at 200,000
points. Skipped where node is not installed (the browser tests still drive the same code)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="node is not installed")
def test_the_view_s_javascript_passes_its_node_tests() -> None:
    tests = Path(__file__).with_name("js")
    run = subprocess.run(
        [NODE, "--test", *sorted(str(p) for p in tests.glob("*.test.mjs"))], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# pass 0" not in run.stdout
