"""Images kept inside container files, read where they lie: members of WebDataset `.tar` shards,
cells of parquet files (the Hugging Face hub's layout: an image column of `{bytes, path}` or plain
bytes) and of the Arrow files `datasets`' `save_to_disk` writes.

Nothing is unpacked and no image is held in memory beyond the group being read. Listing a
container reads its index and its small columns (labels, metadata), never the image bytes; an
item's bytes are read when it is hashed, decoded or shown: a tar member by its offset, a table
cell from its row group, the last few groups kept (reads go in row order, so each group is read
once per pass).

Every tar member's header is checked before any is used: an absolute name or `..`, a link, a
device or a FIFO refuses the whole shard, as an unsafe zip is refused.
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
from .images import IMAGE_SUFFIXES

LABEL_FIELDS = ("label", "labels", "class", "cls", "target")  # a label column's usual names, tried in this order
GROUPS_KEPT = 4  # table row groups kept in memory (a decode thread and a thumbnail reader may read two places)


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


@dataclass(frozen=True)
class TableCell:
    """An image in a table file: a parquet row group or an Arrow record batch, a row, a column. Its
    bytes are in the cell, or (a table `datasets` wrote from image files without embedding them)
    the cell names the file: read where `files_by_path` allows it, relative to the table's folder."""

    path: str
    kind: str  # parquet | arrow
    group: int
    row: int
    column: str
    files_by_path: bool = True

    def read(self) -> bytes:
        data, name = _group_images(self.path, self.kind, self.group, self.column)[self.row]
        if data is not None:
            return data
        if not name:
            raise OSError(f"row {self.row} of {Path(self.path).name} has no image")
        if not self.files_by_path:
            raise OSError(f"row {self.row} of {Path(self.path).name} names a file ({name}) instead of holding its bytes; "
                          "here a table's images must be in it")  # fmt: skip
        target = Path(name).expanduser()
        if not target.is_absolute():
            beside = Path(self.path).parent / target
            target = beside if beside.exists() else target
        with open(target, "rb") as f:
            return f.read()


def describe(member: TarMember | TableCell | ShardSample) -> str:
    """A member as text (JSON), for a process elsewhere that reads the same files (a Ray worker)."""
    return json.dumps({"type": type(member).__name__, **member.__dict__})


def from_description(text: str) -> TarMember | TableCell | ShardSample:
    """The member `describe` wrote."""
    fields = json.loads(text)
    kinds = {"TarMember": TarMember, "TableCell": TableCell, "ShardSample": ShardSample}
    return kinds[fields.pop("type")](**fields)


@functools.lru_cache(maxsize=GROUPS_KEPT)
def _group_images(path: str, kind: str, group: int, column: str) -> list[tuple[bytes | None, str | None]]:
    """One group's images: (bytes, file name) per row, from a `{bytes, path}` struct or plain binary."""
    import pyarrow as pa

    col = _read_group(path, kind, group, [column]).column(0).combine_chunks()
    if pa.types.is_struct(col.type):
        names = col.field("path").to_pylist() if col.type.get_field_index("path") >= 0 else [None] * len(col)
        return list(zip(col.field("bytes").to_pylist(), names))
    return [(b, None) for b in col.to_pylist()]


def _read_group(path: str, kind: str, group: int, columns: Sequence[str]) -> Any:
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).read_row_group(group, columns=list(columns))
    import pyarrow as pa

    schema, offsets, _ = arrow_index(path)
    if not 0 <= group < len(offsets):
        raise OSError(f"{path} has no record batch {group}")
    with pa.memory_map(path) as source:  # mapped for this read only: the file's pages are not kept
        source.seek(offsets[group])
        batch = pa.ipc.read_record_batch(pa.ipc.read_message(source), schema)
        return pa.Table.from_batches([batch]).select(list(columns)).combine_chunks()


@functools.lru_cache(maxsize=64)
def arrow_index(path: str) -> tuple[Any, list[int], list[int]]:
    """(schema, where each record batch starts, its rows) of an Arrow stream file (save_to_disk's),
    found in one pass over its message headers: reading batch g is then one seek, not a walk of the
    stream from its start (which made listing quadratic in the batches)."""
    import pyarrow as pa

    offsets: list[int] = []
    rows: list[int] = []
    with pa.memory_map(path) as source:
        reader = pa.ipc.open_stream(source)
        at = source.tell()
        for batch in reader:
            offsets.append(at)
            rows.append(batch.num_rows)
            at = source.tell()
        return reader.schema, offsets, rows


