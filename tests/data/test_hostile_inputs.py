"""Every kind of upload, damaged at random, goes through `explorer.load` with the demo's limits: it is
listed or refused in one sentence, never hangs, never raises anything but a bad-input error, and
never grows the process past a bound. The suite runs a few dozen cases per kind (seconds);
bench/fuzz_readers.py runs the long campaign (docs/security.md)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from explorer.config import DEMO_LIMITS

from . import hostile

EXAMPLES = int(os.environ.get("EXPLORER_FUZZ_EXAMPLES", "100"))
RSS_GROWTH_BOUND = 1024**3  # the demo's limits keep a listing far under this


@pytest.mark.parametrize("kind", hostile.KINDS)
def test_a_well_formed_seed_is_listed(tmp_path: Path, kind: str) -> None:
    got = hostile.load_within_deadline(hostile.write(kind, hostile.seed(kind), tmp_path), DEMO_LIMITS)
    assert got[0] == "listed" and int(got[1]) >= 1, got


@pytest.mark.parametrize("kind", hostile.KINDS)
def test_damaged_uploads_are_listed_or_refused_in_one_sentence(
    tmp_path_factory: pytest.TempPathFactory, kind: str
) -> None:
    seed = hostile.seed(kind)
    start_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.data())
    def one(data: st.DataObject) -> None:
        raw = data.draw(hostile.damaged(seed))
        state, what = hostile.load_within_deadline(hostile.write(kind, raw, tmp_path_factory.mktemp(kind)), DEMO_LIMITS)
        assert state in ("listed", "refused"), f"{state}: {what}"
        if state == "refused":
            assert what.strip() and "\n" not in what.strip() and "Traceback" not in what, what

    one()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - start_rss
    assert grown < RSS_GROWTH_BOUND, f"the peak RSS grew by {grown / 1e6:.0f} MB"
