"""Cache keys are complete; cached layers never touch the model; interrupted extraction resumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorer import code_identity, comparison
from explorer import store as cache_mod
from explorer.analysis import cached_runs
from explorer.config import DataSpec, ExtractSpec, ProjectionSpec
from explorer.data.datasets import load_dataset
from explorer.extraction import layer_features
from explorer.networks import registry
from explorer.progress import Cancelled
from explorer.request import parse_layers
from explorer.store import FeatureCache, make_key

from .conftest import make_class_folders

pytestmark = pytest.mark.slow  # whole comparisons


def _ctx(tmp: Path) -> tuple[dict, object]:
    ds = load_dataset(DataSpec(source=str(make_class_folders(tmp, per_class=2))))
    spec = ExtractSpec(model="mobilenet_v2")
    w = registry.resolve_weights("mobilenet_v2", "auto")
    tf = registry.transforms("mobilenet_v2", w.tv_weights)
    return layer_features._context(ds, spec, w, tf, "cpu", "bf16"), ds


def test_every_input_changes_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, ds = _ctx(tmp_path / "a")
    base = make_key("layer", {**ctx, "layer": "features.3"})
    variants = {
        "dataset": "0" * 64,
        "n_images": 99,
        "model": "resnet18",
        "source": "timm",
        "architecture": "0" * 16,
        "weights": "random:0",
        "preprocessing": "ImageClassification(crop_size=[200])",
        "pooling": "max",
        "token_pooling": "mean",
        "precision": "fp32",
        "graph": "as traced",
        "device": "cuda",
        "libraries": {**ctx["libraries"], "torch": "9.9"},
        "code": {**ctx["code"], "extract": "changed"},
    }
    assert set(variants) == set(ctx), "a context field has no variant in this test"
    for field, value in variants.items():
        assert make_key("layer", {**ctx, field: value, "layer": "features.3"}) != base, field
    assert make_key("layer", {**ctx, "layer": "features.4"}) != base
    monkeypatch.setattr(cache_mod, "SCHEMA", cache_mod.SCHEMA + 1)
    assert make_key("layer", {**ctx, "layer": "features.3"}) != base


def test_one_changed_image_byte_changes_the_dataset_identity(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "d", per_class=2)
    before = load_dataset(DataSpec(source=str(data))).content_hash
    p = data / "red" / "red_0.jpg"
    raw = bytearray(p.read_bytes())
    raw[-3] ^= 0x01  # inside the entropy-coded data, still decodes
    p.write_bytes(bytes(raw))
    assert load_dataset(DataSpec(source=str(data))).content_hash != before


def test_cached_layers_do_not_touch_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ds = load_dataset(DataSpec(source="sample:digits", max_images=40))
    cache = FeatureCache(tmp_path / "c")
    spec = ExtractSpec(model="mobilenet_v2", layers=("features.3", "flatten"))
    first = comparison.extract_features(ds, spec, cache=cache)
    assert first.computed == 40
    comparison.compare(
        ds, [spec], projection=ProjectionSpec(method="none"), cache=cache
    )  # times the cuts once (cached)

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("the model was built although every layer was cached")

    monkeypatch.setattr(registry, "build_model", boom)
    again = comparison.extract_features(ds, spec, cache=cache)
    assert again.computed == 0
    for n in ("features.3", "flatten"):
        np.testing.assert_array_equal(first.features[n], again.features[n])
    comp = comparison.compare(ds, [spec], projection=ProjectionSpec(method="pca"), cache=cache)
    assert list(comp.metrics["layer"]) == ["features.3", "flatten"]  # as asked for ...
    assert list(comp.metrics["node"]) == ["features.3.add", "flatten"]  # ... with the node it resolved to beside it


def test_interrupted_extraction_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(layer_features, "CHUNK", 16)
    ds = load_dataset(DataSpec(source="sample:digits", max_images=48))
    cache = FeatureCache(tmp_path / "c")
    spec = ExtractSpec(model="mobilenet_v2", layers=("features.5.add",), batch_size=8, precision="fp32")
    calls = {"n": 0}

    def stop_after_two_chunks() -> bool:
        calls["n"] += 1
        return calls["n"] > 4  # two chunks of two batches each

    with pytest.raises(Cancelled):
        comparison.extract_features(ds, spec, cache=cache, should_stop=stop_after_two_chunks)
    resumed = comparison.extract_features(ds, spec, cache=cache)
    assert resumed.computed == 16  # only the third chunk ran
    fresh = comparison.extract_features(ds, spec, cache=FeatureCache(tmp_path / "fresh"))
    np.testing.assert_allclose(
        resumed.features["features.5.add"], fresh.features["features.5.add"], rtol=1e-5, atol=1e-5
    )
    assert not (tmp_path / "c" / "partial").exists() or not any((tmp_path / "c" / "partial").iterdir())


def test_features_are_memory_mapped_npy_and_a_damaged_file_is_a_miss(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("ab" * 32, np.ones((3, 2)))
    got = cache.get("ab" * 32)
    assert isinstance(got, np.memmap) and got.dtype == np.float32 and got.shape == (3, 2)
    path = next(tmp_path.rglob("*.npy"))
    assert np.load(path, allow_pickle=False).sum() == 6  # a plain .npy file
    path.write_bytes(path.read_bytes()[:-4])  # truncated
    assert cache.get("ab" * 32) is None and not path.exists()


def test_a_damaged_result_file_is_recomputed(tmp_path: Path) -> None:
    ds = load_dataset(DataSpec(source="sample:digits", max_images=30))
    cache = FeatureCache(tmp_path / "c")
    spec = ExtractSpec(model="mobilenet_v2", layers=("features.3",))
    first = comparison.compare(ds, [spec], projection=ProjectionSpec(method="pca"), cache=cache)
    results = sorted((tmp_path / "c" / "results").rglob("*.npz"))
    # graph, scores, projection, similarity, the (empty) record of undecodable images; LogME, the other scorers, the
    # compression curve,
    # the latency; retrieval, the few-shot curve, the unseen-class curve; the intrinsic dimension
    assert len(results) == 13
    for p in results:
        p.write_bytes(b"PK\x03\x04 not really a zip")  # BadZipFile on reading
    again = comparison.compare(ds, [spec], projection=ProjectionSpec(method="pca"), cache=cache)
    pd.testing.assert_frame_equal(first.metrics, again.metrics)
    assert first.retrieval_scores == again.retrieval_scores
    np.testing.assert_allclose(first.panels()["features.3"], again.panels()["features.3"], atol=1e-5)
    same = ["model", "layer", "logme", "params", "gflops", "compression_k95"]  # the latency is timed again: not equal
    pd.testing.assert_frame_equal(first.leaderboard[same], again.leaderboard[same])


def test_names_stay_as_asked_in_every_output(tmp_path: Path) -> None:
    from explorer.output import export

    ds = load_dataset(DataSpec(source="sample:digits", max_images=30))
    spec = ExtractSpec(model="mobilenet_v2", layers=("features.14", "features.7"))
    comp = comparison.compare(ds, [spec], projection=ProjectionSpec(method="pca"), cache=FeatureCache(tmp_path / "c"))
    files = export.write_all(comp, tmp_path / "out")
    assert list(pd.read_csv(files["metrics.csv"])["layer"]) == ["features.7", "features.14"]  # execution order
    for name in ("cka.csv", "cka_debiased.csv", "neighbour_overlap.csv"):
        assert list(pd.read_csv(files[name], index_col=0).index) == ["features.7", "features.14"]
    with np.load(files["features.npz"], allow_pickle=False) as z:
        assert {"features.7", "features.14"} <= set(z.files)
    assert set(pd.read_csv(files["projections.csv"])["layer"]) == {"features.7", "features.14"}


def test_parse_layers() -> None:
    assert parse_layers(["a"], "auto") == {"a": ()}
    assert parse_layers(["a"], "x,y") == {"a": ("x", "y")}
    assert parse_layers(["a", "b"], "a:x,b:y") == {"a": ("x",), "b": ("y",)}
    with pytest.raises(ValueError, match="model:node"):
        parse_layers(["a", "b"], "x")


def test_the_100k_code_paths_at_small_n(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """What only runs at scale, forced at 120 images: HNSW graphs with measured recall, probe folds on
    a training sample with C chosen on one holdout split, CKA one layer at a time, every reader in
    several row chunks; the scores stay close to the small-N paths'."""
    from explorer.analysis import chunked, neighbors, probe, similarity

    ds = load_dataset(DataSpec(source="sample:clothing", max_images=120), thumbnails=False)
    spec = ExtractSpec(model="mobilenet_v2", layers=("features.7", "features.14", "flatten"))
    small = comparison.compare(ds, [spec], projection=ProjectionSpec(method="umap"), cache=FeatureCache(tmp_path / "a"))
    monkeypatch.setattr(neighbors, "EXACT_MAX_COST", 0.0)
    monkeypatch.setattr(neighbors, "RECALL_QUERIES", 50)
    monkeypatch.setattr(probe, "MAX_TRAIN", 80)
    monkeypatch.setattr(probe, "INNER_HOLDOUT_FROM", 40)
    monkeypatch.setattr(probe, "INNER_MAX_ROWS", 60)
    monkeypatch.setattr(similarity, "MAX_JOINT_BYTES", 1)
    monkeypatch.setattr(chunked, "ROW_CHUNK", 32)
    monkeypatch.setattr(similarity, "JOINT_ROW_CHUNK", 32)
    big = comparison.compare(ds, [spec], projection=ProjectionSpec(method="umap"), cache=FeatureCache(tmp_path / "b"))
    m, s = big.metrics, small.metrics
    assert set(big.graphs[k].method for k in big.graphs) == {"hnsw"} and (m["knn_recall"] > 0.9).all()
    assert (m["probe_train"] == 80).all() and (s["probe_train"] == 96).all()
    np.testing.assert_allclose(m["knn_acc"], s["knn_acc"], atol=0.05)
    np.testing.assert_allclose(m["probe_acc"], s["probe_acc"], atol=0.1)
    np.testing.assert_allclose(m["silhouette"], s["silhouette"], atol=1e-6)  # exact either way
    np.testing.assert_allclose(m["eff_dim"], s["eff_dim"], rtol=1e-6)
    np.testing.assert_allclose(big.cka, small.cka, atol=1e-6)
    np.testing.assert_allclose(big.layer_similarity.cka_debiased, small.layer_similarity.cka_debiased, atol=1e-6)
    assert all(p.coords.shape == (120, 2) and np.isfinite(p.coords).all() for p in big.projections.values())


