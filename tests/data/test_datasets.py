"""Dataset layouts, labels, duplicates and subsampling."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from explorer.config import DataSpec
from explorer.data.datasets import load_dataset, stratified_subsample

from ..conftest import jpeg_bytes, make_class_folders, zip_folder


def test_class_folders(class_folders: Path) -> None:
    (class_folders / "red" / "notes.txt").write_text("hello")
    (class_folders / "red" / "broken.jpg").write_bytes(b"not really a jpeg")
    ds = load_dataset(DataSpec(source=str(class_folders)))
    assert len(ds) == 18
    assert ds.class_counts == {"blue": 6, "green": 6, "red": 6}
    reasons = {s.file: s.reason for s in ds.skipped}
    assert reasons["red/notes.txt"].startswith("not an image")
    assert "red/broken.jpg" in reasons


def test_without_thumbnails_the_same_files_are_kept_and_skipped(class_folders: Path) -> None:
    """The CLI checks images without making thumbnails: the same verdict on every file."""
    (class_folders / "red" / "broken.jpg").write_bytes(jpeg_bytes((200, 0, 0))[:200])  # truncated
    (class_folders / "blue" / "copy.jpg").write_bytes((class_folders / "blue" / "blue_0.jpg").read_bytes())
    with_thumbs = load_dataset(DataSpec(source=str(class_folders)))
    without = load_dataset(DataSpec(source=str(class_folders)), thumbnails=False)
    assert len(with_thumbs.thumbnails) == len(with_thumbs) == 18
    assert without.thumbnails == ()
    assert without.names == with_thumbs.names and without.hashes == with_thumbs.hashes
    assert without.skipped == with_thumbs.skipped
    assert {s.file for s in without.skipped} == {"red/broken.jpg", "blue/copy.jpg"}


def test_zip_with_wrapper_folder_and_duplicates(tmp_path: Path) -> None:
    data = make_class_folders(tmp_path / "d", per_class=4)
    shutil.copy(data / "red" / "red_0.jpg", data / "red" / "copy_of_red_0.jpg")
    ds = load_dataset(DataSpec(source=str(zip_folder(data, tmp_path / "a.zip", prefix="my_dataset/"))))
    try:
        assert ds.classes == ["blue", "green", "red"]
        assert len(ds) == 12
        assert ds.duplicates == (("red/red_0.jpg", "red/copy_of_red_0.jpg"),) or ds.duplicates == (
            ("red/copy_of_red_0.jpg", "red/red_0.jpg"),
        )
        unpacked = ds.items[0].path
        assert unpacked is not None and Path(unpacked).exists()
    finally:
        ds.close()
    assert not Path(unpacked).exists()


def test_flat_folder_with_labels_csv(tmp_path: Path) -> None:
    for i in range(4):
        (tmp_path / f"img{i}.jpg").write_bytes(jpeg_bytes((i * 40, 0, 0), noise=i))
    (tmp_path / "labels.csv").write_text("filename,label\nimg0.jpg,a\nimg1.jpg,a\nimg2.jpg,b\nmissing.jpg,b\n")
    ds = load_dataset(DataSpec(source=str(tmp_path)))
    assert ds.labels == ("a", "a", "b")
    reasons = {s.file: s.reason for s in ds.skipped}
    assert "no label" in reasons["img3.jpg"] and "not found" in reasons["missing.jpg"]


def test_labels_csv_further_columns_stay_with_their_images(tmp_path: Path) -> None:
    """The columns after the label are kept per image (named by the header), aligned with the items
    after subsampling, skipped files and duplicates, and after `without()`."""
    rows = ["filename,label,photographer,year"]
    for i in range(8):
        (tmp_path / f"img{i}.jpg").write_bytes(jpeg_bytes((i * 30, 0, 0), noise=i))
        rows.append(f"img{i}.jpg,{'ab'[i % 2]},p{i},{2000 + i}" if i != 5 else "img5.jpg,b,p5")  # a short row
    (tmp_path / "img7.jpg").write_bytes((tmp_path / "img6.jpg").read_bytes())  # a duplicate, left out
    (tmp_path / "img3.jpg").write_bytes(b"broken")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    ds = load_dataset(DataSpec(source=str(tmp_path)))
    assert list(ds.metadata) == ["photographer", "year"]
    for j, name in enumerate(ds.names):
        i = int(name[3])
        assert ds.metadata["photographer"][j] == f"p{i}"
        assert ds.metadata["year"][j] == ("" if i == 5 else str(2000 + i))
    fewer = ds.without({0: "test"})
    assert fewer.metadata["photographer"] == ds.metadata["photographer"][1:]
    sub = load_dataset(DataSpec(source=str(tmp_path), max_images=4), thumbnails=False)
    assert [f"p{name[3]}" for name in sub.names] == list(sub.metadata["photographer"])


def test_labels_csv_without_a_header_names_its_further_columns(tmp_path: Path) -> None:
    for i in range(2):
        (tmp_path / f"img{i}.jpg").write_bytes(jpeg_bytes((i * 90, 0, 0), noise=i))
    (tmp_path / "labels.csv").write_text("img0.jpg,a,x\nimg1.jpg,b,y\n")
    ds = load_dataset(DataSpec(source=str(tmp_path)))
    assert ds.metadata == {"column 3": ("x", "y")}
    (tmp_path / "labels.csv").write_text("img0.jpg,a\nimg1.jpg,b\n")
    assert load_dataset(DataSpec(source=str(tmp_path))).metadata == {}


def test_unlabeled_flat_folder(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"x{i}.jpg").write_bytes(jpeg_bytes((0, i * 50, 0), noise=i))
    ds = load_dataset(DataSpec(source=str(tmp_path)))
    assert ds.labels is None and len(ds) == 3


def test_samples_and_errors(tmp_path: Path) -> None:
    ds = load_dataset(DataSpec(source="sample:clothing"))
    assert len(ds) == 400 and len(ds.classes) == 10 and not ds.skipped
    digits = load_dataset(DataSpec(source="sample:digits", max_images=50))
    assert len(digits) == 50 and set(digits.classes) <= {str(i) for i in range(10)}
    with pytest.raises(ValueError, match="unknown sample"):
        load_dataset(DataSpec(source="sample:nope"))
    with pytest.raises(ValueError, match="does not exist"):
        load_dataset(DataSpec(source=str(tmp_path / "nothing")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no usable images"):
        load_dataset(DataSpec(source=str(tmp_path / "empty")))


def test_stratified_subsample_keeps_proportions() -> None:
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 10
    idx = stratified_subsample(labels, 20, random_state=0)
    picked = np.asarray(labels)[idx]
    assert len(idx) == 20 and len(set(idx.tolist())) == 20
    assert (picked == "a").sum() == 12 and (picked == "b").sum() == 6 and (picked == "c").sum() == 2
    assert stratified_subsample(labels, 20, random_state=0).tolist() == idx.tolist()


def test_the_file_limit_applies_to_what_max_images_keeps(tmp_path: Path) -> None:
    from explorer.config import Limits

    data = make_class_folders(tmp_path / "d", per_class=8)  # 3 classes x 8 images
    (data / "nested" / "deeper").mkdir(parents=True)
    (data / "nested" / "deeper" / "n.jpg").write_bytes(jpeg_bytes((1, 2, 3)))
    with pytest.raises(ValueError, match=r"over the limit of 10.*--max-images"):
        load_dataset(DataSpec(source=str(data)), limits=Limits(max_files=10), thumbnails=False)
    kept = load_dataset(DataSpec(source=str(data), max_images=10), limits=Limits(max_files=10), thumbnails=False)
    assert len(kept) == 10
    everything = load_dataset(DataSpec(source=str(data)), thumbnails=False)
    assert everything.names == sorted(everything.names) and "nested/deeper/n.jpg" in everything.names


def test_reopening_a_folder_reads_only_the_files_that_changed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from explorer.data import datasets

    data = make_class_folders(tmp_path / "data", per_class=4)
    (data / "red" / "broken.jpg").write_bytes(b"not an image")
    index = tmp_path / "reads"
    first = load_dataset(DataSpec(source=str(data)), thumbnails=False, file_checks_dir=index)
    reads: list[str] = []
    real = datasets.ImageItem.read_bytes

    def counting(self: datasets.ImageItem) -> bytes:
        reads.append(self.name)
        return real(self)

    monkeypatch.setattr(datasets.ImageItem, "read_bytes", counting)
    again = load_dataset(DataSpec(source=str(data)), thumbnails=False, file_checks_dir=index)
    assert reads == [] and again.hashes == first.hashes and again.skipped == first.skipped  # a stat each
    (data / "blue" / "blue_1.jpg").write_bytes((data / "green" / "green_0.jpg").read_bytes())  # changed content
    third = load_dataset(DataSpec(source=str(data)), thumbnails=False, file_checks_dir=index)
    assert reads == ["blue/blue_1.jpg"]
    assert ("blue/blue_1.jpg", "green/green_0.jpg") in third.duplicates or (
        "green/green_0.jpg",
        "blue/blue_1.jpg",
    ) in third.duplicates
    (index / next(index.iterdir()).name).write_text("{damaged")
    reads.clear()
    fourth = load_dataset(
        DataSpec(source=str(data)), thumbnails=False, file_checks_dir=index
    )  # a damaged index: read all
    assert len(reads) == 13 and fourth.hashes == third.hashes


def test_a_zips_files_stay_while_their_owner_lives(tmp_path: Path) -> None:
    """A zip opened by its path: close() keeps its unpacked images while the result that shows
    them lives, and they go when it is collected."""
    import gc

    from explorer.data.datasets import thumbnail_bytes

    archive = zip_folder(make_class_folders(tmp_path / "z", per_class=2), tmp_path / "z.zip", prefix="z/")
    ds = load_dataset(DataSpec(source=str(archive)), thumbnails=False)

    class Result:
        pass

    owner = Result()
    ds.keep_files_while(owner)
    ds.close()
    assert thumbnail_bytes(ds.items[0], max_pixels=10**8) is not None
    del owner
    gc.collect()
    assert not Path(ds.items[0].path).exists()


def test_one_table_recognises_every_kind_of_source(tmp_path: Path) -> None:
    """Each kind of source is one row of data/source_table.SOURCES, found by its first match, the
    same for load_dataset and the Ray listing; a row without a lister says where its images are read."""
    import io
    import tarfile

    import pandas as pd

    from explorer.config import Limits
    from explorer.data.source_table import SOURCES, Reading, list_here, recognise

    folder = make_class_folders(tmp_path / "photos", per_class=2)
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tar:
        for key, data in (("a", jpeg_bytes((200, 30, 30))), ("b", jpeg_bytes((30, 30, 200)))):
            for suffix, payload in ((".jpg", data), (".cls", b"1")):
                info = tarfile.TarInfo(key + suffix)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    files = sorted(str(p.relative_to(tmp_path)) for p in folder.rglob("*.jpg"))
    pd.DataFrame({"path": files, "label": ["x"] * len(files)}).to_csv(tmp_path / "paths.csv", index=False)
    pd.DataFrame({"path": files, "label": ["x"] * len(files)}).to_parquet(tmp_path / "paths.parquet")
    images = [{"bytes": jpeg_bytes((10 * i, 90, 90)), "path": f"{i}.jpg"} for i in range(3)]
    pd.DataFrame({"image": images, "label": ["y"] * 3}).to_parquet(tmp_path / "images.parquet")
    examples = {
        "upload": "upload:zip",
        "in-memory": "python",
        "sample": "sample:clothing",
        "webdataset": str(shard),
        "csv table of paths": str(tmp_path / "paths.csv"),
        "parquet table of paths": str(tmp_path / "paths.parquet"),
        "parquet": str(tmp_path / "images.parquet"),
        "zip": str(zip_folder(folder, tmp_path / "photos.zip")),
        "folder": str(folder),
    }
    reading = Reading(Limits())
    for name, source in examples.items():
        kind, _ = recognise(source, DataSpec(source=source), reading)
        assert kind.name == name, source
    assert {k.name for k in SOURCES} - set(examples) == {"save_to_disk"}  # tests/data/test_formats.py reads one
    for name in ("upload", "in-memory"):
        with pytest.raises(ValueError, match="upload|explorer.compare"):
            list_here(examples[name], DataSpec(source=examples[name]), reading)
    assert len(load_dataset(DataSpec(source=examples["webdataset"]))) == 2
    assert len(load_dataset(DataSpec(source=examples["parquet"]))) == 3
    with pytest.raises(ValueError, match="does not exist"):
        recognise(str(tmp_path / "nowhere"), DataSpec(source=str(tmp_path / "nowhere")), reading)