# ---- WebDataset shards


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


@dataclass
class Listed:
    """A container's images before they are checked: (name, where its bytes are, label) per image,
    the further columns' names and each image's values, and what was left out with the reason."""

    images: list[tuple[str, Any, str | None]]
    columns: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] | None = None
    skipped: list[tuple[str, str]] | None = None


def _check_member(shard: str, m: tar_headers.Member) -> None:
    name = m.name
    if name.startswith("/") or ".." in name.split("/") or "\x00" in name:
        raise UnsafeArchiveError(f"shard refused: {Path(shard).name} has a member {name!r} with an absolute path or '..'")
    if m.islink():
        raise UnsafeArchiveError(f"shard refused: {Path(shard).name} has a link member {name!r}")
    if m.isdevice():
        raise UnsafeArchiveError(f"shard refused: {Path(shard).name} has a device or FIFO member {name!r}")


def _members(shard: str) -> list[tar_headers.Member]:
    """A shard's members, each checked (tar_headers.py reads the headers)."""
    try:
        found = tar_headers.members(shard)  # uncompressed only: a member is then read by its offset
    except tarfile.ReadError as exc:
        raise ValueError(f"{shard} is not an uncompressed tar ({exc}); WebDataset shards are plain .tar files") from exc
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


def shard_columns(images: Sequence[tuple[str, Any, str | None]], metas: Sequence[dict[str, Any]]) -> tuple[tuple[str, ...], dict[str, tuple[str, ...]]]:
    """The further columns of shards' samples (their json's plain fields) and each image's values."""
    columns = tuple(dict.fromkeys(k for meta in metas for k, v in meta.items() if not isinstance(v, (dict, list))))
    extra = {name: tuple("" if meta.get(c) is None else str(meta.get(c)) for c in columns) for (name, _, _), meta in zip(images, metas)}
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
        tars = sorted(str(p) for p in entries if p.is_file() and p.suffix.lower() == ".tar")
        return tars if tars and not any(p.is_dir() for p in entries) else None
    return None


# ---- parquet files and save_to_disk folders


def _hf_features(metadata: dict[bytes, bytes] | None) -> dict[str, Any]:
    """The `datasets` features a table's schema metadata records (its Image and ClassLabel columns)."""
    if not metadata or b"huggingface" not in metadata:
        return {}
    try:
        return json.loads(metadata[b"huggingface"]).get("info", {}).get("features", {}) or {}
    except (ValueError, AttributeError):
        return {}


def _image_column(schema: Any, features: dict[str, Any], asked: str | None) -> str:
    import pyarrow as pa

    names = list(schema.names)
    if asked is not None:
        if asked not in names:
            raise ValueError(f"no image column {asked!r}; the columns are {', '.join(names)}")
        return asked
    for name in names:
        if isinstance(features.get(name), dict) and features[name].get("_type") == "Image":
            return name
    for name in names:
        t = schema.field(name).type
        if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0:
            return name
    for name in names:
        if pa.types.is_binary(schema.field(name).type) or pa.types.is_large_binary(schema.field(name).type):
            return name
    raise ValueError(f"no image column (a {{bytes, path}} struct or bytes); the columns are {', '.join(names)}: "
                     "name it with image_column")  # fmt: skip


def _label_column(names: Sequence[str], asked: str | None) -> str | None:
    if asked is not None:
        if asked not in names:
            raise ValueError(f"no label column {asked!r}; the columns are {', '.join(names)}")
        return asked
    return next((c for c in LABEL_FIELDS if c in names), None)


