"""The members of an uncompressed tar (a WebDataset shard) from its headers alone: name, type, where
the data starts and its size, one 512-byte read per member.

It reads only the fields a shard's listing needs (POSIX ustar, GNU long names, pax `path`/`size`
records, global pax headers), which makes listing far cheaper than `tarfile`'s full `TarInfo`s
(docs/benchmarks.md). A shard may come from a stranger, so every extended header is checked: a pax
record's length must cover its own digits, key, '=' and newline and end inside its header, an
extended header holds at most 1 MiB, no size is negative, sparse members are refused; a refusal
raises `MalformedTar` in one sentence. Only a damaged end (a truncated file, a header whose
checksum or numbers are not a tar's) goes to `tarfile`, which reads no header this reader has not
checked (tests/data/test_tar_headers.py fuzzes both with hypothesis).
"""

from __future__ import annotations

import os
import re
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
    """A damaged end of the archive (truncated, a bad checksum): tarfile says what is wrong."""


class MalformedTar(tarfile.ReadError):
    """A header no honest writer makes: refused in one sentence, never handed to another reader."""


MAX_EXTENDED = 1 << 20  # the most bytes one pax or GNU long-name header may hold (writers use a few hundred)
_PAX_RECORD = re.compile(rb"([0-9]{1,20}) ")  # a record's decimal length, then one space


def members(path: str) -> list[Member]:
    """Every member of the uncompressed tar at `path`, in order.

    Every extended header (pax, GNU long names) is checked here before anything else reads it, so
    the archive reaches `tarfile` only for a damaged end (a truncated file, a bad checksum), where
    tarfile reads no further header than this reader did.

    Raises:
        tarfile.ReadError: not an uncompressed tar (or a damaged one), as tarfile says.
        MalformedTar (a ReadError): a header no writer makes (a pax record whose length is zero or
            runs past its header, a huge extended header, a negative size, a sparse member).
    """
    try:
        return list(_scan(path))
    except _Unusual:
        pass
    try:
        return _by_tarfile(path)
    except (OSError, ValueError, OverflowError, EOFError) as exc:  # tarfile's own failures on a damaged header
        raise tarfile.ReadError(f"a damaged header ({exc})") from None


def _by_tarfile(path: str) -> list[Member]:
    with tarfile.open(path, "r:") as tf:
        return [
            Member(m.name, kind, m.offset_data, m.size if kind == "file" else 0)
            for m in tf.getmembers()
            for kind in (_kind_of(m),)
        ]


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


def _number(field: bytes) -> int:
    """A header's number field: octal text, or base-256 (a leading 0x80 or 0xff byte), as tarfile reads it."""
    if field[:1] in (b"\x80", b"\xff"):
        n = int.from_bytes(field[1:], "big")
        return n - 256 ** (len(field) - 1) if field[:1] == b"\xff" else n
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise _Unusual from None  # tarfile calls the header invalid


def _octal_field(field: bytes) -> bool:
    """Whether tarfile reads a number field: base-256, or octal digits up to a NUL, spaces around."""
    return field[:1] in (b"\x80", b"\xff") or not field.split(b"\0", 1)[0].strip(b" ").translate(None, b"01234567")


def _pax(data: bytes) -> dict[str, str]:
    """A pax header's `LENGTH key=value\\n` records, each checked: a length of at least its own
    digits, a space, a key, '=' and the newline that must end it, inside the header.

    Raises:
        MalformedTar: a record that breaks any of these.
    """
    out, at = {}, 0
    while at < len(data) and data[at] != 0:
        head = _PAX_RECORD.match(data, at)
        if head is None:
            raise MalformedTar(f"a pax header holds a malformed record at byte {at}")
        length = int(head.group(1))
        if length == 0:  # read as written, it never moves on
            raise MalformedTar(f"a pax record at byte {at} declares a length of 0")
        end = at + length
        if end > len(data) or end <= head.end() + 1 or data[end - 1] != 0x0A:
            raise MalformedTar(f"a pax record at byte {at} declares {length} bytes, which do not end in its newline")
        key, eq, value = data[head.end() : end - 1].partition(b"=")
        if not eq or not key:
            raise MalformedTar(f"a pax record at byte {at} has no key=value")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        at = end
    return out


def _pax_size(value: str) -> int:
    try:
        size = int(value)  # tarfile's reading: what int() takes, else 0
    except ValueError:
        return 0
    if size < 0:
        raise MalformedTar(f"a pax record declares a negative size ({size})")
    return size


_WIDTHS = {
    24: ((0, 8), (8, 8), (16, 8)),
    12: ((0, 12),),
    16: ((0, 8), (8, 8)),
}  # the fields in each block checked together
_EXTENDED = (b"x", b"g", b"X", b"L", b"K")


