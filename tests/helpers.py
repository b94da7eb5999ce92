"""Helpers several test modules share (fixtures are in conftest.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "explorer" / "ui" / "page.py"  # the script each visitor's session runs


def new_page(default_timeout: float = 300, **query: str) -> Any:
    """A fresh AppTest of the dashboard's page with these link parameters, not yet run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGE), default_timeout=default_timeout)
    for k, v in query.items():
        at.query_params[k] = v
    return at


def run_page(**query: str) -> Any:
    """The dashboard's page with these link parameters (60 images, PCA unless they say otherwise),
    run once, the picker's catalog complete as a server has it moments after starting."""
    from explorer.ui import cached

    cached.start_catalog().result()
    at = new_page()
    for k, v in {"max_images": "60", "projection": "pca", **query}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def wait_for_job(at: Any, timeout: float = 600) -> None:
    """Wait until the page's analysis job is done (or taken by the page already)."""
    from explorer.ui import runtime

    queue = runtime.current().queue
    sid = at.session_state["session_id"]
    t0 = time.time()
    while time.time() - t0 < timeout:
        job = queue.job_of(sid)
        if job is None:  # the page took its result already (the queue forgets a taken job)
            return
        if not job.active:
            assert job.state == "done", job.error
            return
        time.sleep(0.5)
    raise AssertionError("the analysis did not finish")


def finish(at: Any) -> None:
    """Wait for the page's analysis, then rerun the page until it shows the result."""
    wait_for_job(at)
    at.run()
    at.run()
    assert not at.exception, at.exception
