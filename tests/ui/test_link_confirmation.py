"""A share link that names a model whose loading runs code (a `package.module:builder`, a `.pt2`) builds
and loads nothing until the person confirms it: the page says what the link asks for in one
sentence, with one button that loads it and runs the link's analysis. The demo refuses such names
outright. (A link once ran `os:abort` while the page drew, and the server died.)"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("streamlit")

from tests import helpers  # noqa: E402

MARKED_BUILDER = textwrap.dedent("""
    import pathlib, os
    pathlib.Path(os.environ["EXPLORER_TEST_MARKER"]).write_text("imported")  # what a stranger's module could do

    import torch.nn as nn

    def build():
        return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3, stride=2, padding=1), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
""")


@pytest.fixture
def marked_builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    name = f"linked_nets_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text(MARKED_BUILDER)
    marker = tmp_path / "imported"
    monkeypatch.setenv("EXPLORER_TEST_MARKER", str(marker))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield f"{name}:build", marker
    sys.modules.pop(name, None)


def _page(**query: str):  # noqa: ANN202
    return helpers.run_page(**query)


def _queued(at) -> object:  # noqa: ANN001
    from explorer.ui import runtime

    return runtime.current().queue.job_of(at.session_state["session_id"])


def test_a_link_to_os_abort_runs_nothing_and_says_what_it_asks() -> None:
    at = _page(model="os:abort")  # the server process is still here: nothing was imported and called
    said = " ".join(w.value for w in at.warning)
    assert "This link asks to load" in said and "os:abort" in said and "which is Python code on this machine" in said
    assert at.button(key="confirm_link_models").label.startswith("Load os:abort")
    assert at.selectbox(key="model").value.startswith("mobilenet_v2")  # the picker shows the default meanwhile
    assert _queued(at) is None  # and no analysis started on a link's behalf


def test_a_linked_builder_is_imported_only_after_the_click_and_the_click_runs_the_link(
    marked_builder: tuple[str, Path],
) -> None:
    model, marker = marked_builder
    at = _page(model=model, weights="none")
    assert not marker.exists(), "the link's module was imported before the person confirmed it"
    at.button(key="confirm_link_models").click()
    at.run()
    assert not at.exception, at.exception
    assert marker.exists() and at.selectbox(key="model").value == model
    helpers.finish(at)  # the one click ran the link's analysis
    assert at.session_state["result"].inputs.extract.model == model


def test_a_linked_pt2_is_not_read_before_the_click_and_a_hostile_one_is_refused_after(tmp_path: Path) -> None:
    from tests import hostile_programs as hp

    honest = hp.honest_program(tmp_path / "net.pt2")
    marker = tmp_path / "ran"
    evil = hp.hostile("weights", honest, tmp_path, marker)
    at = _page(model=str(evil))
    assert any("an exported program file on this machine" in w.value for w in at.warning)
    at.button(key="confirm_link_models").click()
    at.run()
    assert not at.exception, at.exception
    assert any("was refused" in e.value for e in at.sidebar.error)  # one sentence; the default model stands in
    assert not marker.exists()


def test_the_demo_refuses_such_names_outright(monkeypatch: pytest.MonkeyPatch) -> None:
    from explorer.config import DEMO
    from explorer.ui import runtime

    monkeypatch.setattr(runtime.current(), "mode", DEMO)
    at = _page(model="os:abort")
    assert not any("asks to load" in w.value for w in at.warning)
    assert any("serves only the models" in w.value for w in at.warning)
    assert at.selectbox(key="model").value.startswith("mobilenet_v2")