def _scan(path: str) -> Iterator[Member]:
    with open(path, "rb") as f:
        end = os.fstat(f.fileno()).st_size
        pos, name, size = 0, None, None  # name, size: a pax or GNU header's, for the member after it
        global_records: dict[str, str] = {}
        good_fields: set[bytes] = (
            set()
        )  # number fields already read as octal (the same mode, uid, mtime in most headers)
        after_extended = False
        while True:
            if pos > end:
                raise _Unusual  # a member's data runs past the end: tarfile says so, reading no further header
            f.seek(pos)
            head = f.read(BLOCK)
            if not head and pos:  # the end without its zero blocks: tarfile stops there too
                if after_extended:
                    raise _Unusual
                return
            if len(head) < BLOCK or pos == 0 and head == _ZERO:
                raise _Unusual  # tarfile says what is wrong
            if head == _ZERO:
                if after_extended:
                    raise _Unusual
                return
            stored = _number(head[148:156])
            if stored != sum(head) - sum(head[148:156]) + 256 and stored != sum(_signed(head[:148])) + 256 + sum(
                _signed(head[156:])
            ):
                raise _Unusual  # not a header: tarfile stops here or refuses; it reads no further
            # tarfile reads every number field: one it cannot read makes the header invalid. mode, uid
            # and gid, mtime, and the device numbers are the same in most headers of a shard: checked
            # once per value; the size, which differs, every time
            for block in (head[100:124], head[136:148], head[329:345], None):
                if block is None:
                    if not _octal_field(head[124:136]):
                        raise MalformedTar(f"the header at byte {pos} has a size that is not octal digits")
                elif block not in good_fields:
                    if not all(_octal_field(block[i : i + w]) for i, w in _WIDTHS[len(block)]):
                        raise MalformedTar(f"the header at byte {pos} has a number field that is not octal digits")
                    if len(good_fields) > 4096:  # a stranger's headers may all differ: a few values are remembered
                        good_fields.clear()
                    good_fields.add(block)
            kind, own = head[156:157], _number(head[124:136])
            if own < 0:
                raise MalformedTar(f"the header at byte {pos} declares a negative size ({own})")
            data = pos + BLOCK
            if kind in _EXTENDED:
                if own > MAX_EXTENDED:
                    raise MalformedTar(
                        f"the extended header at byte {pos} declares {own} bytes, over the "
                        f"{MAX_EXTENDED} this reader takes"
                    )
                f.seek(data)
                extra = f.read(-(-own // BLOCK) * BLOCK)  # whole blocks, as tarfile reads them (its padding included)
                if len(extra) < own:
                    raise _Unusual
                after_extended = True  # a member's header must follow
                if kind in (b"x", b"X", b"g"):
                    records = _pax(extra)
                    if any(k.startswith("GNU.sparse") for k in records):
                        raise MalformedTar(f"{path} has a sparse member, which a shard does not use")
                    if kind == b"g":
                        global_records.update(records)
                    else:
                        # an earlier extended header wraps this one: its name and size win (tarfile's order)
                        if name is None and "path" in records:
                            name = records["path"].rstrip("/")
                        if size is None and "size" in records:
                            size = _pax_size(records["size"])
                elif kind == b"L" and name is None:
                    name = _text(extra)
                pos = data + -(-own // BLOCK) * BLOCK
                continue
            after_extended = False
            plain = _text(head[:100])
            if kind == b"\0" and plain.endswith("/"):
                kind = _DIR  # the old V7 way of writing a directory
            prefix = _text(head[345:500])
            if name is None and "path" in global_records:
                name = global_records["path"].rstrip("/")
            if name is None:
                name = prefix + "/" + plain if prefix else plain
            if size is None and "size" in global_records:
                size = _pax_size(global_records["size"])
            size = own if size is None else size
            if kind in _FILE:
                what = "file"
            elif kind == _DIR:
                what, name = "dir", name.rstrip("/")
            elif kind in _LINKS:
                what = "link"
            elif kind in _DEVICES:
                what = "device"
            elif kind == _FIFO:
                what = "fifo"
            elif kind == b"S":
                raise MalformedTar(f"{path} has a sparse member, which a shard does not use")
            else:  # multi-volume, a volume label, unknown: tarfile skips its data as a file's
                yield Member(name, "other", data, 0)
                pos = data + -(-size // BLOCK) * BLOCK
                name, size = None, None
                continue
            yield Member(name, what, data, size if what == "file" else 0)
            if what == "file":  # tarfile skips data after regular files only
                pos = data + -(-size // BLOCK) * BLOCK
            else:
                pos = data
            name, size = None, None


def _signed(raw: bytes) -> list[int]:
    return [b - 256 if b > 127 else b for b in raw]


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
