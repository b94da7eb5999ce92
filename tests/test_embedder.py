"""The exported embedder and open-set recognition: the program's output is the layer's pooled
features (projected, then L2-normalised); `predict --gallery` recognises classes the network never
saw at the nearest-prototype accuracy computed independently, and answers `unknown` to classes the
gallery does not hold at the rate its threshold implies; a gallery is saved without pickle and
refused when it is not one, or belongs to another embedder."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from explorer import embedding
from explorer.analysis.open_set import UNKNOWN, enrol, recognise
from explorer.analysis.unseen import split_classes
from explorer.cli import main
from explorer.config import DataSpec, ExtractSpec
from explorer.data.datasets import load_dataset
from explorer.extraction.layer_features import extract_features
from explorer.output import embedder_files
from explorer.store import FeatureCache

from .conftest import make_class_folders
from .helpers import digit_folders

LAYER = "features.14"  # mobilenet_v2's 160-wide bottleneck: quick, and good enough on digits


def test_enrol_sets_the_threshold_for_the_false_accept_rate() -> None:
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((4, 32)) * 3
    y = np.repeat(np.arange(4), 50)
    e = centres[y] + rng.standard_normal((200, 32))
    g = enrol(e, [f"c{v}" for v in y], far=0.05)
    assert list(g.classes) == ["c0", "c1", "c2", "c3"] and g.impostors == 200 and g.far_floor == 1 / 200
    assert np.allclose(np.linalg.norm(g.prototypes, axis=1), 1, atol=1e-6)
    # the best similarity of each image to another class's prototype: 5 % of them at or above the threshold at most
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    sims = unit @ g.prototypes.T
    sims[np.arange(200), y] = -np.inf
    assert np.mean(sims.max(1) > g.threshold) <= 0.05 and np.mean(sims.max(1) >= g.threshold) > 0.04
    pred, sim, nearest = recognise(g, e)
    assert set(pred) <= {*g.classes, UNKNOWN} and np.all((pred == UNKNOWN) == (sim < g.threshold))
    assert np.mean(nearest == np.array([f"c{v}" for v in y])) > 0.95
    with pytest.raises(ValueError, match="at least 2 classes"):
        enrol(e[:50], ["c0"] * 50)
    with pytest.raises(ValueError, match="rate in"):
        enrol(e, y.astype(str), far=0)
    with pytest.raises(ValueError, match="named 'unknown'"):
        enrol(e, np.where(y == 0, "unknown", "x"))


def test_a_gallery_file_round_trips_without_pickle_and_refuses_strangers(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    g = enrol(rng.standard_normal((30, 8)), np.repeat(["a", "b", "c"], 10), far=0.1)
    path = embedder_files.save_gallery(tmp_path / "g.npz", g, "abc")
    back = embedder_files.load_gallery(path, "abc")
    assert list(back.classes) == list(g.classes) and np.array_equal(back.prototypes, g.prototypes)
    assert back.threshold == g.threshold and back.far == g.far
    with pytest.raises(ValueError, match="another embedder"):
        embedder_files.load_gallery(path, "other")
    pickled = tmp_path / "evil.npz"
    buf = io.BytesIO()
    np.savez(buf, classes=np.array([object()], dtype=object), prototypes=np.zeros((1, 2)))
    pickled.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="not a gallery"):
        embedder_files.load_gallery(pickled, "abc")
    (tmp_path / "junk.npz").write_bytes(b"\x00" * 300)
    with pytest.raises(ValueError, match="not a gallery"):
        embedder_files.load_gallery(tmp_path / "junk.npz", "abc")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=4096), cut=st.integers(0, 4096), flip=st.integers(0, 255))
def test_any_bytes_as_a_gallery_are_a_gallery_or_one_sentence(tmp_path: Path, data: bytes, cut: int, flip: int) -> None:
    """A stranger's gallery.npz: random bytes, and a real gallery cut short or with a byte changed."""
    g = enrol(np.random.default_rng(2).standard_normal((12, 4)), np.repeat(["a", "b", "c"], 4), far=0.1)
    real = embedder_files.save_gallery(tmp_path / "real.npz", g, "abc").read_bytes()
    damaged = bytearray(real[: max(cut, 1)])
    damaged[min(cut, len(damaged) - 1)] ^= flip
    for i, body in enumerate((data, bytes(damaged))):
        path = tmp_path / f"fuzz{i}.npz"
        path.write_bytes(body)
        try:
            back = embedder_files.load_gallery(path, "abc")
        except ValueError as e:
            assert "\n" not in str(e)
        else:
            assert back.prototypes.ndim == 2 and len(back.classes) == len(back.prototypes)
            assert np.isfinite(back.prototypes).all()


