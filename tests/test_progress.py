"""The terminal's progress bar keeps each stage's seconds and says which took longest."""

from __future__ import annotations

import pytest

from explorer import progress
from explorer.progress import StageBar


def test_stage_bar_counts_each_stage_from_its_first_report_to_the_next(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    bar = StageBar(enabled=False)  # drawn or not, the seconds are kept
    assert bar.where_the_time_went() == ""
    for stage, at in [("reading images", 0.0), ("extracting", 1.0), ("extracting", 5.0), ("scoring", 9.0)]:
        now[0] = at
        bar(stage, 0, 1)
    now[0] = 10.0
    bar("reading images", 0, 1)  # a stage that comes back adds to its seconds
    now[0] = 10.5
    bar.close()
    assert bar.seconds == {"reading images": 1.5, "extracting": 8.0, "scoring": 1.0}
    assert bar.where_the_time_went() == "extracting 8.0 s, reading images 1.5 s, scoring 1.0 s"
    assert bar.where_the_time_went(most=1) == "extracting 8.0 s"
    assert bar.where_the_time_went(least_share=0.1) == "extracting 8.0 s, reading images 1.5 s"
    bar.close()  # closing again counts nothing twice
    assert sum(bar.seconds.values()) == 10.5
