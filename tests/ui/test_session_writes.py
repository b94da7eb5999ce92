"""state.write: writes that belong together all happen, even where a rerun the visitor asked for
meanwhile interrupts the script (Streamlit raises it at a session-state access)."""

from __future__ import annotations

import pytest
import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import RerunException
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData

from explorer.ui import state


class InterruptedSession(dict):
    """A session state whose next accesses raise the reruns asked for, as Streamlit's does: the
    exception comes before the access, which has not happened."""

    def __init__(self, reruns: int, **values) -> None:
        super().__init__(**values)
        self.reruns = [RerunException(RerunData(query_string=f"rerun {i}")) for i in range(reruns)]

    def _yield(self) -> None:
        if self.reruns:
            raise self.reruns.pop(0)

    def __setitem__(self, key, value) -> None:
        self._yield()
        super().__setitem__(key, value)

    def pop(self, key, default=None):
        self._yield()
        return super().pop(key, default)


@pytest.mark.parametrize("reruns", [1, 2, 3])
def test_every_write_happens_and_the_newest_rerun_follows(monkeypatch: pytest.MonkeyPatch, reruns: int) -> None:
    session = InterruptedSession(reruns, notice="an older refusal")
    monkeypatch.setattr(st, "session_state", session)
    with pytest.raises(RerunException) as raised:
        state.write({"submitted_job": 7, "notice": state.DELETE, "auto_done": True})
    assert dict(session) == {"submitted_job": 7, "auto_done": True}
    assert raised.value.rerun_data.query_string == f"rerun {reruns - 1}"  # the browser's latest request


def test_without_an_interruption_nothing_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    session = InterruptedSession(0)
    monkeypatch.setattr(st, "session_state", session)
    state.write({"seen_job": 3, "result": "r"})
    assert dict(session) == {"seen_job": 3, "result": "r"}
