"""Progress bars for long work run from a terminal or a notebook: one tqdm bar per stage."""

from __future__ import annotations

import sys
from typing import Any


class StageBar:
    """A StageProgress (`(stage, done, total)`) drawn as one tqdm bar per stage, on stderr; in a
    notebook (`notebook=True` and Jupyter's widgets installed) as tqdm's notebook bar.

    Redirected to a file or a CI log, it writes a line every few seconds, not one per image.
    """

    def __init__(self, enabled: bool, notebook: bool = False) -> None:
        self.enabled = enabled
        self.notebook = notebook
        self.stage: str | None = None
        self.bar: Any = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self.stage:
            self.close()
            self.stage = stage
            if self.notebook:
                from tqdm.auto import tqdm
            else:
                from tqdm import tqdm
            every = 0.1 if sys.stderr.isatty() or self.notebook else 5.0
            self.bar = tqdm(total=total, desc=stage, unit="img" if stage.startswith(("extract", "reading")) else "it",
                            file=sys.stderr, leave=False, mininterval=every, maxinterval=max(every, 10.0))  # fmt: skip
        if self.bar is not None:
            self.bar.total = total
            self.bar.update(done - self.bar.n)  # update() honours mininterval; refresh() printed every call

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
