"""One process-wide lock between torch.fx tracing and every other use of torch modules.

While torch.fx traces a model it patches `torch.nn.Module.__call__` for the whole process, not just
its own thread. A module called in another thread at that moment (a worker's forward pass, the
preprocessing of the next batch) goes through the tracer and fails with "NameError: module is not
installed as a submodule". In the dashboard that happens whenever a visitor picks a model whose layers
have not been listed yet while another visitor's analysis runs. So every trace holds this lock
exclusively, and every module call holds it shared: calls run side by side, a trace runs alone.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class SharedExclusiveLock:
    """A readers-writer lock: any number of shared holders, or one exclusive holder.

    A waiting exclusive holder stops new shared holders from entering, so a steady stream of module
    calls cannot keep a trace waiting forever. Not re-entrant: do not take it again while holding it.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not (self._exclusive or self._waiting))
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                if not self._shared:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._waiting += 1
            try:
                self._cond.wait_for(lambda: not (self._exclusive or self._shared))
            finally:
                self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


FX = SharedExclusiveLock()
"""Hold `FX.exclusive()` while tracing, `FX.shared()` while calling a torch module."""
