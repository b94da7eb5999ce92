"""The core never imports Streamlit: it runs from the CLI and tests without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # fresh interpreters

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import sys, pkgutil, importlib, explorer
for m in pkgutil.walk_packages(explorer.__path__, "explorer."):
    if not m.name.startswith("explorer.ui"):
        importlib.import_module(m.name)
from explorer import config
from explorer import comparison, store
from explorer.data import datasets
ds = datasets.load_dataset(config.DataSpec(source="sample:digits", max_images=20))
comp = comparison.compare(ds, [config.ExtractSpec(weights="none", layers=("features.4", "flatten"))],
                        projection=config.ProjectionSpec(method="pca"), cache=store.FeatureCache(sys.argv[1]))
assert len(comp.metrics) == 2
bad = [m for m in sys.modules if m == "streamlit" or m.startswith("streamlit.")]
print("STREAMLIT_MODULES", len(bad))
"""


def test_core_runs_without_streamlit(tmp_path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert r.returncode == 0, r.stderr
    assert "STREAMLIT_MODULES 0" in r.stdout


LAZY = """
import sys
from explorer.ui import server_app
server_app.preload()  # what the server imports before it serves the first page
from explorer.ui import main, sidebar, views, cached, reproduce  # noqa: F401  (the page's own modules)
from explorer import cli  # noqa: F401
from explorer.networks import catalog, layers  # noqa: F401
layers.profile("mobilenet_v2")  # a torchvision model's layers
heavy = sorted({m.split(".")[0] for m in sys.modules} & {"timm", "transformers", "safetensors"})
print("HEAVY", heavy)
"""


def test_timm_and_transformers_are_imported_only_when_used() -> None:
    """The app's start-up and a torchvision model's work import neither library (they are listed in
    the background once the server runs, and built when a model of theirs is picked)."""
    r = subprocess.run([sys.executable, "-c", LAZY], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "HEAVY []" in r.stdout, r.stdout
