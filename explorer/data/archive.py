"""Safe unpacking of uploaded zip archives: everything is checked before anything is written."""

from __future__ import annotations

import logging
import re
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ..config import Limits

log = logging.getLogger(__name__)

NESTED_ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst")
_DRIVE = re.compile(r"^[A-Za-z]:")
_CHUNK = 1 << 20


class UnsafeArchiveError(ValueError):
    """The archive was refused whole; nothing was written."""


@dataclass(frozen=True)
class ArchiveReport:
    """What an unpack did: files written and entries left out (with the reason)."""

    written: tuple[str, ...]
    ignored: tuple[tuple[str, str], ...]


def is_ignored_name(rel: str) -> bool:
    """Hidden files, macOS resource forks and `__MACOSX/` folders are not data. (On the name's
    text: a folder of 50,000 files is listed on every visit, and PurePosixPath cost 0.9 s there.)"""
    if "__MACOSX" not in rel and not rel.startswith(".") and "/." not in rel:
        return False
    return any(p == "__MACOSX" or p.startswith(".") for p in rel.split("/") if p)


def _check_entry_name(name: str) -> None:
    norm = name.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm):
        raise UnsafeArchiveError(f"archive refused: entry {name!r} has an absolute path")
    if ".." in PurePosixPath(norm).parts:
        raise UnsafeArchiveError(f"archive refused: entry {name!r} climbs out of the folder with '..'")
    if "\x00" in norm:
        raise UnsafeArchiveError(f"archive refused: entry {name!r} has a NUL byte in its name")


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def plan_zip(zf: zipfile.ZipFile, limits: Limits) -> tuple[list[zipfile.ZipInfo], list[tuple[str, str]]]:
    """Check every entry of an open zip against `limits`.

    Args:
        zf: the archive.
        limits: entry count, total size and compression-ratio bounds.

    Returns:
        The entries to write and the (name, reason) pairs left out.

    Raises:
        UnsafeArchiveError: when any entry is unsafe or a limit is exceeded.
    """
    infos = zf.infolist()
    if len(infos) > limits.max_files:
        raise UnsafeArchiveError(f"archive refused: {len(infos)} entries is over the limit of {limits.max_files}")
    keep: list[zipfile.ZipInfo] = []
    ignored: list[tuple[str, str]] = []
    total = 0
    for info in infos:
        if not info.filename:  # a central-directory record with no name (zipfile's is_dir() fails on it)
            ignored.append(("(no name)", "an entry without a name"))
            continue
        _check_entry_name(info.filename)
        if _is_symlink(info):
            raise UnsafeArchiveError(f"archive refused: entry {info.filename!r} is a symbolic link")
        if info.is_dir():
            continue
        if info.flag_bits & 0x1:
            raise UnsafeArchiveError(f"archive refused: entry {info.filename!r} is encrypted")
        name = info.filename.replace("\\", "/")
        if is_ignored_name(name):
            ignored.append((name, "hidden or system file"))
            continue
        if name.lower().endswith(NESTED_ARCHIVE_SUFFIXES):
            ignored.append((name, "nested archive: not opened"))
            continue
        ratio = info.file_size / max(info.compress_size, 1)
        if info.file_size > 1 << 20 and ratio > limits.max_ratio:
            raise UnsafeArchiveError(
                f"archive refused: entry {name!r} expands {ratio:.0f}x (limit {limits.max_ratio:.0f}x)"
            )
        if info.file_size > limits.max_file_bytes:
            ignored.append((name, f"file of {info.file_size} bytes is over the limit of {limits.max_file_bytes}"))
            continue
        total += info.file_size
        if total > limits.max_total_bytes:
            raise UnsafeArchiveError(f"archive refused: it expands to over {limits.max_total_bytes} bytes")
        keep.append(info)
    return keep, ignored


# what zipfile raises on a damaged archive: its own error, a short read, a bad deflate stream
# (zlib.error), a struct it cannot unpack, a name it cannot decode, a method it does not know
_ZIP_ERRORS = (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, struct.error, zlib.error)


def safe_extract_zip(archive: str | Path, dest: str | Path, limits: Limits) -> ArchiveReport:
    """Unpack a zip archive into `dest`, refusing it whole if any entry is unsafe.

    All checks (paths, symlinks, entry count, total size, compression ratio) run on the central
    directory before the first byte is written; while writing, each entry is also cut off at its
    declared size, so a lying header cannot grow a file past the checked total.

    Args:
        archive: path of the zip file.
        dest: folder to unpack into (created).
        limits: the bounds to enforce.

    Returns:
        An ArchiveReport.

    Raises:
        UnsafeArchiveError: the archive is unsafe, over a limit, or not a zip file.
    """
    dest = Path(dest)
    try:
        zf = zipfile.ZipFile(archive)
    except _ZIP_ERRORS as exc:
        raise UnsafeArchiveError(f"archive refused: {Path(archive).name} is not a readable zip file ({exc})") from exc
    with zf:
        keep, ignored = plan_zip(zf, limits)
        dest.mkdir(parents=True, exist_ok=True)
        root = dest.resolve()
        written: list[str] = []
        try:
            _write_entries(zf, keep, root, written, ignored)
        except UnsafeArchiveError:
            for name in written:
                (root / name).unlink(missing_ok=True)
            raise
    log.info("unpacked %d files from %s (%d left out)", len(written), archive, len(ignored))
    return ArchiveReport(written=tuple(written), ignored=tuple(ignored))


def _write_entries(
    zf: zipfile.ZipFile,
    keep: list[zipfile.ZipInfo],
    root: Path,
    written: list[str],
    ignored: list[tuple[str, str]],
) -> None:
    for info in keep:
        name = info.filename.replace("\\", "/")
        target = (root / name).resolve()
        if root not in target.parents:  # defence in depth; _check_entry_name already refused these
            raise UnsafeArchiveError(f"archive refused: entry {name!r} leaves the folder")
        remaining = info.file_size
        written.append(name)  # before writing, so a refusal mid-file removes this one too
        try:
            target.parent.mkdir(parents=True, exist_ok=True)  # fails where an earlier entry is a file of that name
            with zf.open(info) as src, open(target, "xb") as out:  # never over an earlier entry, nor into a folder
                while True:
                    chunk = src.read(min(_CHUNK, remaining + 1))
                    if not chunk:
                        break
                    remaining -= len(chunk)
                    if remaining < 0:
                        raise UnsafeArchiveError(f"archive refused: entry {name!r} is larger than it declares")
                    out.write(chunk)
        except (*_ZIP_ERRORS, RuntimeError) as exc:  # RuntimeError: an encrypted entry
            if isinstance(exc, FileExistsError) or not target.is_file():
                pass  # not ours to delete: an earlier entry's file, or a folder
            else:
                target.unlink(missing_ok=True)
            written.pop()
            ignored.append((name, f"could not be unpacked: {exc}"))
