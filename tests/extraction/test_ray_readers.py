"""With `--engine ray`, parquet files, WebDataset shards and tables of paths are read by Ray Data's own
readers on the workers (cluster_listing.py, ray_backend.py): the listing they give is the local one
(names, labels, columns, hashes, what is skipped), the driver reads no image's bytes, and the
features are the local engine's, on a local Ray instance."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from explorer import comparison
from explorer.config import DataSpec, ExtractSpec
from explorer.data import containers, datasets, items, shards
from explorer.data.datasets import load_dataset
from explorer.data.source_table import SAMPLES_DIR
from explorer.store import FeatureCache

pytestmark = pytest.mark.slow  # a local Ray instance

pytest.importorskip("ray")

FILES = sorted(SAMPLES_DIR.glob("clothing/*/*_0[0-1].jpg"))  # two of each class
SPEC = ExtractSpec(model="mobilenet_v2", layers=("features.6",), precision="fp32", batch_size=8)


@pytest.fixture(scope="module")
def engine() -> Iterator[object]:
    from explorer.extraction.ray_backend import RayEngine

    eng = RayEngine(num_cpus=2)
    eng.start()
    yield eng
    eng.stop()


def _broken() -> bytes:
    data = FILES[0].read_bytes()
    return data[: len(data) // 2]  # its header passes; its pixels do not decode


def _parquet(root: Path) -> Path:
    datasets_lib = pytest.importorskip("datasets")
    ds = datasets_lib.Dataset.from_dict(
        {
            "image": [str(f) for f in FILES],
            "label": [f.parent.name for f in FILES],
            "shade": [f"s{i % 3}" for i in range(len(FILES))],
        }
    )
    ds.cast_column("image", datasets_lib.Image()).class_encode_column("label").to_parquet(
        root / "train.parquet", batch_size=7
    )
    return root / "train.parquet"


def _parquet_shards(root: Path) -> Path:
    """Three parquet files of plain bytes under data/, as the hub keeps shards: Ray reads them in order."""
    (root / "data").mkdir()
    for i in range(3):
        part = FILES[i::3]
        pd.DataFrame({"img": [f.read_bytes() for f in part], "label": [f.parent.name for f in part]}).to_parquet(
            root / "data" / f"train-{i:05d}-of-00003.parquet", row_group_size=3
        )
    return root


def _shards(root: Path) -> str:
    """Two shards by webdataset's own ShardWriter; a duplicate image and a broken one among them."""
    wds = pytest.importorskip("webdataset")
    (root / "shards").mkdir()
    samples = [(f.read_bytes(), f.parent.name) for f in FILES] + [
        (FILES[3].read_bytes(), "copy"),
        (_broken(), "broken"),
    ]
    with wds.ShardWriter(str(root / "shards" / "part-%02d.tar"), maxcount=14) as sink:
        for i, (data, label) in enumerate(samples):
            sink.write({"__key__": f"s{i:04d}", "jpg": data, "json": {"label": label, "n": i}})
    return str(root / "shards" / "part-{00..01}.tar")


def _table(root: Path) -> Path:
    rows = [{"file": str(f), "class": f.parent.name, "note": f.stem} for f in FILES]
    pd.DataFrame(rows + [{"file": str(root / "gone.jpg"), "class": "x", "note": "missing"}]).to_csv(
        root / "t.csv", index=False
    )
    return root / "t.csv"


