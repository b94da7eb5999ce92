"""WebDataset shards (uncompressed `.tar` files of `key.ext` members): listed from their headers,
every member checked first (an absolute name or `..`, a link, a device or a FIFO refuses the whole
shard, as an unsafe zip is refused), each sample's image read by its offset, its label from `.cls`,
`.txt` or a `.json` field. Named by one `.tar`, a folder of them, or a brace pattern.
"""

from __future__ import annotations

import functools
import json
import os
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import tar_headers
from .archive import UnsafeArchiveError, is_ignored_name
from .containers import LABEL_FIELDS, Listed
from .images import IMAGE_SUFFIXES


@dataclass(frozen=True)
class TarMember:
    """An image's bytes inside an uncompressed tar: where they start and how many there are."""

    path: str
    offset: int
    size: int

    def read(self) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read(self.size)
        if len(data) != self.size:
            raise OSError(f"{self.path} ends inside a member ({len(data)} of {self.size} bytes)")
        return data


def expand_braces(pattern: str) -> list[str]:
    """`shards/train-{000..009}.tar` -> the ten names (WebDataset's brace notation; `{a,b}` too)."""
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    end = pattern.find("}", start)
    if end < 0:
        return [pattern]
    inner, head, tail = pattern[start + 1 : end], pattern[:start], pattern[end + 1 :]
    if ".." in inner:
        lo, hi = inner.split("..", 1)
        if not (lo.isdigit() and hi.isdigit()):
            raise ValueError(f"{pattern!r}: a range in braces is two numbers, as {{000..009}}")
        values = [str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1)]
    else:
        values = inner.split(",")
    return [name for v in values for name in expand_braces(head + v + tail)]


def _check_member(shard: str, m: tar_headers.Member) -> None:
    name = m.name
    if name.startswith("/") or ".." in name.split("/") or "\x00" in name:
        raise UnsafeArchiveError(
            f"shard refused: {Path(shard).name} has a member {name!r} with an absolute path or '..'"
        )
    if m.islink():
        raise UnsafeArchiveError(f"shard refused: {Path(shard).name} has a link member {name!r}")
    if m.isdevice():
        raise UnsafeArchiveError(f"shard refused: {Path(shard).name} has a device or FIFO member {name!r}")


def _members(shard: str) -> list[tar_headers.Member]:
    """A shard's members, each checked (tar_headers.py reads the headers)."""
    try:
        found = tar_headers.members(shard)  # uncompressed only: a member is then read by its offset
    except tarfile.ReadError as exc:
        raise ValueError(
            f"{Path(shard).name} is not an uncompressed tar ({exc}); WebDataset shards are plain .tar files"
        ) from exc
    for m in found:
        _check_member(shard, m)
    return found


def _key_and_ext(name: str) -> tuple[str, str]:
    """WebDataset's sample key (the path up to the first dot of the file name) and the extension."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), ext.lower()


def list_shards(shards: Sequence[str], label_field: str | None = None) -> Listed:
    """The samples of WebDataset shards: per key, its image member and its label from `.cls`,
    `.txt`, or a `.json` field (`label_field`, else the first of LABEL_FIELDS there); the json's other
    scalar fields are the further columns."""
    images: list[tuple[str, Any, str | None]] = []
    metas: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for shard in shards:
        samples: dict[str, dict[str, tar_headers.Member]] = {}
        for m in _members(shard):
            if not m.isfile() or is_ignored_name(m.name):
                continue
            key, ext = _key_and_ext(m.name)
            samples.setdefault(key, {})[ext] = m
        with open(shard, "rb") as f:

            def small(m: tar_headers.Member) -> str:
                f.seek(m.offset_data)
                return f.read(min(m.size, SMALL_MEMBER_BYTES)).decode("utf-8", errors="replace").strip()

            for key, parts in samples.items():
                where = f"{Path(shard).name}:{key}"
                sample = read_sample(parts, small, label_field)
                skipped += [(where, why) for why in sample.problems]
                if sample.image is None:
                    continue
                m = parts[sample.image]
                images.append((f"{where}.{sample.image}", TarMember(shard, m.offset_data, m.size), sample.label))
                metas.append(sample.meta)
    return Listed(images, *shard_columns(images, metas), skipped)


SMALL_MEMBER_BYTES = 1 << 20  # the most of a .cls, .txt or .json member read for a label or metadata


@dataclass
class Sample:
    """A WebDataset sample read: its image member's extension (None: it has none), its label, its
    json's other fields, and what was wrong with it."""

    image: str | None
    label: str | None
    meta: dict[str, Any]
    problems: list[str]


