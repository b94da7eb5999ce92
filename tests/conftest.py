"""Shared fixtures: a private cache per test session, small image folders made on the fly."""

from __future__ import annotations

import io
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

_HOMES: list[str] = []


def pytest_configure(config: pytest.Config) -> None:
    """No weights but the package's, before any test module imports a library that reads where
    its cache is: what a test expects never depends on what this machine's torch hub, Hugging Face
    cache or weights folder happen to hold (resnet18's weights are absent everywhere; MobileNetV2's
    ship with the package)."""
    import tempfile

    for name in ("TORCH_HOME", "HF_HOME"):
        _HOMES.append(tempfile.mkdtemp(prefix=f"explorer-tests-{name.lower()}-"))
        os.environ[name] = _HOMES[-1]
    for name in ("EXPLORER_WEIGHTS_DIR", "HF_HUB_CACHE", "EXPLORER_OFFLINE", "EXPLORER_MODE"):
        os.environ.pop(name, None)


def pytest_unconfigure(config: pytest.Config) -> None:
    import shutil

    for home in _HOMES:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A feature cache of the session's own."""
    os.environ["EXPLORER_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


def jpeg_bytes(color: tuple[int, int, int], size: tuple[int, int] = (40, 32), noise: int = 0) -> bytes:
    rng = np.random.default_rng(sum(color) + noise)
    arr = np.clip(np.array(color, np.int16) + rng.integers(-20, 20, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


CLASS_COLORS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}


def make_class_folders(root: Path, per_class: int = 6) -> Path:
    for cls, color in CLASS_COLORS.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (root / cls / f"{cls}_{i}.jpg").write_bytes(jpeg_bytes(color, noise=i))
    return root


def zip_folder(folder: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    return dest


@pytest.fixture
def class_folders(tmp_path: Path) -> Path:
    return make_class_folders(tmp_path / "data")


class NewerRequestAfterAClick:
    """Streamlit's real script runner, with the visitor's next interaction arriving at the worst
    moment: just after a run took a request that carries a click (a trigger), before it applied it.

    The newer request carries the same widget states without the trigger, as the browser sends
    them (it clears a trigger once sent). `injected` counts the requests made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from dataclasses import replace

        from streamlit.proto.WidgetStates_pb2 import WidgetStates
        from streamlit.runtime.scriptrunner_utils.script_requests import ScriptRequests, ScriptRequestType

        self.injected = 0
        take = ScriptRequests.on_scriptrunner_ready

        def take_then_receive_newer(requests: ScriptRequests):
            taken = take(requests)
            states = taken.rerun_data.widget_states if taken.type == ScriptRequestType.RERUN else None
            clicks = (
                [w for w in states.widgets if w.WhichOneof("value") == "trigger_value" and w.trigger_value]
                if states
                else []
            )
            if clicks and self.injected == 0:
                newer = WidgetStates()
                newer.widgets.extend(w for w in states.widgets if w.WhichOneof("value") != "trigger_value")
                self.injected += requests.request_rerun(replace(taken.rerun_data, widget_states=newer))
            return taken

        monkeypatch.setattr(ScriptRequests, "on_scriptrunner_ready", take_then_receive_newer)


@pytest.fixture
def newer_request_after_a_click(monkeypatch: pytest.MonkeyPatch) -> NewerRequestAfterAClick:
    return NewerRequestAfterAClick(monkeypatch)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A browser test is a slow one too (`pytest -m "not slow"`: the quick loop; CI runs everything);
    the other slow modules say so themselves (`pytestmark = pytest.mark.slow`)."""
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.slow)
