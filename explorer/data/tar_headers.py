"""The members of an uncompressed tar (a WebDataset shard) from its headers alone: name, type, where
the data starts and its size, one 512-byte read per member.

Python's `tarfile` builds a full `TarInfo` per header (every field parsed, pax records decoded into
objects): listing 100,000 samples (200,000 members, a pax header each from webdataset's writer)
took 8 s more than a folder of the same images. This reads only the fields a shard's listing needs
(POSIX ustar, GNU long names, pax `path`/`size`/`linkpath` records). Anything else (a bad checksum,
a base-256 size, a sparse or unknown member, a global pax header) hands the whole shard to `tarfile`,
which stays the reference: the same members either way (tests/data/test_tar_headers.py).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

BLOCK = 512
_ZERO = bytes(BLOCK)
_FILE, _DIR, _LINKS, _DEVICES, _FIFO = (b"0", b"\0", b"7"), b"5", (b"1", b"2"), (b"3", b"4"), b"6"


@dataclass(frozen=True, slots=True)
class Member:
    """A tar member: its name, what it is (file, dir, link, device, fifo), where its data starts, its size."""

    name: str
    kind: str
    offset_data: int
    size: int

    def isfile(self) -> bool:
        return self.kind == "file"

    def islink(self) -> bool:
        return self.kind == "link"

    def isdevice(self) -> bool:
        return self.kind in ("device", "fifo")


class _Unusual(Exception):
    """A header this reader leaves to tarfile."""


def members(path: str) -> list[Member]:
    """Every member of the uncompressed tar at `path`, in order.

    Raises:
        tarfile.ReadError: not an uncompressed tar (or a damaged one), as tarfile says.
    """
    try:
        return list(_scan(path))
    except _Unusual:
        return _by_tarfile(path)


def _by_tarfile(path: str) -> list[Member]:
    with tarfile.open(path, "r:") as tf:
        return [Member(m.name, kind, m.offset_data, m.size if kind == "file" else 0)
                for m in tf.getmembers() for kind in (_kind_of(m),)]  # fmt: skip


def _kind_of(m: tarfile.TarInfo) -> str:
    if m.isfile():
        return "file"
    if m.isdir():
        return "dir"
    if m.issym() or m.islnk():
        return "link"
    if m.isfifo():
        return "fifo"
    return "device" if m.isdev() else "other"


def _octal(field: bytes) -> int:
    if field[:1] and field[0] & 0x80:  # base-256: tarfile's
        raise _Unusual
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise _Unusual from None


def _pax(data: bytes) -> dict[str, str]:
    """A pax header's `LENGTH key=value\\n` records."""
    out, at = {}, 0
    while at < len(data) and data[at:at + 1] not in (b"", b"\0"):
        space = data.index(b" ", at)
        length = int(data[at:space])
        key, _, value = data[space + 1 : at + length - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        at += length
    return out


def _scan(path: str) -> Iterator[Member]:
    with open(path, "rb") as f:
        end = os.fstat(f.fileno()).st_size
        pos, name, size = 0, None, None  # name, size: a pax or GNU header's, for the member after it
        while True:
            if pos > end:
                raise _Unusual  # a member's data runs past the end: tarfile says so
            f.seek(pos)
            head = f.read(BLOCK)
            if not head and pos:  # the end without its zero blocks: tarfile stops there too
                return
            if len(head) < BLOCK or pos == 0 and head == _ZERO:
                raise _Unusual  # tarfile says what is wrong
            if head == _ZERO:
                return
            if _octal(head[148:156]) != sum(head[:148]) + 256 + sum(head[156:]):
                raise _Unusual  # tarfile decides: a signed checksum, or not a tar
            kind, own = head[156:157], _octal(head[124:136])
            data = pos + BLOCK
            if kind in (b"x", b"L", b"K"):
                f.seek(data)
                extra = f.read(own)
                if len(extra) < own:
                    raise _Unusual
                if kind == b"x":
                    try:
                        records = _pax(extra)
                    except ValueError:
                        raise _Unusual from None
                    if any(k.startswith("GNU.sparse") for k in records):
                        raise _Unusual
                    name = records.get("path", name)
                    size = int(records["size"]) if "size" in records else size
                elif kind == b"L":
                    name = _text(extra)
                pos = data + -(-own // BLOCK) * BLOCK
                continue
            plain = _text(head[:100])
            if kind == b"\0" and plain.endswith("/"):
                kind = _DIR  # the old V7 way of writing a directory
            prefix = _text(head[345:500])
            if name is None:
                name = prefix + "/" + plain if prefix else plain
            if kind in _FILE:
                what, size = "file", own if size is None else size
            elif kind == _DIR:
                what, name = "dir", name.rstrip("/")
            elif kind in _LINKS:
                what = "link"
            elif kind in _DEVICES:
                what = "device"
            elif kind == _FIFO:
                what = "fifo"
            else:
                raise _Unusual  # sparse, multi-volume, a global pax header, unknown: tarfile's
            size = size if what == "file" else 0  # tarfile skips data after regular files only
            yield Member(name, what, data, size)
            pos = data + -(-size // BLOCK) * BLOCK
            name, size = None, None


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
