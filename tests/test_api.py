"""The Python API (explorer/__init__.py): compare on names and on Python objects, the tidy results,
compare_features, and that each in-memory input gives the features its images give from a folder."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

import explorer

pytestmark = pytest.mark.slow  # whole comparisons through the API

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ["features.14", "flatten"]  # two of MobileNetV2's layers: a few seconds on 60 images
FAST = {"max_images": 60, "layers": LAYERS, "progress": False, "latency": False}


class Tiny(torch.nn.Module):
    """A small convnet defined in a file, so that its code can be read and hashed."""

    def __init__(self, width: int = 8) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, width, 3, stride=2)
        self.act = torch.nn.ReLU()
        self.conv2 = torch.nn.Conv2d(width, 16, 3, stride=2)
        self.pool = torch.nn.AdaptiveAvgPool2d(1)
        self.fc = torch.nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.act(self.conv2(self.act(self.conv1(x))))).flatten(1))


def tiny_transform():  # noqa: ANN201
    from torchvision import transforms as T

    return T.Compose([T.Resize(48), T.CenterCrop(48), T.ToTensor()])


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("api-cache")


@pytest.fixture(scope="module")
def sample(cache: Path) -> explorer.Comparison:
    """The bundled sample through the API (a frozen result: no test can change it)."""
    return explorer.compare("sample:clothing", cache_dir=cache, **FAST)


def test_import_is_light_and_names_the_api() -> None:
    code = "import sys, explorer; print(sorted(m for m in ('torch', 'pandas', 'streamlit') if m in sys.modules))"
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert got.stdout.strip() == "[]"
    assert set(explorer.__all__) >= {"compare", "compare_features", "models", "layers", "Comparison", "AnalysisRequest"}


def test_tidy_results_of_a_comparison(sample: explorer.Comparison, tmp_path: Path) -> None:
    comp = sample
    n = len(comp.dataset)
    assert n == 60 and list(comp.metrics["layer"]) == LAYERS
    assert {"probe_acc", "probe_acc_low", "knn_acc"} <= set(comp.metrics.columns)
    assert set(comp.leaderboard["layer"]) == set(LAYERS)
    cka = comp.similarity("cka")
    assert list(cka.index) == LAYERS and np.allclose(np.diag(cka), 1.0) and np.allclose(cka, cka.T)
    pairs = comp.similarity(long=True)
    assert len(pairs) == 1 and {"cka", "cka_low", "cka_high", "cka_debiased", "overlap"} <= set(pairs.columns)
    with pytest.raises(ValueError, match="not one of"):
        comp.similarity("cosine")
    proj = comp.projection("flatten")
    assert list(proj.columns) == ["index", "path", "label", "x", "y"] and len(proj) == n
    assert proj["path"].tolist() == comp.dataset.names
    feats = comp.features("features.14")
    assert feats.shape == (n, 160) and feats.dtype == np.float32
    assert len(comp.movers()) == n and "changed features.14 -> flatten" in comp.movers().columns
    assert len(comp.class_pairs()) == len(comp.dataset.classes) * (len(comp.dataset.classes) - 1) // 2
    em = comp.emergence("shoes")
    assert list(em["layer"]) == LAYERS and em["accuracy"].between(0, 1).all()
    with pytest.raises(ValueError, match="matches no image"):
        comp.emergence("no such class")
    with pytest.raises(KeyError, match="no layer"):
        comp.features("features.3")
    assert comp.report().lstrip().lower().startswith("<!doctype html")
    written = comp.export(tmp_path / "out")
    assert np.array_equal(np.load(written["features.npz"])["features.14"], feats)
    html = comp._repr_html_()
    assert "probe_acc" in html and "features.14" in html
    assert comp.request is not None and comp.request.max_images == 60
    # new classes: the same tables as retrieval.csv, few_shot.csv and unseen_compression.csv
    assert list(comp.retrieval["layer"]) == LAYERS and comp.retrieval["map_at_r"].between(0, 1).all()
    shots = comp.few_shot
    assert set(shots["method"]) == {"prototype", "probe"} and set(shots["layer"]) == set(LAYERS)
    assert {"1", "all"} <= set(shots["shots"]) and (shots["accuracy_low"] <= shots["accuracy_high"]).all()
    assert set(comp.unseen_compression["projection"]) == {"none", "pca", "lda"}
    assert list(comp.dimension["layer"]) == LAYERS and comp.dimension["twonn_id"].notna().all()
    written_shots = pd.read_csv(written["few_shot.csv"], dtype={"shots": str})
    assert np.allclose(written_shots["accuracy"], shots["accuracy"], atol=1e-5)
    assert np.allclose(pd.read_csv(written["retrieval.csv"])["map_at_r"], comp.retrieval["map_at_r"], atol=1e-5)


def test_same_results_as_the_command_line(sample: explorer.Comparison, cache: Path, tmp_path: Path) -> None:
    """The API's defaults are the command line's, but for the projection (pca here)."""
    from explorer.cli import main

    out = tmp_path / "cli"
    assert (
        main(
            [
                "compare",
                "--max-images",
                "60",
                "--layers",
                ",".join(LAYERS),
                "--projection",
                "pca",
                "--no-latency",
                "--cache-dir",
                str(cache),
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    cli = pd.read_csv(out / "metrics.csv")
    pd.testing.assert_frame_equal(
        cli, pd.read_csv(io.StringIO(sample.metrics.to_csv(index=False, float_format="%.6g")))
    )
    proj = pd.read_csv(out / "projections.csv")
    assert np.allclose(proj[proj["layer"] == "flatten"]["x"], sample.projection("flatten")["x"], atol=1e-5)


def test_an_unknown_option_is_named() -> None:
    with pytest.raises(TypeError, match="unknown option 'neighbours'.*n_neighbors"):
        explorer.compare("sample:clothing", neighbours=5)


def test_an_in_memory_module_is_keyed_by_its_weights_code_and_transform(cache: Path) -> None:
    from explorer.networks import memory_source

    net = Tiny().train()
    name = memory_source.name_model(net, tiny_transform()).name
    twin = Tiny()
    twin.load_state_dict(net.state_dict())
    assert memory_source.name_model(twin, tiny_transform()).name == name  # the same class and weights: the same name
    other = Tiny()
    assert memory_source.name_model(other, tiny_transform()).name != name  # other weights
    from torchvision import transforms as T

    normalised = T.Compose([T.Resize(48), T.CenterCrop(48), T.ToTensor(), T.Normalize([0.5] * 3, [0.25] * 3)])
    assert memory_source.name_model(net, normalised).name != name  # another transform: its own name and features
    assert memory_source.name_model(net, T.Compose([T.Resize(56), T.CenterCrop(56), T.ToTensor()])).name != name
    comp = explorer.compare(
        "sample:clothing",
        models={"tiny": net},
        transform=tiny_transform(),
        layers=["conv2", "pool"],
        max_images=60,
        cache_dir=cache,
        progress=False,
        latency=False,
    )
    assert list(comp.metrics["layer"]) == ["conv2", "pool"] and comp.runs[0].label == "tiny"
    assert net.training and next(net.parameters()).device.type == "cpu"  # the user's module is not changed
    again = explorer.compare(
        "sample:clothing",
        models={"tiny": net},
        transform=tiny_transform(),
        layers=["conv2", "pool"],
        max_images=60,
        cache_dir=cache,
        progress=False,
        latency=False,
    )
    assert again.runs[0].computed == 0  # read back from the cache under the same name
    np.testing.assert_array_equal(again.features("pool"), comp.features("pool"))
    assert memory_source.MEMORY.listed() == []  # no run holds the module now: nothing keeps it
    with pytest.raises(ValueError, match="no running analysis holds"):
        memory_source.MEMORY.check(name)


def test_a_module_whose_code_cannot_be_read_is_refused() -> None:
    scope: dict = {"torch": torch}
    exec("class Hidden(torch.nn.Module):\n    def forward(self, x):\n        return x.mean((2, 3))\n", scope)
    with pytest.raises(ValueError, match="cannot read the code of Hidden"):
        explorer.compare("sample:clothing", models=scope["Hidden"](), progress=False)


@pytest.fixture(scope="module")
def folder_features(sample: explorer.Comparison) -> tuple[list[str], list[str], np.ndarray]:
    """The sample's 60 images (their files and labels) and their features at features.14."""
    paths = [str(it.path) for it in sample.dataset.items]
    return paths, list(sample.dataset.labels), np.asarray(sample.features("features.14"))


