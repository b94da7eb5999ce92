"""An exported cut, for every model source: the program's logits equal the trained head applied to
the extracted features; `predict` gives the head's predictions; the files load with torch alone in
a process that cannot import explorer; the CLI's cut and predict; the cost of a hooked model's cut
equals a count on its exported network; mistakes get one sentence."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from explorer import cutting
from explorer.cli import main
from explorer.config import DataSpec, ExtractSpec
from explorer.data.datasets import load_dataset
from explorer.extraction.layer_features import extract_features
from explorer.output import cut_files
from explorer.store import FeatureCache

from .conftest import make_class_folders
from .helpers import BUILDER, save_hf


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_class_folders(tmp_path_factory.mktemp("cutdata"), per_class=8)


@pytest.fixture(scope="module")
def dataset(data_root: Path) -> object:
    return load_dataset(DataSpec(source=str(data_root)))


@pytest.fixture(scope="module")
def own_builder(tmp_path_factory: pytest.TempPathFactory) -> str:
    pkg = tmp_path_factory.mktemp("code")
    (pkg / "cut_nets.py").write_text(BUILDER)
    sys.path.insert(0, str(pkg))
    return "cut_nets:build"


@pytest.fixture(scope="module")
def own_program(tmp_path_factory: pytest.TempPathFactory, own_builder: str) -> str:
    import cut_nets  # type: ignore[import-not-found]

    torch.manual_seed(0)
    net = cut_nets.build().eval()
    path = tmp_path_factory.mktemp("pt2") / "net.pt2"
    torch.export.save(
        torch.export.export(net, (torch.zeros(2, 3, 224, 224),), dynamic_shapes=({0: torch.export.Dim("b")},)),
        str(path),
    )
    return str(path)


def _cut(dataset: object, model: str, layer: str, out: Path, weights: str = "none") -> cutting.CutResult:
    spec = ExtractSpec(model=model, weights=weights, layers=(layer,), precision="fp32", device="cpu", batch_size=8)
    return cutting.make_cut(dataset, spec, out, cache=FeatureCache(out.parent / "cache"), test_split=0.25)  # type: ignore[arg-type]


SOURCES = [("mobilenet_v2", "features.14"), ("timm:vit_small_patch16_224", "blocks.3"), ("hf", "encoder.layer.2"),
           ("own", "4"), ("pt2", "4")]  # fmt: skip


@pytest.mark.parametrize(("source", "layer"), SOURCES)
def test_exported_logits_equal_the_head_on_the_extracted_features(
    source: str, layer: str, dataset: object, tmp_path: Path, own_builder: str, own_program: str
) -> None:
    model = {
        "hf": f"hf:{save_hf(tmp_path / 'hf', 'dinov2')}" if source == "hf" else "",
        "own": own_builder,
        "pt2": own_program,
    }.get(source) or source
    got = _cut(dataset, model, layer, tmp_path / "cut")
    assert sorted(got.files) == sorted(cut_files.FILES)
    # the head applied to the test images' features, extracted as compare extracts them
    spec = ExtractSpec(model=model, weights="none", layers=(layer,), precision="fp32", device="cpu", batch_size=8)
    feats = extract_features(got.test, spec, cache=FeatureCache(tmp_path / "cache")).features[layer]
    want = got.head.logits(feats)
    loaded = cut_files.load_cut(tmp_path / "cut")
    pre = cut_files.transform_from(loaded.preprocess)
    from explorer.networks.preprocess import Preprocess

    p = Preprocess(pre)
    batch = p.batch(p.decode(it.read_bytes, 10**8)[0] for it in got.test.items)
    with torch.no_grad():
        logits = loaded.module(batch).numpy()
    assert logits.shape == (len(got.test), 3)
    np.testing.assert_allclose(logits, want, rtol=1e-3, atol=1e-3 * max(1.0, float(np.abs(want).max())))
    # predict gives the head's predictions on the test split, and metrics.json counts them
    table = cutting.predict(tmp_path / "cut", got.test)  # type: ignore[arg-type]
    assert table["predicted"].tolist() == [got.head.classes[i] for i in want.argmax(1)]
    truth = np.asarray(got.test.labels)
    assert got.metrics["test_accuracy"] == pytest.approx(float(np.mean(table["predicted"].to_numpy() == truth)))
    assert got.metrics["test_accuracy_low"] <= got.metrics["test_accuracy"] <= got.metrics["test_accuracy_high"]
    assert got.metrics["n_test"] == len(got.test) == 6 and got.metrics["n_train"] == 18


def test_the_files_run_with_torch_alone_in_a_process_without_explorer(dataset: object, tmp_path: Path) -> None:
    got = _cut(dataset, "mobilenet_v2", "features.6", tmp_path / "cut")
    image = got.test.items[0]
    script = f"""
