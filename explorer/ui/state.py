"""Writes to a session's state that the visitor's next click cannot cut in half.

Every `st.session_state` access is a point where Streamlit may stop the script for a newer request.
`write` makes writes that belong together (a job queued and its id recorded) all happen, then lets
the interruption stop the run; `apply_each_interaction_whole` closes the same gap inside Streamlit.
Both need `runner.fastReruns = false`, which `keep_clicks` sets at the server's start. Why:
docs/design.md, "A click is not lost".
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import streamlit as st

try:  # Streamlit internals, tested with the pinned 1.67.x (requirements.txt)
    from streamlit.runtime.scriptrunner_utils.exceptions import RerunException
    from streamlit.runtime.state.safe_session_state import SafeSessionState
except ImportError:  # a Streamlit that moved them: apply_each_interaction_whole says so and does nothing
    SafeSessionState = None  # type: ignore[assignment,misc]

    class RerunException(Exception):  # type: ignore[no-redef]  # never raised: writes are then plain writes
        pass


log = logging.getLogger(__name__)

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


def apply_each_interaction_whole() -> None:
    """Make Streamlit apply a run's widget states, and call their callbacks, before a newer request
    can stop that run, so a click followed at once by another is not lost. Idempotent; the app
    calls it on every run. With a Streamlit whose internals differ it logs a warning once and
    changes nothing. Why and how: docs/design.md, "A click is not lost";
    tests/ui/test_click_applied.py shows the loss with Streamlit alone.
    """
    original = getattr(SafeSessionState, "on_script_will_rerun", None)
    if original is None:
        if not _warned:
            _warned.append(True)
            log.warning(
                "this Streamlit has no SafeSessionState.on_script_will_rerun: a Run click followed at "
                "once by another interaction can be lost (explorer/ui/state.py)"
            )
        return
    if getattr(original, "applies_interaction_whole", False):
        return

    @functools.wraps(original)
    def on_script_will_rerun(self: Any, *args: Any, **kwargs: Any) -> None:
        yield_callback = vars(self).get("_yield_callback")
        if yield_callback is None:  # not the SafeSessionState this was written for: leave it be
            return original(self, *args, **kwargs)
        object.__setattr__(self, "_yield_callback", _no_yield)  # its __setattr__ writes session state
        try:
            original(self, *args, **kwargs)
        finally:
            object.__setattr__(self, "_yield_callback", yield_callback)

    on_script_will_rerun.applies_interaction_whole = True  # type: ignore[attr-defined]
    SafeSessionState.on_script_will_rerun = on_script_will_rerun  # type: ignore[method-assign]


_warned: list[bool] = []


def _no_yield() -> None:
    """A yield point that lets nothing in."""


FAST_RERUNS = "runner.fastReruns"


def keep_clicks() -> bool:
    """Serve with `runner.fastReruns = false`, whatever the host set (Streamlit Community Cloud
    forces it on). With fast reruns each interaction stops the running script and a new runner
    starts with that interaction's widget states alone: a Run click followed at once by a tab
    click was lost, 3 in 16 in `bench/bench_run_clicks.py --plain --fast-reruns --widen-ms 300`
    before this, 0 in 16 after (docs/hosting.md). Without them Streamlit merges requests that arrive during a
    run, and `apply_each_interaction_whole` keeps the click. Called once at the server's start,
    before any session; Streamlit reads the option at every request.

    Returns:
        True when fast reruns are off now.
    """
    try:
        from streamlit import config

        if config.get_option(FAST_RERUNS):
            config.set_option(
                FAST_RERUNS, False, "explorer.ui.state.keep_clicks: clicks followed at once by another are kept"
            )
            log.info("runner.fastReruns was on (the host's setting): turned off, so that no click is lost")
        return not config.get_option(FAST_RERUNS)
    except Exception:  # a Streamlit whose config differs: the page says what can be lost (fast_reruns_on)
        log.warning(
            "could not turn runner.fastReruns off; a click followed at once by another may be lost", exc_info=True
        )
        return False


def fast_reruns_on() -> bool:
    """Whether this server reruns at every interaction (keep_clicks could not turn it off)."""
    try:
        from streamlit import config

        return bool(config.get_option(FAST_RERUNS))
    except Exception:
        return False
