"""Cache keys are complete; cached layers never touch the model; interrupted extraction resumes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from explorer import cache as cache_mod
from explorer import models, pipeline
from explorer.cache import FeatureCache, make_key
from explorer.config import DataSpec, ExtractSpec, ProjectionSpec
from explorer.datasets import load_dataset
from explorer.extract import Cancelled

from .conftest import make_class_folders


def _ctx(tmp: Path) -> tuple[dict, object]:
    ds = load_dataset(DataSpec(source=str(make_class_folders(tmp, per_class=2))))
    spec = ExtractSpec(model="mobilenet_v2")
    w = models.resolve_weights("mobilenet_v2", "auto")
    tf = models.transforms("mobilenet_v2", w.tv_weights)
    return pipeline._context(ds, spec, w, tf, "cpu", "bf16"), ds


def test_every_input_changes_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx, ds = _ctx(tmp_path / "a")
    base = make_key("layer", {**ctx, "layer": "features.3"})
    variants = {
        "dataset": "0" * 64, "n_images": 99, "model": "resnet18", "weights": "random:0",
        "preprocessing": "ImageClassification(crop_size=[200])", "pooling": "max", "token_pooling": "mean",
        "precision": "fp32", "graph": "as traced", "device": "cuda", "libraries": {**ctx["libraries"], "torch": "9.9"},
    }  # fmt: skip
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
    first = pipeline.extract_features(ds, spec, cache=cache)
    assert first.computed == 40

    def boom(*a: object, **k: object) -> None:
        raise AssertionError("the model was built although every layer was cached")

    monkeypatch.setattr(models, "build_model", boom)
    again = pipeline.extract_features(ds, spec, cache=cache)
    assert again.computed == 0
    for n in ("features.3.add", "flatten"):
        np.testing.assert_array_equal(first.features[n], again.features[n])
    comp = pipeline.compare(ds, [spec], projection=ProjectionSpec(method="pca"), cache=cache)
    assert list(comp.metrics["layer"]) == ["features.3.add", "flatten"]


def test_interrupted_extraction_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pipeline, "CHUNK", 16)
    ds = load_dataset(DataSpec(source="sample:digits", max_images=48))
    cache = FeatureCache(tmp_path / "c")
    spec = ExtractSpec(model="mobilenet_v2", layers=("features.5.add",), batch_size=8, precision="fp32")
    calls = {"n": 0}

    def stop_after_two_chunks() -> bool:
        calls["n"] += 1
        return calls["n"] > 4  # two chunks of two batches each

    with pytest.raises(Cancelled):
        pipeline.extract_features(ds, spec, cache=cache, should_stop=stop_after_two_chunks)
    resumed = pipeline.extract_features(ds, spec, cache=cache)
    assert resumed.computed == 16  # only the third chunk ran
    fresh = pipeline.extract_features(ds, spec, cache=FeatureCache(tmp_path / "fresh"))
    np.testing.assert_allclose(resumed.features["features.5.add"], fresh.features["features.5.add"], rtol=1e-5, atol=1e-5)
    assert not (tmp_path / "c" / "partial").exists() or not any((tmp_path / "c" / "partial").iterdir())


def test_cache_files_are_plain_npz(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path)
    cache.put("ab" * 32, np.ones((3, 2)))
    path = next(tmp_path.rglob("*.npz"))
    with np.load(path, allow_pickle=False) as z:
        assert z["features"].dtype == np.float32
    path.write_bytes(b"garbage")
    assert cache.get("ab" * 32) is None and not path.exists()


def test_parse_layers() -> None:
    assert pipeline.parse_layers(["a"], "auto") == {"a": ()}
    assert pipeline.parse_layers(["a"], "x,y") == {"a": ("x", "y")}
    assert pipeline.parse_layers(["a", "b"], "a:x,b:y") == {"a": ("x",), "b": ("y",)}
    with pytest.raises(ValueError, match="model:node"):
        pipeline.parse_layers(["a", "b"], "x")