def change_code(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest, module: str) -> None:
    """Make `module`'s code read as changed (one statement added), as an upgrade would."""
    real = code_identity.module_source
    monkeypatch.setattr(
        code_identity, "module_source", lambda name: real(name) + ("\nCHANGED = 1\n" if name == module else "")
    )
    code_identity.stage_identity.cache_clear()
    request.addfinalizer(code_identity.stage_identity.cache_clear)  # after monkeypatch restores the source


def test_features_cached_by_changed_code_are_recomputed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    ds = load_dataset(DataSpec(source="sample:digits", max_images=20), thumbnails=False)
    spec = ExtractSpec(model="mobilenet_v2", layers=("features.3",), weights="none")
    cache = FeatureCache(tmp_path / "c")
    assert layer_features.extract_features(ds, spec, cache=cache).computed == 20
    assert layer_features.extract_features(ds, spec, cache=cache).computed == 0  # same code: from the cache
    change_code(monkeypatch, request, "explorer.networks.pooling")
    assert layer_features.extract_features(ds, spec, cache=cache).computed == 20  # pooling changed: extracted again
    change_code(monkeypatch, request, "explorer.data.images")
    assert layer_features.extract_features(ds, spec, cache=cache).computed == 20  # decoding changed


def test_derived_results_are_keyed_by_library_versions_and_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    ds = load_dataset(DataSpec(source="sample:digits", max_images=30), thumbnails=False)
    spec = ExtractSpec(model="mobilenet_v2", layers=("features.3",))
    cache = FeatureCache(tmp_path / "c")

    def results() -> int:
        return len(list((tmp_path / "c" / "results").rglob("*.npz")))

    comparison.compare(ds, [spec], projection=ProjectionSpec(method="pca"), cache=cache)
    # graph, scores, projection, similarity, the record of undecodable images, LogME, the other scorers,
    # compression, latency, retrieval, few-shot, unseen-class curve, intrinsic dimension
    assert results() == 13
    change_code(monkeypatch, request, "explorer.analysis.probe")  # as an upgrade that changes the probe would
    comparison.compare(ds, [spec], projection=ProjectionSpec(method="pca"), cache=cache)
    # new scores, compression curve, few-shot curve (the probe's) and unseen-class curve (compression's
    # widths): the rest does not depend on the probe
    assert results() == 17
    real = cached_runs.analysis_versions
    monkeypatch.setattr(cached_runs, "analysis_versions", lambda: {**real(), "scikit-learn": "99.0"})
    comparison.compare(ds, [spec], projection=ProjectionSpec(method="pca"), cache=cache)
    assert results() == 28  # a library upgrade recomputes everything derived from the features (the latency is torch's)


