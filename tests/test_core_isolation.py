"""The core never imports Streamlit: it runs from the CLI and tests without it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
    r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "STREAMLIT_MODULES 0" in r.stdout