@pytest.mark.slow
@pytest.mark.parametrize("reduce", [None, "pca", "lda"])
def test_the_program_gives_the_layers_features_projected_and_normalised(tmp_path: Path, reduce: str | None) -> None:
    root = make_class_folders(tmp_path / "data", per_class=6)  # three colours: LDA needs four classes
    if reduce == "lda":
        (root / "grey").mkdir()
        for i, p in enumerate(sorted((root / "red").iterdir())):
            img = Image.open(p).convert("L").convert("RGB")
            img.save(root / "grey" / f"grey_{i}.jpg")
    dataset = load_dataset(DataSpec(source=str(root)))
    spec = ExtractSpec(model="mobilenet_v2", weights="none", layers=(LAYER,))
    cache = FeatureCache(tmp_path / "c")
    dims = {None: None, "pca": 3, "lda": 1}[reduce]  # LDA on the 2 classes of the fitted half: 1 dimension
    got = embedding.make_embedder(dataset, spec, tmp_path / "emb", reduce=reduce, dims=dims, cache=cache)
    m = got.metrics
    assert set(got.files) == set(embedder_files.FILES) and m["kind"] == "embedder"
    assert m["dim"] == (dims or 160) and m["layer_dim"] == 160
    emb, errors = embedding.embed(tmp_path / "emb", dataset)
    assert not any(errors) and emb.shape == (len(dataset), m["dim"])
    assert np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)
    feats = np.asarray(extract_features(dataset, spec, cache=cache).features[LAYER])
    if reduce is None:
        expected = feats
    else:  # refit as make_embedder does: on the first half of the classes only
        from explorer.analysis.unseen import fit_projection

        y = np.unique(np.asarray(dataset.labels), return_inverse=True)[1]
        seen, unseen = split_classes(y, 0)
        fit = np.isin(y, seen) if len(seen) >= 2 and len(unseen) >= 2 else np.ones(len(y), bool)
        p = fit_projection(feats[fit], y[fit], reduce, dims)
        expected = p(feats)
        assert m["fit_images"] == int(fit.sum())
    expected = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.sum(emb * expected, axis=1).min() > 0.9995  # cosine 1 up to extraction's folded BatchNorm and decode
    card = (tmp_path / "emb" / "model_card.md").read_text()
    assert "as an embedder" in card and "predict --model THIS_FOLDER --gallery" in card