import json, sys
sys.modules["explorer"] = None  # explorer is installed in this environment: make importing it fail here
try:
    import explorer
except ImportError:
    pass
else:
    raise AssertionError("explorer is importable")
import torch
from PIL import Image
from torchvision import transforms as T
folder = {str(tmp_path / "cut")!r}
pre = json.load(open(folder + "/preprocess.json"))
labels = json.load(open(folder + "/labels.json"))
model = torch.export.load(folder + "/cut.pt2").module()
tf = T.Compose([T.Resize(pre["resize"], interpolation=T.InterpolationMode(pre["interpolation"])),
                T.CenterCrop(pre["crop"]), T.ToTensor(), T.Normalize(pre["mean"], pre["std"])])
x = tf(Image.open({str(image.path)!r}).convert("RGB")).unsqueeze(0)
out = model(torch.cat([x, x, x]))
print(json.dumps({{"shape": list(out.shape), "label": labels[out[0].argmax().item()]}}))
"""
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], check=False, capture_output=True, text=True, cwd=tmp_path, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    assert said["shape"] == [3, 3]
    assert said["label"] == got.test_predictions["predicted"].iloc[0]


def test_cli_cut_then_predict_writes_the_contract(
    data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cut"
    test_root = make_class_folders(tmp_path / "held_out", per_class=3)
    code = main(
        [
            "cut",
            "--data",
            str(data_root),
            "--model",
            "mobilenet_v2",
            "--weights",
            "none",
            "--layer",
            "features.14",
            "--test-data",
            str(test_root),
            "--out",
            str(out),
            "--cache-dir",
            str(tmp_path / "c"),
            "-q",
        ]
    )
    assert code == 0
    pre = json.loads((out / "preprocess.json").read_text())
    from torchvision.models import MobileNet_V2_Weights

    tv = MobileNet_V2_Weights.DEFAULT.transforms()  # random init takes the default weights' preprocessing
    assert pre == {
        "resize": tv.resize_size[0],
        "crop": tv.crop_size[0],
        "interpolation": "bilinear",
        "mean": tv.mean,
        "std": tv.std,
    }
    assert json.loads((out / "labels.json").read_text()) == ["blue", "green", "red"]
    m = json.loads((out / "metrics.json").read_text())
    assert {"test_accuracy", "test_accuracy_low", "test_accuracy_high", "n_test", "model", "layer", "gflops"} <= set(m)
    assert m["n_test"] == 9 and m["n_train"] == 24 and m["model"] == "mobilenet_v2" and m["layer"] == "features.14"
    card = (out / "model_card.md").read_text()
    assert f"{m['test_accuracy']:.3f}" in card and "python -m explorer cut --data" in card
    capsys.readouterr()
    code = main(["predict", "--model", str(out), "--data", str(test_root), "--out", str(tmp_path / "p.csv")])
    assert code == 0
    assert f"accuracy {m['test_accuracy']:.3f}" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "p.csv", keep_default_na=False)
    assert list(table.columns[:3]) == ["file", "predicted", "probability"] and len(table) == 9
    assert ((table["probability"] > 0) & (table["probability"] <= 1)).all()
    labels = [f.split("/")[0] for f in table["file"]]
    assert table["label"].tolist() == labels
    assert np.mean(table["predicted"] == labels) == pytest.approx(m["test_accuracy"])  # the card's number, again


def test_cost_of_a_hooked_cut_equals_a_count_on_its_exported_network(dataset: object, tmp_path: Path) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from explorer.networks import sources
    from explorer.networks.cost import cut_costs
    from explorer.networks.truncate import truncated

    model, node = "timm:resnet18", "layer3"
    src = sources.source_of(model)
    net = truncated(model, src.build(model, src.resolve_weights(model, "none")), node, input_size=224)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.zeros(1, 3, 224, 224))
    got = cut_costs(model, [node])[node]
    assert got.params == sum(p.numel() for p in net.parameters())  # the weights after layer3 are gone from the cut
    assert got.gflops == pytest.approx(counter.get_total_flops() / 2 / 1e9, rel=1e-9)


def test_cut_mistakes_get_one_sentence(data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = [
        "cut",
        "--data",
        str(data_root),
        "--model",
        "mobilenet_v2",
        "--weights",
        "none",
        "--out",
        str(tmp_path / "o"),
        "-q",
    ]
    assert main([*base, "--layer", "features.99"]) == 2
    assert "has no layer 'features.99'" in capsys.readouterr().err
    assert main([*base, "--layer", "features.3", "--test-split", "1.5"]) == 2
    assert "not a fraction" in capsys.readouterr().err
    assert main(["predict", "--model", str(tmp_path), "--data", str(data_root), "--out", str(tmp_path / "p.csv")]) == 2
    assert "is not an exported cut" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
