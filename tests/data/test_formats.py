"""Datasets as people keep them (issue 31): Hugging Face parquet, save_to_disk and imagefolder
metadata, WebDataset shards and tables of paths, each built here from the bundled sample with the
format's own library, each giving the images (and so the features) the same files give as class
folders; and the hostile ones refused or skipped with one sentence, nothing written outside."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from explorer.config import DataSpec, Limits
from explorer.data.datasets import load_dataset
from explorer.data.source_table import SAMPLES_DIR

SAMPLE = SAMPLES_DIR / "clothing"
N = 40  # images per built dataset: every class, a few each


def _files() -> list[Path]:
    files = sorted(SAMPLE.glob("*/*.jpg"))
    by_class: dict[str, list[Path]] = {}
    for f in files:
        by_class.setdefault(f.parent.name, []).append(f)
    return [f for fs in by_class.values() for f in fs[: N // len(by_class)]]


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _folder_view(files: list[Path]) -> dict[str, str]:
    """{sha256 of the image's bytes: its class}: what the same files as class folders give."""
    return {_sha(f): f.parent.name for f in files}


def _same_images(ds, files: list[Path]) -> None:  # type: ignore[no-untyped-def]
    assert dict(zip(ds.hashes, ds.labels)) == _folder_view(files)
    assert len(ds) == len(files)


def _load(source: object, **kw: object):  # type: ignore[no-untyped-def]
    return load_dataset(DataSpec(source=str(source), **kw), thumbnails=False)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def files() -> list[Path]:
    return _files()


def test_a_parquet_file_written_by_datasets(tmp_path: Path, files: list[Path]) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict(
        {
            "image": [str(f) for f in files],
            "label": [f.parent.name for f in files],
            "shade": [f"s{i % 3}" for i in range(len(files))],
        }
    )
    ds.cast_column("image", datasets.Image()).class_encode_column("label").to_parquet(tmp_path / "train.parquet")
    got = _load(tmp_path / "train.parquet")
    _same_images(got, files)
    assert got.metadata["shade"][:3] == ("s0", "s1", "s2")


def test_a_folder_of_parquet_shards_with_plain_bytes(tmp_path: Path, files: list[Path]) -> None:
    (tmp_path / "data").mkdir()
    half = len(files) // 2
    for i, part in enumerate((files[:half], files[half:])):
        pd.DataFrame({"img": [f.read_bytes() for f in part], "class": [f.parent.name for f in part]}).to_parquet(
            tmp_path / "data" / f"train-{i:05d}-of-00002.parquet", row_group_size=7
        )
    _same_images(_load(tmp_path / "data"), files)


def test_a_save_to_disk_folder(tmp_path: Path, files: list[Path]) -> None:
    datasets = pytest.importorskip("datasets")
    ds = datasets.Dataset.from_dict({"image": [str(f) for f in files], "label": [f.parent.name for f in files]})
    ds.cast_column("image", datasets.Image()).class_encode_column("label").save_to_disk(str(tmp_path / "saved"))
    _same_images(_load(tmp_path / "saved"), files)


def test_an_imagefolder_with_metadata_jsonl(tmp_path: Path, files: list[Path]) -> None:
    root = tmp_path / "imgs"
    (root / "train").mkdir(parents=True)
    lines = []
    for i, f in enumerate(files):
        shutil.copy(f, root / "train" / f"{i:03d}.jpg")
        lines.append(json.dumps({"file_name": f"train/{i:03d}.jpg", "kind": f.parent.name, "n": i}))
    (root / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    got = _load(root, label_column="kind")
    _same_images(got, files)
    assert got.metadata["n"][:2] == ("0", "1")
    with pytest.raises(ValueError, match="no label column 'label'"):
        _load(root, label_column="label")


def test_webdataset_shards_written_by_its_shardwriter(tmp_path: Path, files: list[Path]) -> None:
    wds = pytest.importorskip("webdataset")
    (tmp_path / "shards").mkdir()
    classes = sorted({f.parent.name for f in files})
    with wds.ShardWriter(str(tmp_path / "shards" / "train-%03d.tar"), maxcount=15) as sink:
        for i, f in enumerate(files):
            sink.write(
                {
                    "__key__": f"s{i:04d}",
                    "jpg": f.read_bytes(),
                    "cls": classes.index(f.parent.name),
                    "json": {"label": f.parent.name, "shade": i % 2},
                }
            )
    shards = sorted((tmp_path / "shards").glob("*.tar"))
    assert len(shards) == 3
    by_field = _load(tmp_path / "shards", label_column="label")  # the folder: the json's field as the label
    _same_images(by_field, files)
    assert set(by_field.metadata["shade"]) == {"0", "1"}
    pattern = str(tmp_path / "shards" / "train-{000..002}.tar")
    by_cls = _load(pattern)  # the brace pattern: .cls as the label (its class index)
    assert dict(zip(by_cls.hashes, by_cls.labels)) == {_sha(f): str(classes.index(f.parent.name)) for f in files}
    one = _load(shards[0])
    assert len(one) == 15


def test_a_table_of_paths(tmp_path: Path, files: list[Path]) -> None:
    root = tmp_path / "photos"
    for f in files:
        (root / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / f.parent.name / f.name)
    rel = pd.DataFrame(
        {"path": [f"photos/{f.parent.name}/{f.name}" for f in files], "label": [f.parent.name for f in files]}
    )
    rel.to_csv(tmp_path / "table.csv", index=False)
    _same_images(_load(tmp_path / "table.csv"), files)
    absolute = rel.assign(path=[str(root / f.parent.name / f.name) for f in files])
    absolute.to_parquet(tmp_path / "table.parquet")
    _same_images(_load(tmp_path / "table.parquet"), files)


# ---- hostile inputs


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w") as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _member(
    name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, link: str = ""
) -> tuple[tarfile.TarInfo, bytes | None]:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, len(data) if kind == tarfile.REGTYPE else 0, link
    return info, data if kind == tarfile.REGTYPE else None


@pytest.mark.parametrize(
    "bad",
    [
        _member("../evil.jpg", b"x"),
        _member("/etc/evil.jpg", b"x"),
        _member("a.jpg", kind=tarfile.SYMTYPE, link="/etc/passwd"),
        _member("b.jpg", kind=tarfile.CHRTYPE),
    ],
)
def test_a_shard_with_an_unsafe_member_is_refused_whole(tmp_path: Path, files: list[Path], bad: tuple) -> None:
    good = _member("s0001.jpg", files[0].read_bytes())
    shard = _tar(tmp_path / "bad.tar", [good, bad])
    with pytest.raises(ValueError, match="shard refused"):
        _load(shard)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tar"]  # nothing written


def test_a_parquet_with_a_pixel_bomb_and_a_truncated_jpeg_skips_and_names_them(
    tmp_path: Path, files: list[Path]
) -> None:
    bomb = io.BytesIO()
    Image.new("L", (9000, 9000)).save(bomb, format="PNG")
    truncated = files[1].read_bytes()[:400]
    rows = [files[0].read_bytes(), bomb.getvalue(), truncated, files[2].read_bytes()]
    pd.DataFrame(
        {"image": [{"bytes": b, "path": f"{i}.jpg"} for i, b in enumerate(rows)], "label": ["a", "b", "c", "d"]}
    ).to_parquet(tmp_path / "t.parquet")
    got = load_dataset(
        DataSpec(source=str(tmp_path / "t.parquet")), limits=Limits(max_pixels=40_000_000), thumbnails=True
    )
    assert list(got.labels) == ["a", "d"]
    reasons = {s.file.rsplit("-", 1)[-1]: s.reason for s in got.skipped}
    assert "pixels" in reasons["1.jpg"] and reasons["2.jpg"]


def test_a_table_naming_system_files_is_refused_in_the_demo(tmp_path: Path, files: list[Path]) -> None:
    from explorer.config import DEMO_LIMITS

    pd.DataFrame({"path": ["/etc/passwd", "../x.jpg"], "label": ["a", "b"]}).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(ValueError, match="outside the table's folder"):
        load_dataset(DataSpec(source=str(tmp_path / "t.csv")), limits=DEMO_LIMITS, server_paths=False, thumbnails=False)


def test_a_missing_label_column_is_said(tmp_path: Path, files: list[Path]) -> None:
    pd.DataFrame({"image": [files[0].read_bytes()], "label": ["a"]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(ValueError, match="no label column 'kind'"):
        _load(tmp_path / "t.parquet", label_column="kind")


def test_parquet_and_shards_give_the_folders_features(tmp_path: Path, files: list[Path]) -> None:
    """Extracted apart (a cache each): the features of the same images equal the folder's."""
    import numpy as np

    import explorer

    root = tmp_path / "folder"
    for f in files:
        (root / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / f.parent.name / f.name)
    pd.DataFrame(
        {"image": [{"bytes": f.read_bytes(), "path": f.name} for f in files], "label": [f.parent.name for f in files]}
    ).to_parquet(tmp_path / "t.parquet")
    shard = _tar(
        tmp_path / "s.tar",
        [
            m
            for i, f in enumerate(files)
            for m in (_member(f"k{i:03d}.jpg", f.read_bytes()), _member(f"k{i:03d}.cls", f.parent.name.encode()))
        ],
    )

    def features(source: Path, cache: str) -> dict[str, np.ndarray]:
        comp = explorer.compare(
            str(source),
            layers=["features.14"],
            cache_dir=tmp_path / cache,
            progress=False,
            leaderboard=False,
            projection="none",
        )
        return dict(zip(comp.dataset.hashes, np.asarray(comp.features("features.14"))))

    folder = features(root, "c1")
    for source, cache in ((tmp_path / "t.parquet", "c2"), (shard, "c3")):
        got = features(source, cache)
        assert got.keys() == folder.keys()
        np.testing.assert_allclose(np.stack([got[h] for h in folder]), np.stack(list(folder.values())), atol=1e-5)


def test_the_python_api_reads_the_same_sources_with_a_label_column(tmp_path: Path, files: list[Path]) -> None:
    import explorer

    pd.DataFrame(
        {"image": [{"bytes": f.read_bytes(), "path": f.name} for f in files], "kind": [f.parent.name for f in files]}
    ).to_parquet(tmp_path / "t.parquet")
    got = explorer.load(str(tmp_path / "t.parquet"), label_column="kind", progress=False)
    _same_images(got, files)