def list_tables(files: Sequence[str], kind: str, label_column: str | None = None, image_column: str | None = None,
                files_by_path: bool = True) -> Listed:  # fmt: skip
    """The rows of parquet files (`kind` parquet) or of save_to_disk Arrow files (`arrow`), in order:
    each row's image cell, its label (a ClassLabel's name where the schema records one) and its
    other plain columns. The image bytes are not read here; a cell that names a file instead is read
    from it only with `files_by_path` (not for a stranger's table)."""
    import pyarrow as pa

    images: list[tuple[str, Any, str | None]] = []
    extra: dict[str, tuple[str, ...]] = {}
    columns: tuple[str, ...] = ()
    for path in files:
        schema, groups = _table_layout(path, kind)
        features = _hf_features(schema.metadata)
        image_col = _image_column(schema, features, image_column)
        label_col = _label_column([n for n in schema.names if n != image_col], label_column)
        names = (features.get(label_col) or {}).get("names") if label_col else None
        plain = tuple(n for n in schema.names if n not in (image_col, label_col)
                      and not pa.types.is_nested(schema.field(n).type) and not pa.types.is_binary(schema.field(n).type))  # fmt: skip
        columns = columns or plain
        has_path = pa.types.is_struct(schema.field(image_col).type) and schema.field(image_col).type.get_field_index("path") >= 0
        for g in range(groups):
            table = _read_group(path, kind, g, [*([label_col] if label_col else []), *plain]) if (label_col or plain) else None
            rows = table.num_rows if table is not None else _group_rows(path, kind, g)
            labels = table.column(label_col).to_pylist() if label_col else [None] * rows
            paths = _cell_paths(path, kind, g, image_col) if has_path else [None] * rows
            values = [table.column(c).to_pylist() for c in plain] if table is not None else []
            for r in range(rows):
                label = labels[r]
                if names is not None and isinstance(label, int) and 0 <= label < len(names):
                    label = names[label]
                name = f"{Path(path).name}:{len(images):06d}" + (f"-{Path(paths[r]).name}" if paths[r] else "")
                images.append((name, TableCell(path, kind, g, r, image_col, files_by_path), None if label is None else str(label)))
                extra[name] = tuple("" if v[r] is None else str(v[r]) for v in values)
    return Listed(images, columns, extra, [])


def _group_rows(path: str, kind: str, group: int) -> int:
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.row_group(group).num_rows
    return arrow_index(path)[2][group]


def _cell_paths(path: str, kind: str, group: int, image_col: str) -> list[str | None]:
    """Each row's original file name, kept beside the bytes in the image struct (the bytes not read:
    parquet reads the struct's `path` field alone; an Arrow batch is memory-mapped)."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        col = pq.ParquetFile(path).read_row_group(group, columns=[f"{image_col}.path"]).column(image_col)
        return col.combine_chunks().field("path").to_pylist()
    col = _read_group(path, kind, group, [image_col]).column(0).combine_chunks()  # the bytes stay in the file's pages
    return col.field("path").to_pylist()


def _table_layout(path: str, kind: str) -> tuple[Any, int]:
    """(schema, number of row groups or record batches) of a table file, read from its footer or stream."""
    try:
        if kind == "parquet":
            import pyarrow.parquet as pq

            f = pq.ParquetFile(path)
            return f.schema_arrow, f.metadata.num_row_groups
        schema, offsets, _ = arrow_index(path)
        return schema, len(offsets)
    except (OSError, ValueError) as exc:  # pyarrow's errors are both
        raise ValueError(f"{path} is not a readable {kind} file: {str(exc).splitlines()[0][:200]}") from exc


def saved_dataset_files(folder: Path) -> list[str] | None:
    """The Arrow files of a `save_to_disk` folder (its state.json names them), or None when the
    folder is not one."""
    state = folder / "state.json"
    if not (state.is_file() and (folder / "dataset_info.json").is_file()):
        return None
    try:
        files = [f["filename"] for f in json.loads(state.read_text()).get("_data_files", [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(f"{folder}/state.json is not a save_to_disk state: {exc}") from exc
    for f in files:
        if "/" in f or "\\" in f or f.startswith("."):
            raise UnsafeArchiveError(f"{folder}/state.json names a data file outside its folder: {f!r}")
    return [str(folder / f) for f in files]


def parquet_files(source: str) -> list[str] | None:
    """The parquet files a source names: one file, or a folder of shards (sorted), beside each other or
    under `data/` as the hub keeps them; None otherwise. (Not a walk of the whole folder: this is asked
    of every folder opened, 100,000 images included.)"""
    path = Path(source).expanduser()
    if path.is_file() and path.suffix.lower() == ".parquet":
        return [str(path)]
    if path.is_dir():
        found = [p for p in path.glob("*.parquet") if p.is_file()]
        if not found and (path / "data").is_dir():
            found = [p for p in (path / "data").rglob("*.parquet") if p.is_file()]
        return sorted(str(p) for p in found if not is_ignored_name(p.name)) or None
    return None
