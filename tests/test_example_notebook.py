"""examples/python_api.ipynb, executed headlessly in a real kernel (nbclient, ipykernel), its results
checked against the command line's files for the same request, computed apart (separate caches)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # a kernel running the example notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "python_api.ipynb"
REQUEST = ["--max-images", "200", "--projection", "pca", "--seed", "0"]  # what the notebook's first compare asks for

DUMP = """
import json, numpy as np
from pathlib import Path
out = Path({out!r})
comp.metrics.to_csv(out / "metrics.csv", index=False)
comp.similarity("cka").to_csv(out / "cka.csv")
comp.projection("flatten").to_csv(out / "projection_flatten.csv", index=False)
root = Path(explorer.__file__).parent / "samples" / "clothing"
np.savez(out / "from_hf.npz", flatten=from_hf.features("flatten"),
         paths=np.array([str(Path(it.path).relative_to(root)) for it in from_hf.dataset.items]))
cli = np.load(out / "cli" / "features.npz")
again = explorer.compare_features({{k: cli[k] for k in comp.layer_keys()}}, labels=list(cli["labels"]), progress=False)
again.metrics.to_csv(out / "features_metrics.csv", index=False)
mine.metrics.to_csv(out / "mine_metrics.csv", index=False)
baselines.metrics.to_csv(out / "baselines_metrics.csv", index=False)
json.dump({{"selected": list(view.selected), "shoes": comp.selection("shoes")}}, open(out / "view.json", "w"))
"""


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    out = tmp_path_factory.mktemp("notebook")
    env = {**os.environ, "EXPLORER_CACHE_DIR": str(out / "cli-cache")}
    subprocess.run(
        [sys.executable, "-m", "explorer", "compare", *REQUEST, "--out", str(out / "cli"), "-q"],
        env=env,
        check=True,
        cwd=ROOT,
        timeout=900,
    )
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(DUMP.format(out=str(out))))
    old = os.environ.get("EXPLORER_CACHE_DIR")
    os.environ["EXPLORER_CACHE_DIR"] = str(out / "kernel-cache")  # the kernel's own cache: nothing read from the CLI's
    try:
        # run where Jupyter runs it: in its own folder (the package is importable from anywhere: setup installs it)
        nbclient.NotebookClient(
            nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
        ).execute()
    finally:
        if old is None:
            os.environ.pop("EXPLORER_CACHE_DIR")
        else:
            os.environ["EXPLORER_CACHE_DIR"] = old
    (out / "executed.ipynb").write_text(nbformat.writes(nb))
    return out


def _close(a: pd.DataFrame, b: pd.DataFrame, columns: list[str]) -> None:
    for c in columns:
        assert np.allclose(a[c].astype(float), b[c].astype(float), atol=2e-6, rtol=1e-5, equal_nan=True), c


def test_the_notebook_runs_every_cell_without_an_error(ran: Path) -> None:
    nb = json.loads((ran / "executed.ipynb").read_text())
    outputs = [o for c in nb["cells"] if c["cell_type"] == "code" for o in c["outputs"]]
    assert not [o for o in outputs if o["output_type"] == "error"]
    html = [o["data"]["text/html"] for o in outputs if "data" in o and "text/html" in o["data"]]
    assert any("<b>Comparison</b>" in "".join(h) for h in html)  # comp's cell output
    widgets = [o for o in outputs if "data" in o and "application/vnd.jupyter.widget-view+json" in o["data"]]
    assert widgets  # `view` is shown as a widget


def test_the_notebooks_comparison_is_the_command_lines(ran: Path) -> None:
    nb, cli = pd.read_csv(ran / "metrics.csv"), pd.read_csv(ran / "cli" / "metrics.csv")
    assert list(nb["layer"]) == list(cli["layer"])
    _close(
        nb,
        cli,
        ["dim", "probe_acc", "probe_acc_low", "probe_acc_high", "knn_acc", "silhouette", "eff_dim", "probe_step_low"],
    )
    cka_nb, cka_cli = pd.read_csv(ran / "cka.csv", index_col=0), pd.read_csv(ran / "cli" / "cka.csv", index_col=0)
    np.testing.assert_allclose(cka_nb.to_numpy(), cka_cli.to_numpy(), atol=2e-6)
    proj = pd.read_csv(ran / "cli" / "projections.csv")
    flat = proj[proj["layer"] == "flatten"].reset_index(drop=True)
    mine = pd.read_csv(ran / "projection_flatten.csv")
    assert list(mine["path"]) == list(flat["path"])
    _close(mine, flat, ["x", "y"])


def test_the_hugging_face_dataset_gives_the_folders_features(ran: Path) -> None:
    cli = np.load(ran / "cli" / "features.npz")
    hf = np.load(ran / "from_hf.npz")
    row = {p: i for i, p in enumerate(cli["paths"])}
    assert set(hf["paths"]) == set(row)  # the same 200 images of the stratified sample
    np.testing.assert_allclose(hf["flatten"], cli["flatten"][[row[p] for p in hf["paths"]]], atol=1e-5)


def test_compare_features_on_the_command_lines_arrays_scores_them_alike(ran: Path) -> None:
    got, cli = pd.read_csv(ran / "features_metrics.csv"), pd.read_csv(ran / "cli" / "metrics.csv")
    _close(got, cli, ["dim", "probe_acc", "probe_acc_low", "knn_acc", "silhouette", "eff_dim"])


def test_the_own_network_and_the_baselines_are_scored(ran: Path) -> None:
    mine = pd.read_csv(ran / "mine_metrics.csv")
    assert list(zip(mine["model"], mine["layer"])) == [
        ("small", "stem"),
        ("small", "middle"),
        ("small", "pool"),
        ("mobilenet_v2", "features.14"),
        ("mobilenet_v2", "flatten"),
    ]
    assert mine["probe_acc"].between(0, 1).all()
    base = pd.read_csv(ran / "baselines_metrics.csv")
    assert list(base["layer"]) == ["pixels", "histogram"] and list(base["dim"]) == [768, 48]
    view = json.loads((ran / "view.json").read_text())
    assert view["selected"] == view["shoes"] and view["selected"]