def _features_of(data: object, cache: Path, **kw: object) -> explorer.Comparison:
    return explorer.compare(
        data, layers=["features.14"], cache_dir=cache, progress=False, latency=False, leaderboard=False, **kw
    )


def _same_rows(comp: explorer.Comparison, labels: list[str], want: np.ndarray) -> None:
    assert list(comp.dataset.labels) == labels
    np.testing.assert_allclose(comp.features("features.14"), want, rtol=1e-5, atol=1e-5)


def test_a_table_of_paths_gives_the_folders_features(folder_features: tuple, cache: Path) -> None:
    paths, labels, want = folder_features
    table = pd.DataFrame({"path": paths, "label": labels, "shade": ["light" if i % 3 else "dark" for i in range(60)]})
    comp = _features_of(table, cache)
    _same_rows(comp, labels, want)
    assert comp.dataset.metadata["shade"][:3] == ("dark", "light", "light")
    assert len(comp.selection("shade=dark")) == 20


def test_pil_images_and_a_torch_dataset_give_the_folders_features(folder_features: tuple, cache: Path) -> None:
    paths, labels, want = folder_features
    images = [Image.open(p).convert("RGB") for p in paths]
    _same_rows(_features_of(images, cache, labels=labels), labels, want)

    class Pairs(torch.utils.data.Dataset):
        classes = sorted(set(labels))

        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
            from torchvision.transforms.functional import pil_to_tensor

            return pil_to_tensor(images[i]), self.classes.index(labels[i])

    _same_rows(_features_of(Pairs(), cache), labels, want)