def _refuse_image_reads_here(monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading an image's bytes in this process (the driver) fails the test; the workers are other processes."""

    def refuse(*_: object, **__: object) -> bytes:
        raise AssertionError("the driver read an image's bytes")

    for cls in (shards.TarMember, containers.TableCell, shards.ShardSample):
        monkeypatch.setattr(cls, "read", refuse)
    monkeypatch.setattr(items.ImageItem, "read_bytes", refuse)
    monkeypatch.setattr(datasets, "check_image_bytes", refuse)


@pytest.mark.parametrize(
    "build, kind, label_column",
    [
        (_parquet, "parquet", None),
        (_parquet_shards, "parquet", None),
        (_shards, "webdataset", "label"),
        (_table, "binary", "class"),
    ],
)
def test_the_cluster_reads_lists_and_extracts_what_the_local_engine_does(
    tmp_path: Path, engine: object, build: object, kind: str, label_column: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = str(build(tmp_path))  # type: ignore[operator]
    spec = DataSpec(source=source, label_column=label_column)
    local = load_dataset(spec, thumbnails=False)
    here = comparison.extract_features(local, SPEC, cache=FeatureCache(tmp_path / "local"))
    _refuse_image_reads_here(monkeypatch)
    on_ray = engine.load_dataset(spec)  # type: ignore[attr-defined]
    assert on_ray.files is not None and on_ray.files.kind == kind
    assert (on_ray.names, on_ray.hashes, on_ray.labels, on_ray.metadata) == (
        local.names,
        local.hashes,
        local.labels,
        local.metadata,
    )
    assert [s.file for s in on_ray.skipped] == [s.file for s in local.skipped]
    assert on_ray.content_hash == local.content_hash  # so the same cache keys
    run = comparison.extract_features(on_ray, SPEC, cache=FeatureCache(tmp_path / "ray"), backend=engine)
    assert run.computed == len(on_ray)
    assert run.store_keys == here.store_keys
    np.testing.assert_allclose(run.features["features.6"], here.features["features.6"], rtol=1e-4, atol=1e-5)
    assert run.unreadable == here.unreadable
    if kind == "webdataset":  # the duplicate is left out of the listing, the broken image out of the features
        assert any("duplicate" in s.reason for s in on_ray.skipped) and len(run.unreadable) == 1
    if kind == "binary":
        assert [s.reason.startswith("unreadable file") for s in on_ray.skipped] == [True]


def test_a_shard_with_a_link_is_refused_on_the_cluster_too(tmp_path: Path, engine: object) -> None:
    with tarfile.open(tmp_path / "bad.tar", "w") as tf:
        data = FILES[0].read_bytes()
        info = tarfile.TarInfo("a.jpg")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("b.jpg")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
    with pytest.raises(ValueError, match="shard refused: bad.tar has a link member 'b.jpg'"):
        engine.load_dataset(DataSpec(source=str(tmp_path / "bad.tar")))  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="no label column 'kind'"):
        engine.load_dataset(DataSpec(source=str(_parquet(tmp_path)), label_column="kind"))  # type: ignore[attr-defined]


@pytest.mark.parametrize("build", [_parquet, _table])
def test_a_sample_of_the_images_is_the_local_engines_sample(tmp_path: Path, engine: object, build: object) -> None:
    spec = DataSpec(source=str(build(tmp_path)), max_images=7, random_state=3)  # type: ignore[operator]
    on_ray, local = engine.load_dataset(spec), load_dataset(spec, thumbnails=False)  # type: ignore[attr-defined]
    assert (on_ray.names, on_ray.hashes, on_ray.labels) == (local.names, local.hashes, local.labels)
    assert 6 <= len(on_ray) <= 7  # (the table names a missing file: it may be in the sample)


def test_a_folder_is_left_to_the_local_listing(engine: object) -> None:
    assert engine.load_dataset(DataSpec(source=str(SAMPLES_DIR / "clothing"))) is None  # type: ignore[attr-defined]
    assert engine.load_dataset(DataSpec(source="sample:digits")) is None  # type: ignore[attr-defined]


def test_the_python_api_runs_on_ray_too(tmp_path: Path, engine: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """`explorer.compare(..., engine="ray")` lists a parquet file on the cluster and extracts there
    (this process reads no image): the same metrics as the local engine's (the instance the fixture
    started is reused)."""
    import explorer

    source = _parquet(tmp_path)
    kw = {
        "models": "mobilenet_v2",
        "layers": ["features.6", "flatten"],
        "projection": "none",
        "progress": False,
        "leaderboard": False,
        "precision": "fp32",
        "folds": 2,
    }
    _refuse_image_reads_here(monkeypatch)
    on_ray = explorer.compare(source, engine="ray", cache_dir=tmp_path / "ray", **kw)
    monkeypatch.undo()
    here = explorer.compare(source, cache_dir=tmp_path / "local", **kw)
    cols = ["layer", "dim", "probe_acc", "knn_acc"]
    pd.testing.assert_frame_equal(on_ray.metrics[cols], here.metrics[cols])
    with pytest.raises(ValueError, match="choose 'local' or 'ray'"):
        explorer.compare(source, engine="spark", **kw)


def test_a_resumed_run_on_ray_decodes_only_what_is_left(
    tmp_path: Path, engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A local run stopped after its first chunk, resumed on Ray through the parquet reader: the
    finished chunk's images come through the reader but no row wants them (a batch with none left:
    no rows, each layer's width), and the features equal a fresh local run's."""
    from explorer.extraction import layer_features
    from explorer.progress import Cancelled

    monkeypatch.setattr(layer_features, "CHUNK", 8)
    ds = load_dataset(DataSpec(source=str(_parquet(tmp_path))), thumbnails=False)
    cache = FeatureCache(tmp_path / "c")
    spec = ExtractSpec(model="mobilenet_v2", layers=("features.6", "flatten"), precision="fp32", batch_size=8)
    polls = {"n": 0}

    def stop_after_one_chunk() -> bool:
        polls["n"] += 1
        return polls["n"] > 1

    with pytest.raises(Cancelled):
        comparison.extract_features(ds, spec, cache=cache, should_stop=stop_after_one_chunk)
    resumed = comparison.extract_features(ds, spec, cache=cache, backend=engine)
    assert resumed.computed == len(ds) - 8
    fresh = comparison.extract_features(ds, spec, cache=FeatureCache(tmp_path / "fresh"))
    for name in ("features.6", "flatten"):
        np.testing.assert_allclose(resumed.features[name], fresh.features[name], rtol=1e-4, atol=1e-5)
