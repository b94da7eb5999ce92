"""tar_headers.py lists the members Python's tarfile lists (names, types, data offsets, sizes) for
every layout a WebDataset shard is written in: ustar with a prefix, GNU long names, pax records
(webdataset's writer), links, directories, devices; and hands what it does not read to tarfile."""

from __future__ import annotations

import gzip
import io
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from explorer.data import tar_headers
from explorer.data.tar_headers import Member

from .hostile import archives, checksum

LONG = "deep/" * 30 + "name.jpg"  # over 100 characters: a prefix, a GNU long name or a pax path


def _by_tarfile(path: Path) -> list[Member]:
    return tar_headers._by_tarfile(str(path))


def _write(path: Path, fmt: int, entries: list[tuple[str, bytes | None, bytes]]) -> Path:
    with tarfile.open(path, "w", format=fmt) as tf:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 1_700_000_000.5  # a float: pax writes a record for it
            if kind is None:
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
            else:
                info.type = kind
                if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                    info.linkname = "a.jpg"
                tf.addfile(info)
    return path


ENTRIES = [("a.jpg", None, b"x" * 700), ("a.cls", None, b"3"), ("empty.txt", None, b""), (LONG, None, b"y" * 1025),
           ("dir", tarfile.DIRTYPE, b""), ("dir/ü-ñame.png", None, b"z" * 10), ("s.jpg", tarfile.SYMTYPE, b""),
           ("h.jpg", tarfile.LNKTYPE, b""), ("f", tarfile.FIFOTYPE, b""), ("c", tarfile.CHRTYPE, b""), ("last.json", None, b"{}")]  # fmt: skip


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_every_format_lists_as_tarfile_does(tmp_path: Path, fmt: int) -> None:
    entries = ENTRIES if fmt != tarfile.USTAR_FORMAT else [e for e in ENTRIES if "ü" not in e[0]]
    path = _write(tmp_path / "s.tar", fmt, entries)
    got = list(tar_headers._scan(str(path)))  # the fast reader itself, not its fallback
    assert got == _by_tarfile(path)
    assert [m.name for m in got if m.isfile()][:4] == ["a.jpg", "a.cls", "empty.txt", LONG]
    with open(path, "rb") as f:
        f.seek(got[3].offset_data)
        assert f.read(got[3].size) == b"y" * 1025


def test_webdatasets_own_writer(tmp_path: Path) -> None:
    wds = pytest.importorskip("webdataset")
    with wds.TarWriter(str(tmp_path / "w.tar")) as sink:
        for i in range(5):
            sink.write({"__key__": f"k{i}", "jpg": b"j" * (100 * i), "json": {"label": i}})
    assert list(tar_headers._scan(str(tmp_path / "w.tar"))) == _by_tarfile(tmp_path / "w.tar")


def test_what_it_does_not_read_is_tarfiles(tmp_path: Path) -> None:
    path = _write(tmp_path / "s.tar", tarfile.PAX_FORMAT, ENTRIES[:2])
    raw = bytearray(path.read_bytes())
    raw[148:156] = b"0000000\0"  # a wrong checksum
    (tmp_path / "bad.tar").write_bytes(bytes(raw))
    with pytest.raises(tarfile.ReadError):
        tar_headers.members(str(tmp_path / "bad.tar"))
    (tmp_path / "s.tar.gz").write_bytes(gzip.compress(path.read_bytes()))
    with pytest.raises(tarfile.ReadError):
        tar_headers.members(str(tmp_path / "s.tar.gz"))
    (tmp_path / "empty.tar").write_bytes(b"")
    with pytest.raises(tarfile.ReadError):
        tar_headers.members(str(tmp_path / "empty.tar"))
    raw = path.read_bytes()
    for cut in (600, 2000, 2660, len(raw) - 1024):  # in a pax record, in a member's data, in a header, no zero blocks
        (tmp_path / "cut.tar").write_bytes(raw[:cut])
        assert _outcome(tar_headers.members, tmp_path / "cut.tar") == _outcome(
            tar_headers._by_tarfile, tmp_path / "cut.tar"
        )


def _outcome(lister: object, path: Path) -> object:
    try:
        return lister(str(path))  # type: ignore[operator]
    except tarfile.ReadError as exc:
        return str(exc)


# ---- hostile archives: the reader lists what tarfile lists, or refuses in one sentence, and never hangs ----


@settings(max_examples=300, deadline=2000, suppress_health_check=[HealthCheck.too_slow])
@given(archives())
def test_hostile_archives_list_as_tarfile_or_refuse(tmp_path_factory: pytest.TempPathFactory, raw: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "s.tar"
    path.write_bytes(raw)
    try:
        got = tar_headers.members(str(path))
    except tar_headers.MalformedTar as exc:
        assert str(exc) and "\n" not in str(exc)
        return
    except tarfile.ReadError:
        return  # tarfile's own verdict on a damaged end
    assert got == _by_tarfile(path)  # what it lists, tarfile lists too


@pytest.mark.parametrize("record", [b"0 path=x\n", b"1 ", b"5 path=abcdef\n", b"99 path=a\n", b"7 nokey\n"])
def test_pax_records_that_loop_or_overrun_are_refused(tmp_path: Path, record: bytes) -> None:
    head = bytearray(512)
    head[:9] = b"PaxHeader"
    head[100:108] = b"0000644\0"
    head[124:136] = b"%011o\0" % len(record)
    head[136:148] = b"00000000000\0"
    head[156:157] = b"x"
    head[257:263] = b"ustar\0"
    checksum(head)
    member = bytearray(512)
    member[:5] = b"a.jpg"
    member[124:136] = b"00000000000\0"
    member[156:157] = b"0"
    member[257:263] = b"ustar\0"
    checksum(member)
    (tmp_path / "s.tar").write_bytes(bytes(head) + record.ljust(512, b"\0") + bytes(member) + bytes(1024))
    with pytest.raises(tar_headers.MalformedTar, match="pax"):
        tar_headers.members(str(tmp_path / "s.tar"))