def test_preparing_a_model_and_ranking_the_cuts_are_stages_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Preparing a model (its library imported, its graph traced: seconds, the first time) and the
    leaderboard's table with its scorers' agreement (a bootstrap) report stages of their own, so
    that where the time went (progress.StageBar) does not count them in the stage before (reading
    the images; the compression curves)."""
    ds = load_dataset(DataSpec(source="sample:digits", max_images=40))
    seen: list[tuple[str, int, int]] = []
    during: list[tuple[str, int, int]] = []
    agreement_table = comparison.agreement_table

    def agreement(*args, **kwargs):  # type: ignore[no-untyped-def]
        during.append(seen[-1])
        return agreement_table(*args, **kwargs)

    monkeypatch.setattr(comparison, "agreement_table", agreement)
    got = comparison.compare(
        ds,
        [ExtractSpec(model="mobilenet_v2", layers=("features.3", "features.10", "flatten"))],
        projection=ProjectionSpec(method="none"),
        cache=FeatureCache(tmp_path / "c"),
        latency=False,
        progress=lambda stage, done, total: seen.append((stage, done, total)),
    )
    assert seen[0] == ("preparing mobilenet_v2", 0, 1)
    assert seen[1][0] == "loading mobilenet_v2"
    assert during == [(comparison.RANKING, 0, 1)]
    assert seen[-1] == (comparison.RANKING, 1, 1)
    assert len(got.agreement) == 4  # each scorer's agreement, computed in that stage