def read_sample(parts: Mapping[str, Any], small: Callable[[Any], str], label_field: str | None) -> Sample:
    """One sample's image member and label, from its members by extension (`parts`: extension ->
    whatever `small` reads as text): the label from `.cls`, `.txt`, or a `.json` field (`label_field`,
    else the first of LABEL_FIELDS there). Used where the shard is listed here and on Ray's workers."""
    image = next((e for e in parts if "." + e.rsplit(".", 1)[-1] in IMAGE_SUFFIXES), None)
    if image is None:
        return Sample(None, None, {}, [f"no image among {', '.join(sorted(parts))}"])
    meta: dict[str, Any] = {}
    problems = []
    if "json" in parts:
        try:
            got = json.loads(small(parts["json"]))
            meta = got if isinstance(got, dict) else {}
        except json.JSONDecodeError:
            problems.append("its .json is not valid JSON (its fields are left out)")
    label = None
    if label_field is not None:
        label = meta.pop(label_field, None)
    elif "cls" in parts:
        label = small(parts["cls"])
    elif "txt" in parts:
        label = small(parts["txt"])
    else:
        field = next((k for k in LABEL_FIELDS if k in meta), None)
        label = meta.pop(field) if field is not None else None
    return Sample(image, None if label is None else str(label), meta, problems)


def shard_columns(
    images: Sequence[tuple[str, Any, str | None]], metas: Sequence[dict[str, Any]]
) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """The further columns of shards' samples (their json's plain fields) and each image's values."""
    columns = tuple(dict.fromkeys(k for meta in metas for k, v in meta.items() if not isinstance(v, (dict, list))))
    extra = {
        name: tuple("" if meta.get(c) is None else str(meta.get(c)) for c in columns)
        for (name, _, _), meta in zip(images, metas)
    }
    return columns, extra


@dataclass(frozen=True)
class ShardSample:
    """An image member of a shard known by its name (as Ray's reader gives it), its offset found when
    it is first read here (the shard's headers listed once, and checked as a listed shard's are)."""

    path: str
    name: str

    def read(self) -> bytes:
        where = shard_index(self.path).get(self.name)
        if where is None:
            raise OSError(f"{Path(self.path).name} has no member {self.name!r}")
        return TarMember(self.path, *where).read()


@functools.lru_cache(maxsize=8)
def shard_index(shard: str) -> dict[str, tuple[int, int]]:
    """(offset, size) of each regular member of a shard, by name."""
    return {m.name: (m.offset_data, m.size) for m in _members(shard) if m.isfile()}


def check_shard(shard: str) -> str:
    """Why a shard is refused ('' when it is not): the checks every listed shard gets."""
    try:
        for _ in _members(shard):
            pass
    except (UnsafeArchiveError, ValueError) as exc:
        return str(exc)
    return ""


def shard_files(source: str) -> list[str] | None:
    """The shards a source names: one `.tar`, a brace pattern, or a folder holding `.tar` files
    (and nothing that is a dataset of another kind); None when it names none."""
    if "{" in source:
        names = expand_braces(source)
        missing = [n for n in names if not os.path.isfile(os.path.expanduser(n))]
        if missing:
            raise ValueError(f"{source!r} names {len(names)} shards; {missing[0]!r} does not exist")
        return [os.path.expanduser(n) for n in names]
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() == ".tar":
        return [str(path)]
    if path.is_dir():  # a folder of shards: .tar files side by side, no subfolders
        entries = [p for p in path.iterdir() if not p.name.startswith(".")]
        # a stat for .tar names only: this is asked of every folder opened, 100,000 images included
        tars = sorted(str(p) for p in entries if p.suffix.lower() == ".tar" and p.is_file())
        return tars if tars and not any(p.is_dir() for p in entries) else None
    return None
