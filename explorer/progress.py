"""What long work shares with whoever runs it, defined once: how it reports progress, how it is
asked to stop and what it raises when stopped; and the progress bar of a terminal or a notebook."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

Progress = Callable[[int, int], None]  # (done, total) of one task
StageProgress = Callable[[str, int, int], None]  # (stage, done, total) of work in stages
ShouldStop = Callable[[], bool]  # polled between batches and layers: True asks the work to stop


class Cancelled(RuntimeError):
    """The caller asked the work to stop (a cancel, a deadline); what was finished is kept."""


class StageBar:
    """A StageProgress (`(stage, done, total)`) drawn as one tqdm bar per stage, on stderr; in a
    notebook (`notebook=True` and Jupyter's widgets installed) as tqdm's notebook bar.

    Redirected to a file or a CI log, it writes a line every few seconds, not one per image. It
    keeps the seconds of each stage, from its first report to the next stage's (`seconds`, drawn or
    not), for `where_the_time_went`.
    """

    def __init__(self, enabled: bool, notebook: bool = False) -> None:
        self.enabled = enabled
        self.notebook = notebook
        self.stage: str | None = None
        self.bar: Any = None
        self.seconds: dict[str, float] = {}
        self._since: float | None = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        new_stage = stage != self.stage
        if new_stage:
            self.close()
            self.stage, self._since = stage, time.perf_counter()
        if not self.enabled:
            return
        if new_stage:
            if self.notebook:
                from tqdm.auto import tqdm
            else:
                from tqdm import tqdm
            every = 0.1 if sys.stderr.isatty() or self.notebook else 5.0
            self.bar = tqdm(
                total=total,
                desc=stage,
                unit="img" if stage.startswith(("extract", "reading")) else "it",
                file=sys.stderr,
                leave=False,
                mininterval=every,
                maxinterval=max(every, 10.0),
            )
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(done - self.bar.n)  # update() honours mininterval; refresh() printed every call

    def close(self) -> None:
        """End the current stage: its bar closed, its seconds counted."""
        if self._since is not None and self.stage is not None:
            self.seconds[self.stage] = self.seconds.get(self.stage, 0.0) + time.perf_counter() - self._since
            self._since = None
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def where_the_time_went(self, most: int = 4, least_share: float = 0.05) -> str:
        """The longest stages, as "extracting 6.1 s, scoring 2.0 s" (at most `most`, each at least
        `least_share` of all the stages' time); "" before any stage ended."""
        total = sum(self.seconds.values())
        longest = sorted(self.seconds.items(), key=lambda kv: -kv[1])[:most]
        return ", ".join(f"{stage} {s:.1f} s" for stage, s in longest if total and s >= least_share * total)
