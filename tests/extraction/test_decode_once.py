"""Each image is decoded once, by extraction: loading checks only headers (without thumbnails), and
an image that fails to decode during extraction is left out, reported, and remembered by the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from explorer import comparison
from explorer.config import DataSpec, ExtractSpec, ProjectionSpec
from explorer.data import datasets
from explorer.data.datasets import load_dataset
from explorer.networks import preprocess
from explorer.store import FeatureCache

from ..conftest import make_class_folders

pytestmark = pytest.mark.slow  # real models on hundreds of images


def _truncate(path: Path) -> None:
    raw = path.read_bytes()
    path.write_bytes(raw[: raw.index(b"\xff\xda") + 40])  # cut after the start of scan: the header is intact


def test_an_image_is_decoded_once_and_a_broken_one_is_left_out_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = make_class_folders(tmp_path / "data", per_class=6)
    _truncate(data / "blue" / "blue_3.jpg")
    decodes: list[int] = []
    real = preprocess.load_rgb

    def counting(data: bytes, *, max_pixels: int):  # type: ignore[no-untyped-def]
        decodes.append(1)
        return real(data, max_pixels=max_pixels)

    def no_reduced_decode(*a, **k):  # type: ignore[no-untyped-def]
        raise AssertionError("loading without thumbnails decoded an image")

    monkeypatch.setattr(preprocess, "load_rgb", counting)
    monkeypatch.setattr(datasets, "check_and_thumbnail", no_reduced_decode)
    ds = load_dataset(DataSpec(source=str(data)), thumbnails=False)
    n = len(ds)
    assert "blue/blue_3.jpg" in ds.names  # its header passed
    spec = ExtractSpec(model="mobilenet_v2", layers=("features.3", "flatten"))
    cache = FeatureCache(tmp_path / "c")
    comp = comparison.compare(ds, [spec], projection=ProjectionSpec(method="pca"), cache=cache)
    assert len(decodes) == n  # one model: every image decoded exactly once
    assert len(comp.dataset) == n - 1 and "blue/blue_3.jpg" not in comp.dataset.names
    (skip,) = [s for s in comp.dataset.skipped if s.file == "blue/blue_3.jpg"]
    assert "broken image" in skip.reason
    assert all(f.shape[0] == n - 1 for f in comp.runs[0].features.values())
    assert all(p.coords.shape[0] == n - 1 for p in comp.projections.values())
    assert len(comp.dataset.labels) == n - 1 and comp.dataset.labels.count("blue") == 5

    again = comparison.compare(ds, [spec], projection=ProjectionSpec(method="pca"), cache=cache)
    assert len(decodes) == n and again.runs[0].computed == 0  # the cache remembers which image failed
    assert again.dataset.names == comp.dataset.names
    np.testing.assert_array_equal(again.metrics["knn_acc"], comp.metrics["knn_acc"])

    clean = load_dataset(DataSpec(source=str(data)), thumbnails=False).without({ds.names.index("blue/blue_3.jpg"): "x"})
    fresh = comparison.compare(
        clean, [spec], projection=ProjectionSpec(method="pca"), cache=FeatureCache(tmp_path / "f")
    )
    for name in ("features.3", "flatten"):  # the rows kept are the rows of the images without the broken one
        np.testing.assert_allclose(comp.runs[0].features[name], fresh.runs[0].features[name], rtol=1e-5, atol=1e-6)


def test_a_dataset_of_only_undecodable_images_is_refused_with_a_reason(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "data", per_class=1)
    for p in data.rglob("*.jpg"):
        _truncate(p)
    ds = load_dataset(DataSpec(source=str(data)), thumbnails=False)
    with pytest.raises(ValueError, match="none of the .* could be decoded"):
        comparison.compare(
            ds,
            [ExtractSpec(model="mobilenet_v2", layers=("features.3",))],
            projection=ProjectionSpec(method="none"),
            cache=FeatureCache(tmp_path / "c"),
        )


def test_a_sweep_of_models_decodes_each_image_once_and_gives_each_models_own_features(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Four models with three preprocessings (two torchvision models sharing theirs, a timm ViT at
    its own size, a timm CNN's bicubic resize): one decode per image for all of them, and each
    model's features equal to its extraction alone; a broken image is left out of every model."""
    from explorer.extraction.layer_features import extract_features

    data = make_class_folders(tmp_path / "data", per_class=4)
    _truncate(data / "red" / "red_2.jpg")
    ds = load_dataset(DataSpec(source=str(data)), thumbnails=False)
    specs = [
        ExtractSpec(model=m, weights="none", layers=layers, precision="fp32", device="cpu", batch_size=5)
        for m, layers in (
            ("mobilenet_v2", ("features.3", "flatten")),
            ("regnet_y_400mf", ("trunk_output",)),
            ("timm:test_vit", ("blocks.0",)),
            ("timm:resnet18", ("layer2",)),
        )
    ]
    alone = [extract_features(ds, s, cache=FeatureCache(tmp_path / f"alone{i}")) for i, s in enumerate(specs)]
    decodes: list[int] = []
    real = preprocess.load_rgb

    def counting(data: bytes, *, max_pixels: int):  # type: ignore[no-untyped-def]
        decodes.append(1)
        return real(data, max_pixels=max_pixels)

    monkeypatch.setattr(preprocess, "load_rgb", counting)
    comp = comparison.compare(
        ds, specs, projection=ProjectionSpec(method="none"), cache=FeatureCache(tmp_path / "sweep"), leaderboard=False
    )
    assert len(decodes) == len(ds)  # once per image, not once per model
    assert all(r.computed == len(ds) for r in comp.runs)
    broken = ds.names.index("red/red_2.jpg")
    assert "red/red_2.jpg" not in comp.dataset.names
    for run, one in zip(comp.runs, alone):
        for layer, f in run.features.items():
            want = np.delete(one.features[layer], broken, axis=0)
            np.testing.assert_allclose(f, want, rtol=1e-5, atol=1e-5, err_msg=f"{run.label} {layer}")