@pytest.mark.slow
def test_predict_gallery_recognises_new_classes_and_refuses_strangers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    digit_folders(tmp_path / "digits", known=range(5), unknown=range(5, 10), gallery_per_class=6, queries_per_class=16)
    cache = str(tmp_path / "c")
    emb = tmp_path / "emb"
    # the embedder is exported from clothing photos; the gallery's digits are classes it never saw
    args = ["cut", "--embedding", "--data", "sample:clothing", "--layer", LAYER, "--out", str(emb)]
    assert main([*args, "--cache-dir", cache, "-q"]) == 0
    m = json.loads((emb / "metrics.json").read_text())
    assert m["test_images"] == 200 and 0 < m["test_map_at_r"] < 1 and len(m["test_classes"]) == 5
    pred_csv, saved = tmp_path / "p.csv", tmp_path / "g.npz"
    gallery, queries = tmp_path / "digits" / "gallery", tmp_path / "digits" / "queries"
    cmd = ["predict", "--model", str(emb), "--gallery", str(gallery), "--data", str(queries), "--cache-dir", cache]
    assert main([*cmd, "--out", str(pred_csv), "--far", "0.01", "--save-gallery", str(saved)]) == 0
    assert "answered unknown" in capsys.readouterr().out
    table = pd.read_csv(pred_csv, dtype={"prediction": str})
    assert list(table.columns) == ["path", "prediction", "similarity"] and len(table) == 160
    truth = table["path"].str.split("/").str[0]
    known = truth.astype(int) < 5
    # independently: the tool's own extraction of the same layer, unit rows, class means, nearest by cosine
    spec = ExtractSpec(model="mobilenet_v2", layers=(LAYER,), precision="fp32")  # as the exported program runs
    unit = []
    for folder in (gallery, queries):
        ds = load_dataset(DataSpec(source=str(folder)))
        f = np.asarray(extract_features(ds, spec, cache=FeatureCache(cache)).features[LAYER], dtype=np.float64)
        unit.append((f / np.linalg.norm(f, axis=1, keepdims=True), np.asarray(ds.labels), [it.name for it in ds.items]))
    (g, gy, _), (q, _, names) = unit
    classes = np.unique(gy)
    protos = np.stack([g[gy == c].mean(0) for c in classes])
    protos /= np.linalg.norm(protos, axis=1, keepdims=True)
    sims = q @ protos.T
    nearest = pd.Series(classes[sims.argmax(1)], index=names).loc[table["path"]].to_numpy()
    best = pd.Series(sims.max(1), index=names).loc[table["path"]].to_numpy()
    assert np.allclose(table["similarity"], best, atol=2e-3)
    answered = table["prediction"] != UNKNOWN
    assert (table.loc[answered, "prediction"].to_numpy() == nearest[answered.to_numpy()]).mean() >= 0.99
    independent_accuracy = float(np.mean(nearest[known.to_numpy()] == truth[known].to_numpy()))
    assert independent_accuracy > 0.5  # 5 classes: chance is 0.2
    right_or_unknown = table.loc[known, "prediction"].isin([UNKNOWN]) | (table.loc[known, "prediction"] == truth[known])
    assert right_or_unknown.mean() >= independent_accuracy - 0.01  # the threshold only turns answers into `unknown`
    # classes the gallery does not hold: `unknown` at about 1 - FAR, which 30 gallery images floor at 1/30
    rejected = float((table.loc[~known, "prediction"] == UNKNOWN).mean())
    assert rejected >= 1 - 1 / 30 - 0.15
    # the saved gallery gives the same answers, without enrolling again
    again = tmp_path / "again.csv"
    assert (
        main(
            ["predict", "--model", str(emb), "--gallery", str(saved), "--data", str(queries), "--out", str(again), "-q"]
        )
        == 0
    )
    assert pd.read_csv(again, dtype={"prediction": str}).equals(table)


@pytest.mark.slow
def test_embedder_mistakes_get_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = make_class_folders(tmp_path / "data", per_class=4)
    base = ["cut", "--data", str(root), "--model", "mobilenet_v2", "--weights", "none", "--layer", LAYER]
    forged = tmp_path / "forged"  # an embedder folder whose program is a pickle, not an exported program
    forged.mkdir()
    (forged / "embedder.pt2").write_bytes(pickle.dumps(print))
    (forged / "preprocess.json").write_text("{}")
    cases = [
        ([*base, "--reduce", "pca", "--out", str(tmp_path / "x")], "add --embedding"),
        ([*base, "--embedding", "--reduce", "lda", "--out", str(tmp_path / "x")], "needs labels of at least 4 classes"),
        ([*base, "--embedding", "--reduce", "pca", "--dims", "0", "--out", str(tmp_path / "x")], "at least 1"),
        ([*base, "--embedding", "--reduce", "pca", "--dims", "999", "--out", str(tmp_path / "x")], "gives at most"),
        (
            ["predict", "--model", str(tmp_path), "--gallery", str(root), "--data", str(root)],
            "needs an embedder folder",
        ),
        (
            ["predict", "--model", str(forged), "--gallery", str(root), "--data", str(root)],
            "is not a program saved by torch.export.save",
        ),
    ]
    for argv, words in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err
