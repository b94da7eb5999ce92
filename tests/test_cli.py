"""The CLI contract: outputs of `compare`, and exit 2 with one line (no traceback) on bad input."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # the command line on the bundled sample

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "explorer", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=600,
    )


def test_compare_writes_every_output(tmp_path: Path) -> None:
    out = tmp_path / "out"
    r = cli(
        "compare",
        "--data",
        "sample:digits",
        "--max-images",
        "60",
        "--model",
        "mobilenet_v2",
        "--projection",
        "pca",
        "--out",
        str(out),
        "-q",
    )
    assert r.returncode == 0, r.stderr
    metrics = pd.read_csv(out / "metrics.csv")
    assert {"layer", "depth", "dim", "probe_acc", "probe_acc_std", "knn_acc", "silhouette", "eff_dim"} <= set(
        metrics.columns
    )
    assert len(metrics) == 8 and metrics["dim"].iloc[-1] == 1280
    cka = pd.read_csv(out / "cka.csv", index_col=0)
    assert cka.shape == (8, 8) and np.allclose(np.diag(cka.to_numpy()), 1.0)
    with np.load(out / "features.npz", allow_pickle=False) as z:
        assert z["flatten"].shape == (60, 1280) and z["labels"].shape == (60,) and z["paths"].shape == (60,)
    proj = pd.read_csv(out / "projections.csv")
    assert len(proj) == 8 * 60 and {"layer", "index", "x", "y", "label"} <= set(proj.columns)
    assert list(pd.read_csv(out / "skipped.csv").columns) == ["file", "reason"]
    similar = pd.read_csv(out / "similarity.csv")  # the measures against their nulls: on by default
    assert len(similar) == 28 * 5 and (similar["sample"] == 60).all()
    movers = pd.read_csv(out / "movers.csv")
    changed = [c for c in movers.columns if c.startswith("changed ")]
    assert len(movers) == 60 and len(changed) == 7 and changed[0] == "changed features.1.conv.2 -> features.4.conv.3"
    assert movers[changed].to_numpy().min() >= 0 and movers[changed].to_numpy().max() <= 1
    agreeing = movers["first agreeing layer (mobilenet_v2)"]
    assert set(agreeing) <= set(metrics["layer"]) | {"never"} and (agreeing != "never").any()
    html = (out / "report.html").read_text()
    assert "Dimension profile" in html and "Separability across depth" in html and "linear CKA" in html
    assert "Projections by layer" in html and "<script src=" not in html  # self-contained: plotly.js inlined
    assert "Movers between layers" in html and "mean share of neighbours changed" in html
    assert "Where each pair of classes comes apart" in html and "Hardest pairs at the best layer" in html
    assert "confusion along depth" in html
    # choosing a cut: the contract of leaderboard.csv and compression.csv, and the report's sections
    board = pd.read_csv(out / "leaderboard.csv")
    contract = [
        "model",
        "layer",
        "dim",
        "probe_acc",
        "probe_acc_low",
        "probe_acc_high",
        "knn_acc",
        "logme",
        "params",
        "gflops",
        "latency_ms_b1",
        "latency_ms_b32",
        "feature_bytes",
        "pareto",
    ]
    assert set(contract) <= set(board.columns) and len(board) == 8 and board[contract].notna().all().all()
    assert board["pareto"].dtype == bool and board["pareto"].any()
    assert board[["h_score", "transrate"]].notna().all().all()
    agreement = pd.read_csv(out / "scorer_agreement.csv")
    assert list(agreement.columns) == ["scorer", "weighted_tau", "tau_low", "tau_high", "rows", "what"]
    assert list(agreement["scorer"]) == ["logme", "h_score", "transrate", "params"] and (agreement["rows"] == 8).all()
    assert (
        (agreement["tau_low"] <= agreement["weighted_tau"]) & (agreement["weighted_tau"] <= agreement["tau_high"])
    ).all()
    assert (board["feature_bytes"] == 4 * board["dim"]).all() and board["probe_acc"].is_monotonic_decreasing
    merged = board.merge(metrics, on=["model", "layer"], suffixes=("", "_m"))
    assert np.allclose(merged["probe_acc"], merged["probe_acc_m"]) and np.allclose(
        merged["knn_acc"], merged["knn_acc_m"]
    )
    by_layer = board.set_index("layer").loc[list(metrics["layer"])]
    assert (
        by_layer["gflops"].is_monotonic_increasing and by_layer["params"].is_monotonic_increasing
    )  # deeper costs more
    comp = pd.read_csv(out / "compression.csv")
    assert list(comp.columns[:5]) == ["model", "layer", "k", "probe_acc", "random_projection_acc"]
    full = comp.groupby("layer").tail(1).set_index("layer")
    assert (
        full["k"] == metrics.set_index("layer")["dim"].loc[full.index]
    ).all()  # each curve ends at the layer's width
    assert "Choose a cut" in html and "The most accurate cut" in html and "The compression curve" in html
    assert "principal components keep 95 %" in html
    # new classes: retrieval.csv and few_shot.csv, and the leaderboard's columns from them
    retrieval = pd.read_csv(out / "retrieval.csv")
    assert list(retrieval.columns[:9]) == [
        "model",
        "layer",
        "precision_at_1",
        "map_at_r",
        "r_precision",
        "map_at_r_low",
        "map_at_r_high",
        "verification_auc",
        "tar_at_far_0.01",
    ]
    assert len(retrieval) == 8 and retrieval.iloc[:, 2:9].notna().all().all()
    assert (retrieval["map_at_r_low"] <= retrieval["map_at_r"]).all() and (retrieval["verification_auc"] > 0.5).any()
    shots = pd.read_csv(out / "few_shot.csv", dtype={"shots": str})
    assert list(shots.columns) == [
        "model",
        "layer",
        "shots",
        "method",
        "accuracy",
        "accuracy_low",
        "accuracy_high",
        "episodes",
    ]
    assert set(shots["method"]) == {"prototype", "probe"} and {"1", "2", "5", "all"} <= set(shots["shots"])
    assert (shots["accuracy_low"] <= shots["accuracy"] + 1e-9).all() and (shots["episodes"] >= 1).all()
    assert np.allclose(
        board.set_index("layer")["map_at_r"].loc[list(retrieval["layer"])], retrieval["map_at_r"], atol=1e-5
    )
    assert "Recognising new classes" in html and "With 1 labelled image per class" in html
    dimension = pd.read_csv(out / "dimension.csv")
    assert list(dimension.columns[:9]) == [
        "model",
        "layer",
        "node",
        "dim",
        "eff_dim",
        "twonn_id",
        "twonn_low",
        "twonn_high",
        "rankme",
    ]
    assert len(dimension) == 8 and dimension["minimum"].sum() == 1 and (dimension["twonn_id"] > 0).all()
    assert (dimension["rankme"] <= dimension["dim"] + 1e-6).all()
    five = shots[(shots["shots"] == "5") & (shots["method"] == "prototype")].set_index("layer")["accuracy"]
    assert np.allclose(board.set_index("layer")["few_shot_5_prototype"].loc[five.index], five, atol=1e-5)
    pairs = pd.read_csv(out / "class_pairs.csv")
    assert len(pairs) == 45 and list(pairs.columns[:2]) == ["class_a", "class_b"]  # 10 digits: 45 pairs
    first = pairs["first apart (mobilenet_v2)"]
    assert set(first) <= set(metrics["layer"]) | {"never"}
    confused = pairs[[c for c in pairs.columns if c.startswith("confused ")]].to_numpy()
    assert confused.shape[1] == 8 and np.nanmin(confused) >= 0 and np.nanmax(confused) <= 1
    # error bars and controls: metrics.csv's columns, cka_intervals.csv, the report's sentences
    for col in ("probe_acc", "knn_acc"):
        assert (metrics[f"{col}_low"] <= metrics[col] + 1e-9).all() and (
            metrics[col] <= metrics[f"{col}_high"] + 1e-9
        ).all()
    assert np.allclose(metrics["probe_selectivity"], metrics["probe_acc"] - metrics["probe_control"])
    assert np.allclose(metrics["knn_selectivity"], metrics["knn_acc"] - metrics["knn_control"])
    assert metrics["probe_step"].isna().iloc[0] and metrics["probe_step"].notna().iloc[1:].all()
    assert (
        metrics["probe_step_in_noise"].iloc[1:].astype(bool)
        == ((metrics["probe_step_low"] <= 0) & (metrics["probe_step_high"] >= 0)).iloc[1:]
    ).all()
    intervals = pd.read_csv(out / "cka_intervals.csv")
    assert len(intervals) == 28 and (intervals["bootstrap_images"] == 60).all()
    assert np.allclose(
        intervals["cka"], [cka.loc[a, b] for a, b in zip(intervals["layer_a"], intervals["layer_b"])], atol=1e-4
    )
    assert (intervals["cka_low"] <= intervals["cka"] + 1e-4).all() and (
        intervals["cka"] <= intervals["cka_high"] + 1e-4
    ).all()
    assert "bootstrap intervals over the images" in html and "CKA intervals: 95 % bootstrap" in html
    assert "plain CKA is biased upward" in html  # 60 images, layers up to 1,280 wide
    assert ("the probe&#x27;s change is inside the noise" in html) == bool(
        metrics["probe_step_in_noise"].iloc[1:].astype(bool).any()
    )


def test_compare_writes_where_a_selection_emerges(tmp_path: Path) -> None:
    r = cli(
        "compare",
        "--data",
        "sample:clothing",
        "--max-images",
        "100",
        "--model",
        "mobilenet_v2",
        "--random-baseline",
        "--projection",
        "none",
        "--select",
        "shoes",
        "--no-similarity-nulls",
        "--out",
        str(tmp_path),
        "-q",
    )
    assert r.returncode == 0, r.stderr
    assert not (tmp_path / "similarity.csv").exists()  # skipped, as asked
    em = pd.read_csv(tmp_path / "selection_emergence.csv")
    assert list(em["model"].unique()) == ["mobilenet_v2", "mobilenet_v2[random]"] and (em["n_selected"] == 10).all()
    pretrained = em[em["model"] == "mobilenet_v2"]["accuracy"].to_numpy()
    assert pretrained[-1] >= 0.9 and em["accuracy"].between(0, 1).all()
    report = (tmp_path / "report.html").read_text().replace("\\u2014", "—")  # as plotly's JSON writes it
    assert (
        "Where the selection emerges: shoes" in report
        and "Where the selection (shoes) emerges — mobilenet_v2" in report
    )
    assert (
        "these images vs the rest — mobilenet_v2[random]" in report
    )  # the baseline beside its model, not a chart of its own
    assert "Where the selection (shoes) emerges — mobilenet_v2[random]" not in report
    r = cli(
        "compare",
        "--data",
        "sample:clothing",
        "--max-images",
        "30",
        "--projection",
        "none",
        "--select",
        "unicorns",
        "--out",
        str(tmp_path / "o2"),
        "-q",
    )
    assert r.returncode == 2 and "matches no image" in r.stderr


def test_the_seed_reaches_every_stochastic_step(tmp_path: Path) -> None:
    """--seed decides the subsample, the probe's folds, the bootstraps of the accuracies and of
    the steps between layers, CKA's interval and a selection's emergence: the same seed gives the
    same files, another seed other intervals (pretrained weights: the features themselves do not
    depend on it)."""

    def run(seed: int, out: str) -> Path:
        r = cli(
            "compare",
            "--data",
            "sample:clothing",
            "--model",
            "mobilenet_v2",  # every image: no subsample to differ
            "--layers",
            "features.4.conv.3,features.12.add,flatten",
            "--projection",
            "none",
            "--select",
            "shoes",
            "--no-leaderboard",
            "--seed",
            str(seed),
            "--out",
            str(tmp_path / out),
            "-q",
        )
        assert r.returncode == 0, r.stderr
        return tmp_path / out

    a, b, other = run(0, "a"), run(0, "b"), run(1, "c")
    seeded = {
        "metrics.csv": ["probe_acc_low", "probe_acc_high", "probe_step_low", "probe_step_high", "knn_acc_low"],
        "cka_intervals.csv": ["cka_low", "cka_high"],
        "selection_emergence.csv": ["accuracy"],
    }
    for name, columns in seeded.items():
        x, y, z = (pd.read_csv(d / name) for d in (a, b, other))
        pd.testing.assert_frame_equal(x, y)  # the same seed: the same numbers
        differs = [c for c in columns if not np.allclose(x[c].to_numpy(float), z[c].to_numpy(float), equal_nan=True)]
        assert differs, f"{name}: --seed 1 changed none of {columns}"


def test_compare_two_models(tmp_path: Path) -> None:
    r = cli(
        "compare",
        "--data",
        "sample:digits",
        "--max-images",
        "30",
        "--model",
        "mobilenet_v2,resnet18",
        "--weights",
        "none",
        "--layers",
        "mobilenet_v2:features.5,mobilenet_v2:flatten,resnet18:layer2,resnet18:flatten",
        "--projection",
        "none",
        "--out",
        str(tmp_path),
    )
    assert r.returncode == 0, r.stderr
    last = r.stdout.strip().splitlines()[-1]  # the summary says where the time went
    assert last.startswith("30 images, 0 skipped;") and re.search(r"\(longest: [a-z].* \d+\.\d s\);", last), last
    m = pd.read_csv(tmp_path / "metrics.csv")
    assert list(m["model"]) == ["mobilenet_v2[random]"] * 2 + ["resnet18[random]"] * 2
    cka = pd.read_csv(tmp_path / "cka.csv", index_col=0)
    assert cka.shape == (4, 4) and "resnet18[random]:layer2" in cka.index  # the name as given, not layer2.1.relu_1
    assert list(m["node"]) == ["features.5.add", "flatten", "layer2.1.relu_1", "flatten"]


def _unsafe_zip(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("cats/ok.jpg", b"x")
        zf.writestr("../../escape.jpg", b"x")
    return path


@pytest.mark.parametrize(
    "case, args, env, needle",
    [
        ("unsafe zip", ["--data", "{zip}"], {}, "archive refused"),
        ("unsafe shard", ["--data", "{tar}"], {}, "shard refused"),
        (
            "a table without its label column",
            ["--data", "{table}", "--label-column", "kind"],
            {},
            "no label column 'kind'",
        ),
        ("no images", ["--data", "{empty}"], {}, "no usable images"),
        ("unknown model", ["--model", "resnet9000"], {}, "unknown model"),
        ("unknown layer", ["--layers", "features.99"], {}, "has no layer"),
        ("missing weights", ["--model", "resnet18"], {"EXPLORER_OFFLINE": "1"}, "not on this machine"),
        ("missing path", ["--data", "/no/such/folder"], {}, "does not exist"),
        ("unreachable Ray", ["--engine", "ray", "--ray-address", "127.0.0.1:9"], {}, "no Ray cluster answers"),
        ("timm weights offline", ["--model", "timm:test_vit.r160_in1k"], {"EXPLORER_OFFLINE": "1"}, "--weights FILE"),
        ("hf repo offline", ["--model", "hf:explorer-tests/none"], {"HF_HUB_OFFLINE": "1"}, "run it once online"),
        (
            "own model without weights",
            ["--model", "torchvision.models:resnet18"],
            {},
            "needs its weights: --weights FILE",
        ),
        ("unknown timm model", ["--model", "timm:vit_smal_patch16_224"], {}, "did you mean timm:vit_small_patch16_224"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, case: str, args: list, env: dict, needle: str) -> None:
    (tmp_path / "empty").mkdir()
    zpath = _unsafe_zip(tmp_path / "bad.zip")
    tpath = tmp_path / "bad.tar"
    with tarfile.open(tpath, "w") as tf:  # a WebDataset shard with a member that climbs out
        info = tarfile.TarInfo("../escape.jpg")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    pd.DataFrame({"path": ["a.jpg"], "label": ["a"]}).to_csv(tmp_path / "table.csv", index=False)
    args = [a.format(zip=zpath, empty=tmp_path / "empty", tar=tpath, table=tmp_path / "table.csv") for a in args]
    r = cli("compare", *args, "--projection", "none", "--max-images", "20", "--out", str(tmp_path / "o"), "-q", env=env)
    assert r.returncode == 2, (case, r.stderr)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "escape.jpg").exists()


def test_compare_across_sources(tmp_path: Path) -> None:
    r = cli(
        "compare",
        "--data",
        "sample:digits",
        "--max-images",
        "30",
        "--model",
        "timm:test_convnext,mobilenet_v2",
        "--weights",
        "none",
        "--layers",
        "timm:test_convnext:stages.1,timm:test_convnext:stages.3,mobilenet_v2:flatten",
        "--projection",
        "none",
        "--out",
        str(tmp_path),
        "-q",
    )
    assert r.returncode == 0, r.stderr
    m = pd.read_csv(tmp_path / "metrics.csv")
    assert list(m["model"]) == ["timm:test_convnext[random]"] * 2 + ["mobilenet_v2[random]"]
    overlap = pd.read_csv(tmp_path / "neighbour_overlap.csv", index_col=0)
    assert list(overlap.index) == [
        "timm:test_convnext[random]:stages.1",
        "timm:test_convnext[random]:stages.3",
        "mobilenet_v2[random]:flatten",
    ]
    with np.load(tmp_path / "features.npz", allow_pickle=False) as z:
        assert z["timm:test_convnext[random]:stages.3"].shape[0] == 30


def test_models_and_layers_of_other_sources() -> None:
    r = cli("models", "--filter", "dino")
    assert r.returncode == 0 and "hf:facebook/dinov2-small" in r.stdout and "timm:vit_small_patch14_dinov2" in r.stdout
    r = cli("layers", "--model", "timm:test_vit", "--blocks")
    assert (
        r.returncode == 0 and "blocks.0" in r.stdout and "tokens" in r.stdout and "default layers: blocks." in r.stdout
    )


def test_models_and_layers_commands() -> None:
    r = cli("models", "--filter", "mobilenet*")
    assert r.returncode == 0 and "mobilenet_v2" in r.stdout and "offline" in r.stdout
    r = cli("layers", "--model", "mobilenet_v2")
    assert r.returncode == 0 and "features.2.conv.3" in r.stdout and "bottleneck" in r.stdout
    assert "default layers: " in r.stdout


def _hub_cache_entry(cache: Path, repo: str, files: dict[str, Path]) -> None:
    """A model repo in a Hugging Face cache, laid out as huggingface_hub writes it (refs/main names
    the snapshot), holding the given local files."""
    import shutil

    entry = cache / ("models--" + repo.replace("/", "--"))
    commit = "0" * 40
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(commit)
    snap = entry / "snapshots" / commit
    snap.mkdir(parents=True)
    for name, src in files.items():
        shutil.copy(src, snap / name)


def test_pretrained_weights_come_from_the_hugging_face_cache_offline(tmp_path: Path) -> None:
    """timm's pretrained tag and a Hugging Face repo id, both found in the local Hugging Face cache
    (where the libraries download to) with the network switched off: the real loading code of each
    library reads the cached files."""
    import timm
    import torch
    import transformers as tr
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file(timm.create_model("test_vit").state_dict(), str(tmp_path / "model.safetensors"))
    cache = tmp_path / "hub"
    _hub_cache_entry(cache, "timm/test_vit.r160_in1k", {"model.safetensors": tmp_path / "model.safetensors"})
    hf = tmp_path / "dinov2"
    tr.Dinov2Model(
        tr.Dinov2Config(
            hidden_size=32,
            num_hidden_layers=6,
            num_attention_heads=2,
            intermediate_size=64,
            patch_size=14,
            image_size=56,
        )
    ).save_pretrained(hf)
    tr.BitImageProcessor(
        size={"shortest_edge": 64}, crop_size={"height": 56, "width": 56}, do_center_crop=True
    ).save_pretrained(hf)
    _hub_cache_entry(cache, "explorer-tests/tiny-dinov2", {p.name: p for p in hf.iterdir()})
    env = {"HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "EXPLORER_OFFLINE": "1"}
    r = cli("models", "--filter", "tiny-dinov2", env=env)
    assert "hf:explorer-tests/tiny-dinov2" in r.stdout and "offline" in r.stdout, r.stdout + r.stderr
    r = cli(
        "compare",
        "--data",
        "sample:digits",
        "--max-images",
        "30",
        "--model",
        "timm:test_vit.r160_in1k,hf:explorer-tests/tiny-dinov2",
        "--projection",
        "none",
        "--out",
        str(tmp_path / "out"),
        "-q",
        env=env,
    )
    assert r.returncode == 0, r.stderr
    m = pd.read_csv(tmp_path / "out" / "metrics.csv")
    assert set(m["model"]) == {"timm:test_vit.r160_in1k", "hf:explorer-tests/tiny-dinov2"}  # pretrained: no [random]


def test_similarity_nulls_write_the_long_table(tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["compare", "--data", "sample:digits", "--max-images", "80", "--projection", "pca", "--no-leaderboard"]
    layers = "mobilenet_v2:features.4.conv.3,mobilenet_v2:flatten"  # of both runs: pretrained and random init
    more = ["--model", "mobilenet_v2,mobilenet_v2", "--weights", "auto,none", "--layers", layers, "--similarity-nulls"]
    r = cli(*args, *more, "--out", str(out), "-q")
    assert r.returncode == 0, r.stderr
    table = pd.read_csv(out / "similarity.csv")
    contract = ["model_a", "layer_a", "model_b", "layer_b", "measure", "score", "null_mean", "null_p95", "calibrated"]
    assert list(table.columns[:11]) == [*contract, "low", "high"]
    measures = {"cka", "cknna", "mutual_knn", "rsa", "procrustes"}
    pairs = table[table["layer_b"] != "*"]
    assert len(pairs) == 6 * 5 and set(pairs["measure"]) == measures and (pairs["sample"] == 80).all()
    similar, distance = pairs[pairs["measure"] != "procrustes"], pairs[pairs["measure"] == "procrustes"]
    assert (similar["null_mean"] <= similar["null_p95"]).all() and (distance["null_p95"] <= distance["null_mean"]).all()
    assert np.allclose(similar["calibrated"], (similar["score"] - similar["null_mean"]) / (1 - similar["null_mean"]))
    assert np.allclose(distance["calibrated"], 1 - distance["score"] / distance["null_mean"])
    assert (pairs["low"] <= pairs["score"]).all() and (pairs["score"] <= pairs["high"]).all()
    most = table[table["layer_b"] == "*"]  # each layer's most similar layer of the other model, against the max's null
    assert len(most) == 4 * 5 and set(most["model_b"]) == {"mobilenet_v2", "mobilenet_v2[random]"}
    assert most["low"].isna().all()
    assert (table["inside_null"] == (table["p_value"] > 0.05)).all() and (table["p_value"] >= 1 / 51 - 1e-6).all()
    is_distance = table["measure"] == "procrustes"
    beyond_edge = (table["score"] > table["null_p95"]).where(~is_distance, table["score"] < table["null_p95"])
    assert (table.loc[beyond_edge, "p_value"] <= 0.1).all()  # beyond the null's 95th percentile: p about 0.05 or less
