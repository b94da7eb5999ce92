"""Writes to a session's state that the visitor's next click cannot cut in half.

Every `st.session_state` access is a point where Streamlit stops the running script when the
browser has asked for another run meanwhile: it raises a RerunException before the access. Two
writes that belong together (a job queued and its id recorded; a result taken from the queue and
stored) were then cut after the first: a visitor who clicked Run and then a tab within a moment
lost the analysis (seen in the server log, with its upload folder left behind), or would see the
previous result with no word. `write` makes each of its writes happen, then lets the interruption
stop the run.
"""

from __future__ import annotations

from typing import Any

import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import RerunException

DELETE = object()  # a value for `write`: remove the key
_TRIES = 16  # a request that arrives during a retry interrupts it again; each one is taken once


def write(values: dict[str, Any]) -> None:
    """Set (or, with DELETE, remove) every key, in order, whatever reruns are asked for meanwhile.

    Raises:
        RerunException: the newest rerun asked for during the writes, after all of them (its widget
            states are the browser's latest); the script stops there as it would have.
    """
    pending: RerunException | None = None
    for key, value in values.items():
        for _ in range(_TRIES):
            try:
                if value is DELETE:
                    st.session_state.pop(key, None)
                else:
                    st.session_state[key] = value
                break
            except RerunException as exc:  # raised before the access: nothing was written yet
                pending = exc
        else:
            raise RuntimeError(f"session state {key!r} could not be written: reruns kept interrupting")
    if pending is not None:
        raise pending
