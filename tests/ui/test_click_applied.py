"""A Run click that a run has taken from the browser is acted on, even when the visitor's next
interaction (a tab clicked just after Run) arrives before that run applied the click.

Streamlit (1.67) raises a newer request at its next yield point, and one sits at the start of
applying a request's widget states (`SafeSessionState.on_script_will_rerun`); the run that
replaces it carries only the newer request's states, and the browser sends a click once. The
control test, a strict xfail, asks Streamlit alone to act on the click; the day it passes (an
upgrade within or past the pinned range), Streamlit has fixed this and
`explorer.ui.state.apply_each_interaction_whole` can go."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
from streamlit.runtime.state.safe_session_state import SafeSessionState  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from ..conftest import NewerRequestAfterAClick  # noqa: E402

APP = """
import streamlit as st
from explorer.ui import state
if {fix}:
    state.apply_each_interaction_whole()

def ask():
    st.session_state["asked"] = st.session_state.get("asked", 0) + 1

st.button("Run", key="run", on_click=ask)
st.session_state["runs"] = st.session_state.get("runs", 0) + 1
"""


def _click_with_a_newer_request(fix: bool, newer: NewerRequestAfterAClick) -> AppTest:
    at = AppTest.from_string(APP.format(fix=fix))
    at.run()
    assert not at.exception, at.exception
    at.button(key="run").click().run()
    assert not at.exception, at.exception
    assert newer.injected == 1
    assert at.session_state["runs"] == 2  # the click's run was replaced by the newer request's
    return at


@pytest.fixture
def unpatched(monkeypatch: pytest.MonkeyPatch) -> None:
    """Streamlit's own on_script_will_rerun (restored after the test), whatever ran before."""
    method = SafeSessionState.on_script_will_rerun
    monkeypatch.setattr(SafeSessionState, "on_script_will_rerun", getattr(method, "__wrapped__", method))


@pytest.mark.xfail(
    strict=True,
    reason="Streamlit 1.67 drops a click whose run a newer request replaced; when this "
    "passes, Streamlit fixed it and explorer.ui.state.apply_each_interaction_whole can go",
)
def test_streamlit_alone_acts_on_the_click(
    unpatched: None, newer_request_after_a_click: NewerRequestAfterAClick
) -> None:
    at = _click_with_a_newer_request(False, newer_request_after_a_click)
    assert at.session_state["asked"] == 1


def test_the_click_is_acted_on(unpatched: None, newer_request_after_a_click: NewerRequestAfterAClick) -> None:
    at = _click_with_a_newer_request(True, newer_request_after_a_click)
    assert at.session_state["asked"] == 1


def test_applying_twice_wraps_once(unpatched: None) -> None:
    from explorer.ui import state

    state.apply_each_interaction_whole()
    patched = SafeSessionState.on_script_will_rerun
    state.apply_each_interaction_whole()
    assert SafeSessionState.on_script_will_rerun is patched


def test_a_streamlit_without_it_is_left_alone(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A Streamlit that moved these internals: the page still works, and the log says what is lost."""
    from explorer.ui import state

    monkeypatch.setattr(state, "SafeSessionState", None)
    monkeypatch.setattr(state, "_warned", [])
    with caplog.at_level("WARNING", logger=state.__name__):
        state.apply_each_interaction_whole()
        state.apply_each_interaction_whole()
    warnings = [r.getMessage() for r in caplog.records if r.name == state.__name__]
    assert len(warnings) == 1 and "can be lost" in warnings[0]  # once, not on every run


def test_the_server_turns_fast_reruns_off_whatever_the_host_set() -> None:
    """Community Cloud forces `runner.fastReruns = true`; the server's start turns it off again
    (with it on, a Run click followed at once by a tab click was lost: docs/hosting.md)."""
    from streamlit import config

    from explorer.ui import state

    before = config.get_option("runner.fastReruns")
    try:
        config.set_option("runner.fastReruns", True, "a host that forces it")
        assert state.fast_reruns_on()
        assert state.keep_clicks()
        assert not state.fast_reruns_on() and config.get_option("runner.fastReruns") is False
    finally:
        config.set_option("runner.fastReruns", before, "restored")
