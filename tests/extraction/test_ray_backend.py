"""The Ray path (ray_backend.py) on a local 2-CPU Ray instance: the same features as the local
path, under the same keys, so a later local run finds them in the cache."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from explorer import comparison
from explorer.config import DataSpec, ExtractSpec
from explorer.data.datasets import load_dataset
from explorer.store import FeatureCache

pytestmark = pytest.mark.slow  # a local Ray instance

pytest.importorskip("ray")


def test_ray_extraction_equals_the_local_one_and_fills_the_same_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from explorer.extraction import layer_features
    from explorer.extraction.ray_backend import RayEngine

    monkeypatch.setattr(layer_features, "CHUNK", 16)  # several chunks, and a short last one
    ds = load_dataset(DataSpec(source="sample:digits", max_images=40), thumbnails=False)
    broken = ds.items[21]  # its header passes; its pixels do not decode: both paths leave it out alike
    ds = replace(
        ds, items=ds.items[:21] + (replace(broken, data=broken.data[: len(broken.data) // 2]),) + ds.items[22:]
    )
    spec = ExtractSpec(model="mobilenet_v2", layers=("features.3", "flatten"), precision="fp32", batch_size=8)
    ray_cache = FeatureCache(tmp_path / "ray")
    engine = RayEngine(num_cpus=2)
    try:
        on_ray = comparison.extract_features(ds, spec, cache=ray_cache, backend=engine)
    finally:
        engine.stop()
    assert on_ray.computed == 40
    partial = tmp_path / "ray" / "partial"
    assert not partial.exists() or not any(partial.iterdir())  # finished: nothing half-done left
    here = comparison.extract_features(ds, spec, cache=FeatureCache(tmp_path / "local"))
    assert on_ray.store_keys == here.store_keys
    for name in ("features.3", "flatten"):
        np.testing.assert_allclose(on_ray.features[name], here.features[name], rtol=1e-4, atol=1e-5)
    again = comparison.extract_features(ds, spec, cache=ray_cache)  # a local run after the Ray one
    assert again.computed == 0
    found = comparison.unreadable_images(ray_cache, ds, 64_000_000)
    assert list(found) == [21] and "broken image" in found[21]
    assert comparison.unreadable_images(FeatureCache(tmp_path / "local"), ds, 64_000_000) == found


def test_a_sweep_on_ray_runs_each_model_on_actors_of_its_own_into_the_same_store(tmp_path: Path) -> None:
    from explorer.extraction.layer_features import extract_sweep
    from explorer.extraction.ray_backend import RayEngine

    ds = load_dataset(DataSpec(source="sample:digits", max_images=24), thumbnails=False)
    specs = [
        ExtractSpec(model="mobilenet_v2", layers=("features.3",), precision="fp32", batch_size=8),
        ExtractSpec(model="resnet18", weights="none", layers=("layer1",), precision="fp32", batch_size=8),
    ]
    cache = FeatureCache(tmp_path / "ray")
    engine = RayEngine(num_cpus=2)
    try:
        runs = extract_sweep(ds, specs, comparison.run_labels(specs), cache=cache, backend=engine)
    finally:
        engine.stop()
    assert [r.computed for r in runs] == [24, 24]
    here = extract_sweep(ds, specs, comparison.run_labels(specs), cache=FeatureCache(tmp_path / "local"))
    for on_ray, local in zip(runs, here):
        assert on_ray.store_keys == local.store_keys
        for name in on_ray.features:
            np.testing.assert_allclose(on_ray.features[name], local.features[name], rtol=1e-4, atol=1e-5)
    assert all(
        r.computed == 0 for r in extract_sweep(ds, specs, comparison.run_labels(specs), cache=cache)
    )  # one store


def test_parquet_and_shard_images_are_read_on_the_workers(tmp_path: Path) -> None:
    """Images inside a parquet file or a WebDataset shard reach the Ray workers as where they lie
    (a row group's cell, a member's offset), not as bytes from the driver; the features equal the
    local engine's."""
    import io
    import tarfile

    import pandas as pd

    from explorer.extraction.ray_backend import RayEngine

    files = sorted(Path(__file__).resolve().parents[2].glob("explorer/samples/clothing/*/*_0[0-2].jpg"))
    pd.DataFrame(
        {"image": [{"bytes": f.read_bytes(), "path": f.name} for f in files], "label": [f.parent.name for f in files]}
    ).to_parquet(tmp_path / "t.parquet", row_group_size=7)
    with tarfile.open(tmp_path / "s.tar", "w") as tf:
        for i, f in enumerate(files):
            for name, data in ((f"k{i:03d}.jpg", f.read_bytes()), (f"k{i:03d}.cls", f.parent.name.encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    spec = ExtractSpec(model="mobilenet_v2", layers=("features.6",), precision="fp32", batch_size=8)
    engine = RayEngine(num_cpus=2)
    try:
        for source in ("t.parquet", "s.tar"):
            ds = load_dataset(DataSpec(source=str(tmp_path / source)), thumbnails=False)
            assert all(it.member is not None and it.data is None for it in ds.items)
            on_ray = comparison.extract_features(
                ds, spec, cache=FeatureCache(tmp_path / f"ray-{source}"), backend=engine
            )
            here = comparison.extract_features(ds, spec, cache=FeatureCache(tmp_path / f"local-{source}"))
            assert on_ray.computed == len(files) == len(ds)
            np.testing.assert_allclose(on_ray.features["features.6"], here.features["features.6"], rtol=1e-4, atol=1e-5)
    finally:
        engine.stop()
