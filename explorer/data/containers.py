"""Images kept inside container files, read where they lie: cells of parquet files (the Hugging Face
hub's layout: an image column of `{bytes, path}` or plain bytes) and of the Arrow files `datasets`'
`save_to_disk` writes; what every container's listing gives (`Listed`).

Nothing is unpacked and no image is held in memory beyond the group being read. Listing a table
reads its footer and its small columns (labels, metadata), never the image bytes; an item's bytes
are read when it is hashed, decoded or shown, from its row group, the last few groups kept (reads go
in row order, so each group is read once per pass).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Limits
from .archive import UnsafeArchiveError, is_ignored_name

LABEL_FIELDS = ("label", "labels", "class", "cls", "target")  # a label column's usual names, tried in this order
GROUPS_KEPT = 4  # table row groups kept in memory (a decode thread and a thumbnail reader may read two places)


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
        """The image's bytes.

        Raises:
            OSError: the cell cannot be read (a damaged group, a row its image column lacks, no
                image, or a file it names where that is not allowed): the image is skipped and reported.
        """
        try:
            data, name = _group_images(self.path, self.kind, self.group, self.column)[self.row]
        except (IndexError, KeyError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise OSError(
                f"row {self.row} of {Path(self.path).name} cannot be read ({str(exc).splitlines()[0][:120]})"
            ) from None
        if data is not None:
            return data
        if not name:
            raise OSError(f"row {self.row} of {Path(self.path).name} has no image")
        if not self.files_by_path:
            raise OSError(
                f"row {self.row} of {Path(self.path).name} names a file ({name}) instead of holding its bytes; "
                "here a table's images must be in it"
            )
        target = Path(name).expanduser()
        if not target.is_absolute():
            beside = Path(self.path).parent / target
            target = beside if beside.exists() else target
        with open(target, "rb") as f:
            return f.read()


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


@dataclass
class Listed:
    """A container's images before they are checked: (name, where its bytes are, label) per image,
    the further columns' names and each image's values, and what was left out with the reason."""

    images: list[tuple[str, Any, str | None]]
    columns: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] | None = None
    skipped: list[tuple[str, str]] | None = None


# ---- parquet files and save_to_disk folders

MAX_COLUMNS = 10_000  # a table's columns (Hugging Face's have a handful)


def check_parquet(path: str, limits: Limits) -> Any:
    """A parquet file's footer, read and checked against `limits` before any row is listed: its
    declared rows (at most `limits.max_files`), each row group's and the file's uncompressed size (at
    most `limits.max_total_bytes`), its columns. A few hundred bytes of footer can declare tens of
    millions of rows or gigabytes per group; nothing here reads a row.

    Returns:
        The file's `pyarrow.parquet.FileMetaData`.

    Raises:
        ValueError: not a parquet file (a damaged footer: pyarrow's thrift errors), or over a limit;
            one sentence.
    """
    import pyarrow.parquet as pq

    name = Path(path).name
    try:
        meta = pq.read_metadata(path)
        groups = [meta.row_group(g) for g in range(meta.num_row_groups)]
        sizes = [
            max(g.total_byte_size, sum(g.column(c).total_uncompressed_size for c in range(g.num_columns)))
            for g in groups
        ]
    except (OSError, ValueError, IndexError) as exc:  # pyarrow's ArrowInvalid is a ValueError, its IOError an OSError
        raise ValueError(f"{name} is not a readable parquet file ({str(exc).splitlines()[0][:120]})") from None
    if meta.num_columns > MAX_COLUMNS:
        raise ValueError(f"{name} declares {meta.num_columns:,} columns, over the limit of {MAX_COLUMNS:,}")
    rows = sum(g.num_rows for g in groups)
    if meta.num_rows < 0 or any(g.num_rows < 0 for g in groups) or rows != meta.num_rows:
        raise ValueError(f"{name} is not a readable parquet file (its row counts disagree)")
    if rows > limits.max_files:
        raise ValueError(f"{name} declares {rows:,} rows, over the limit of {limits.max_files:,} images")
    if any(size < 0 for size in sizes) or sum(sizes) > limits.max_total_bytes:
        raise ValueError(
            f"{name} declares {sum(sizes):,} bytes once decompressed, over the limit of {limits.max_total_bytes:,}"
        )
    return meta


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
    raise ValueError(
        f"no image column (a {{bytes, path}} struct or bytes); the columns are {', '.join(names)}: "
        "name it with image_column"
    )


def _label_column(names: Sequence[str], asked: str | None) -> str | None:
    if asked is not None:
        if asked not in names:
            raise ValueError(f"no label column {asked!r}; the columns are {', '.join(names)}")
        return asked
    return next((c for c in LABEL_FIELDS if c in names), None)


def list_tables(
    files: Sequence[str],
    kind: str,
    label_column: str | None = None,
    image_column: str | None = None,
    files_by_path: bool = True,
    limits: Limits | None = None,
) -> Listed:
    """The rows of parquet files (`kind` parquet) or of save_to_disk Arrow files (`arrow`), in order:
    each row's image cell, its label (a ClassLabel's name where the schema records one) and its
    other plain columns. The image bytes are not read here; a cell that names a file instead is read
    from it only with `files_by_path` (not for a stranger's table). Each file's declared rows and
    sizes are checked against `limits` (config.Limits()'s by default) before its rows are listed.

    Raises:
        ValueError: a file that is not a readable table, or over a limit: one sentence.
    """
    try:
        return _list_tables(files, kind, label_column, image_column, files_by_path, limits or Limits())
    except (OSError, IndexError, KeyError) as exc:  # pyarrow's errors past the footer: a damaged group or column
        raise ValueError(
            f"a {kind} file cannot be read: {str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}"
        ) from None
    except ValueError as exc:
        if type(exc) is ValueError:  # ours, already one sentence
            raise
        raise ValueError(f"a {kind} file cannot be read: {str(exc).splitlines()[0][:200]}") from None


def _list_tables(
    files: Sequence[str],
    kind: str,
    label_column: str | None,
    image_column: str | None,
    files_by_path: bool,
    limits: Limits,
) -> Listed:
    import pyarrow as pa

    images: list[tuple[str, Any, str | None]] = []
    declared = 0
    extra: dict[str, tuple[str, ...]] = {}
    columns: tuple[str, ...] = ()
    for path in files:
        if kind == "parquet":
            declared += check_parquet(path, limits).num_rows
        else:
            declared += sum(_arrow_layout(path)[2])
        if declared > limits.max_files:
            raise ValueError(f"these tables declare {declared:,} rows, over the limit of {limits.max_files:,} images")
        schema, groups = _table_layout(path, kind)
        features = _hf_features(schema.metadata)
        image_col = _image_column(schema, features, image_column)
        label_col = _label_column([n for n in schema.names if n != image_col], label_column)
        names = (features.get(label_col) or {}).get("names") if label_col else None
        plain = tuple(
            n
            for n in schema.names
            if n not in (image_col, label_col)
            and not pa.types.is_nested(schema.field(n).type)
            and not pa.types.is_binary(schema.field(n).type)
        )
        columns = columns or plain
        has_path = (
            pa.types.is_struct(schema.field(image_col).type)
            and schema.field(image_col).type.get_field_index("path") >= 0
        )
        for g in range(groups):
            table = (
                _read_group(path, kind, g, [*([label_col] if label_col else []), *plain])
                if (label_col or plain)
                else None
            )
            rows = table.num_rows if table is not None else _group_rows(path, kind, g)
            labels = table.column(label_col).to_pylist() if label_col else [None] * rows
            paths = _cell_paths(path, kind, g, image_col) if has_path else [None] * rows
            values = [table.column(c).to_pylist() for c in plain] if table is not None else []
            for r in range(rows):
                label = labels[r]
                if names is not None and isinstance(label, int) and 0 <= label < len(names):
                    label = names[label]
                name = f"{Path(path).name}:{len(images):06d}" + (f"-{Path(paths[r]).name}" if paths[r] else "")
                images.append(
                    (name, TableCell(path, kind, g, r, image_col, files_by_path), None if label is None else str(label))
                )
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
        schema, offsets, _ = _arrow_layout(path)
        return schema, len(offsets)
    except (OSError, ValueError) as exc:  # pyarrow's errors are both
        raise ValueError(f"{path} is not a readable {kind} file: {str(exc).splitlines()[0][:200]}") from exc


def _arrow_layout(path: str) -> tuple[Any, list[int], list[int]]:
    """arrow_index, a damaged stream said in one sentence."""
    try:
        return arrow_index(path)
    except (OSError, ValueError) as exc:
        raise ValueError(f"{Path(path).name} is not a readable Arrow file ({str(exc).splitlines()[0][:120]})") from None


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
