"""One image of a dataset: its display name and where its bytes are."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from .containers import TableCell
from .shards import ShardSample, TarMember


@dataclass(frozen=True)
class ImageItem:
    """One image: a display name (its path relative to the dataset root, or its place in a container)
    and where its bytes are: a file, bytes in memory, or a member of a container file
    (containers.py: a tar member, a parquet or Arrow cell), read when needed."""

    name: str
    path: str | os.PathLike | None = None  # a folder's 50,000 file paths are made on every visit: str, not Path
    data: bytes | None = None
    member: Any = None  # shards.TarMember | containers.TableCell | shards.ShardSample: `read()` gives the bytes

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.member is not None:
            return self.member.read()
        if self.path is None:
            raise ValueError(f"image {self.name!r} has neither bytes nor a path")
        with open(self.path, "rb") as f:
            return f.read()


@dataclass(frozen=True)
class ReadableFiles:
    """The files that hold a dataset's images, as a reader that takes whole files reads them (Ray
    Data's `read_webdataset`, `read_parquet`, `read_binary_files`): which reader, which files, and
    the column (a table's image column) or the label field (a shard's json) where one was named.
    Rows come back by content: each image is matched to its dataset row by its hash."""

    kind: str  # webdataset | parquet | binary
    files: tuple[str, ...]
    column: str | None = None


def describe(member: TarMember | TableCell | ShardSample) -> str:
    """A container's member as text (JSON), for a process elsewhere that reads the same files (a Ray worker)."""
    return json.dumps({"type": type(member).__name__, **member.__dict__})


def from_description(text: str) -> TarMember | TableCell | ShardSample:
    """The member `describe` wrote."""
    fields = json.loads(text)
    kinds = {"TarMember": TarMember, "TableCell": TableCell, "ShardSample": ShardSample}
    return kinds[fields.pop("type")](**fields)