def test_a_hugging_face_dataset_gives_the_folders_features(folder_features: tuple, cache: Path) -> None:
    datasets = pytest.importorskip("datasets")
    paths, labels, want = folder_features
    ds = datasets.Dataset.from_dict(
        {"img": [Path(p).read_bytes() for p in paths], "label": labels, "n": list(range(60))}
    )
    ds = ds.cast_column("img", datasets.Image()).class_encode_column("label")
    comp = _features_of(ds, cache)
    _same_rows(comp, labels, want)
    assert comp.dataset.metadata["n"][:2] == ("0", "1")
    assert comp.dataset.hashes == tuple(
        hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths
    )  # the bytes as given


def test_bad_in_memory_data_is_said_in_a_sentence(cache: Path) -> None:
    with pytest.raises(ValueError, match="3 labels for 2 images"):
        _features_of([np.zeros((8, 8, 3), np.uint8)] * 2, cache, labels=["a", "b", "c"])
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        _features_of([torch.randn(3, 8, 8)], cache, labels=["a"])
    with pytest.raises(ValueError, match="no path column"):
        _features_of(pd.DataFrame({"x": ["a.jpg"]}), cache)
    with pytest.raises(TypeError, match="cannot read a dataset from a dict"):
        _features_of({"a": 1}, cache)


def test_compare_features_scores_arrays_as_the_extraction_did(sample: explorer.Comparison, cache: Path) -> None:
    arrays = {k: np.asarray(sample.features(k)) for k in LAYERS}
    got = explorer.compare_features(
        arrays, labels=sample.dataset.labels, names=sample.dataset.names, cache_dir=cache, progress=False
    )
    cols = ["layer", "dim", "probe_acc", "knn_acc", "silhouette", "eff_dim"]
    pd.testing.assert_frame_equal(got.metrics[cols], sample.metrics[cols])
    np.testing.assert_allclose(got.similarity("cka").to_numpy(), sample.similarity("cka").to_numpy(), atol=1e-6)
    two = explorer.compare_features(
        {"a": arrays, "b": {"maps": np.ones((60, 4, 2, 2)) * np.arange(60)[:, None, None, None]}},
        labels=sample.dataset.labels,
        progress=False,
        cache_dir=cache,
    )
    assert two.layer_keys() == ["a:features.14", "a:flatten", "b:maps"] and two.features("b:maps").shape == (60, 4)
    with pytest.raises(ValueError, match="different numbers of rows"):
        explorer.compare_features({"x": np.zeros((5, 2)), "y": np.zeros((6, 2))}, progress=False)


def test_models_and_layers_tables() -> None:
    found = explorer.models("mobilenet")
    assert {"model", "source", "weights"} <= set(found.columns) and "mobilenet_v2" in set(found["model"])
    assert found.set_index("model").loc["mobilenet_v2", "weights"] == "offline"
    lay = explorer.layers("mobilenet_v2")
    assert lay["default"].sum() == 8 and "flatten" in set(lay["node"])
    tiny = explorer.layers(Tiny(), transform=tiny_transform())
    assert list(tiny["node"]) == ["conv1", "conv2", "pool", "fc"]  # `act` runs twice a pass: not a layer
