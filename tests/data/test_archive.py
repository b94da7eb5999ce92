"""Unsafe archives are refused whole and write nothing; safe ones unpack with junk left out."""

from __future__ import annotations

import stat
import tempfile
import zipfile
from pathlib import Path

import pytest

from explorer.config import DataSpec, Limits
from explorer.data.archive import UnsafeArchiveError, safe_extract_zip
from explorer.data.datasets import load_dataset

from ..conftest import jpeg_bytes


def _zip(path: Path, entries: dict[str, bytes], symlink: str | None = None) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(symlink)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return path


GOOD = {"cats/a.jpg": jpeg_bytes((200, 10, 10)), "dogs/b.jpg": jpeg_bytes((10, 10, 200))}


@pytest.mark.parametrize(
    "bad_name",
    ["../evil.jpg", "cats/../../evil.jpg", "/abs/evil.jpg", "C:/evil.jpg", "c:\\evil.jpg", "..\\evil.jpg"],
)
def test_path_escapes_refuse_whole_archive(tmp_path: Path, bad_name: str) -> None:
    archive = _zip(tmp_path / "a.zip", {**GOOD, bad_name: b"x"})
    dest = tmp_path / "out"
    with pytest.raises(UnsafeArchiveError, match="refused"):
        safe_extract_zip(archive, dest, Limits())
    assert not dest.exists()
    assert not (tmp_path / "evil.jpg").exists()


def test_symlink_refuses_archive(tmp_path: Path) -> None:
    archive = _zip(tmp_path / "a.zip", GOOD, symlink="cats/link.jpg")
    with pytest.raises(UnsafeArchiveError, match="symbolic link"):
        safe_extract_zip(archive, tmp_path / "out", Limits())
    assert not (tmp_path / "out").exists()


def test_limits_checked_before_writing(tmp_path: Path) -> None:
    many = {f"c/{i}.jpg": b"x" for i in range(30)}
    with pytest.raises(UnsafeArchiveError, match="entries"):
        safe_extract_zip(_zip(tmp_path / "many.zip", many), tmp_path / "o1", Limits(max_files=10))
    big = {"c/a.bin.jpg": b"\0" * 3_000_000}
    with pytest.raises(UnsafeArchiveError, match="expands"):  # 3 MB of zeros deflates ~1000x
        safe_extract_zip(_zip(tmp_path / "bomb.zip", big), tmp_path / "o2", Limits())
    with pytest.raises(UnsafeArchiveError, match="expands to over"):
        safe_extract_zip(_zip(tmp_path / "total.zip", GOOD), tmp_path / "o3", Limits(max_total_bytes=100))
    assert not any((tmp_path / d).exists() for d in ("o1", "o2", "o3"))


def test_not_a_zip(tmp_path: Path) -> None:
    p = tmp_path / "fake.zip"
    p.write_bytes(b"this is not a zip")
    with pytest.raises(UnsafeArchiveError, match="not a readable zip"):
        safe_extract_zip(p, tmp_path / "out", Limits())


def test_junk_and_nested_archives_left_out(tmp_path: Path) -> None:
    entries = {
        **GOOD,
        "__MACOSX/cats/._a.jpg": b"junk",
        "cats/._a.jpg": b"junk",
        ".hidden/x.jpg": b"x",
        "cats/inner.zip": b"PK..",
        "cats/.DS_Store": b"x",
    }
    report = safe_extract_zip(_zip(tmp_path / "a.zip", entries), tmp_path / "out", Limits())
    assert sorted(report.written) == ["cats/a.jpg", "dogs/b.jpg"]
    reasons = dict(report.ignored)
    assert reasons["cats/inner.zip"].startswith("nested archive")
    assert not (tmp_path / "out" / "cats" / "inner.zip").exists()


def test_unsafe_zip_dataset_writes_nothing_anywhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "zips").mkdir()
    archive = _zip(tmp_path / "zips" / "a.zip", {**GOOD, "../../escape.jpg": b"x"})
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # where load_dataset unpacks: this test's own temp folder
    with pytest.raises(ValueError, match="refused"):
        load_dataset(DataSpec(source=str(archive)))
    assert list(temp.iterdir()) == []  # the unpacking folder is gone again
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == ["temp", "zips", "zips/a.zip"]


def test_an_entry_without_a_name_is_left_out_not_raised(tmp_path: Path) -> None:
    """Found by bench/fuzz_readers.py: zipfile's is_dir() raised IndexError on an empty name."""
    from explorer.config import Limits
    from explorer.data.archive import safe_extract_zip

    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("cls/a.jpg", b"x")
        zf.writestr(zipfile.ZipInfo(""), b"y")
    report = safe_extract_zip(str(path), tmp_path / "out", Limits())
    assert report.written == ("cls/a.jpg",) and ("(no name)", "an entry without a name") in report.ignored
