"""The one table of data sources: how each kind of source is recognised, listed here and listed on Ray.

`load_dataset` (datasets.py) and the Ray listing (cluster_listing.py) both read `SOURCES`, first
match first, so a source is recognised the same way wherever it is read. An entry's `match` looks
at the source's text (and the file system) and returns what its lister needs, or None; its
`list_here` lists the images in this process; `on_ray` says how a Ray cluster lists it.
"""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DataSpec, Limits
from . import containers, path_tables
from .archive import safe_extract_zip
from .images import IMAGE_SUFFIXES
from .items import ImageItem, ReadableFiles
from .listing import Skipped, candidates
from .shards import list_shards, shard_files

SAMPLES_DIR = Path(__file__).parents[1] / "samples"
SAMPLES = ("clothing", "digits")
IN_MEMORY = "python"  # a request's data when its images are given as Python objects beside it

# how a Ray cluster lists a kind of source (cluster_listing.py)
RAY_WEBDATASET = "webdataset"  # Ray Data's WebDataset reader: every shard's members checked on a worker
RAY_CHECKED = "checked"  # listed here from headers and footers, each image read and checked on a worker
RAY_HERE = "here"  # not on Ray: listed and checked in this process (load_dataset)


@dataclass
class Found:
    """What listing a source found.

    Attributes:
        pairs: (image, label or None), in the source's order.
        skipped: files left out, with the reason.
        columns: metadata columns (labels.csv's further columns, a table's), and `extra`, each
            image's values by its name.
        files: the files a reader of whole files (Ray Data's) reads the images from, if any.
        tempdir: a folder written for this listing (a zip unpacked), the dataset's to delete.
        folder: the folder whose files were listed (where their checks may be remembered).
    """

    pairs: list[tuple[ImageItem, str | None]]
    skipped: list[Skipped] = field(default_factory=list)
    columns: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)
    files: ReadableFiles | None = None
    tempdir: str | None = None
    folder: Path | None = None


@dataclass(frozen=True)
class Reading:
    """How a listing reads: the limits, and whether a table may name files anywhere on this machine."""

    limits: Limits
    server_paths: bool = True


@dataclass(frozen=True)
class DataSource:
    """One kind of data source.

    Attributes:
        name: what the kind is called (docs/datasets.md).
        match: (source, spec, reading) -> what the lister needs, or None when the source is not of
            this kind (it may refuse the source: a missing path, a file over the limits).
        list_here: (what match returned, spec, reading) -> Found, in this process; None for a kind
            that is not read from its name (an upload before it is written, images in memory).
        on_ray: RAY_WEBDATASET, RAY_CHECKED or RAY_HERE.
        read_elsewhere: for a kind without `list_here`, where its images are read, in one sentence.
    """

    name: str
    match: Callable[[str, DataSpec, Reading], Any]
    list_here: Callable[[Any, DataSpec, Reading], Found] | None
    on_ray: str
    read_elsewhere: str = ""


# ---- recognising


def _path(source: str) -> Path:
    return Path(source).expanduser()


def _named_files(source: str) -> bool:
    """Whether the source can name files: it exists, or is a brace pattern of shards."""
    return _path(source).exists() or "{" in source


def _upload(source: str, spec: DataSpec, reading: Reading) -> Any:
    return source if source.startswith("upload:") else None


def _in_memory(source: str, spec: DataSpec, reading: Reading) -> Any:
    return source if source == IN_MEMORY and not _path(source).exists() else None


def _sample(source: str, spec: DataSpec, reading: Reading) -> Any:
    if not source.startswith("sample:"):
        return None
    name = source.split(":", 1)[1]
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {source!r}; choose one of {', '.join('sample:' + s for s in SAMPLES)}")
    return name


def _shards(source: str, spec: DataSpec, reading: Reading) -> Any:
    return (shard_files(source) or None) if _named_files(source) else None


def _saved_dataset(source: str, spec: DataSpec, reading: Reading) -> Any:
    path = _path(source)
    return containers.saved_dataset_files(path) if path.is_dir() else None


def _csv_table(source: str, spec: DataSpec, reading: Reading) -> Any:
    path = _path(source)
    return path if path.is_file() and path.suffix.lower() == ".csv" else None


def _parquet(source: str, spec: DataSpec, reading: Reading) -> Any:
    """The parquet files of a file, folder or pattern (a folder of image files is a folder), each
    within the size limit before anything of it is read."""
    if not _named_files(source):
        return None
    path = _path(source)
    files = containers.parquet_files(source)
    if not files or (path.is_dir() and _has_images(path)):
        return None
    for f in files:
        if os.path.getsize(f) > reading.limits.max_total_bytes:
            raise ValueError(
                f"{Path(f).name} is {os.path.getsize(f):,} bytes, over the limit of {reading.limits.max_total_bytes:,}"
            )
    return files


def _parquet_paths(source: str, spec: DataSpec, reading: Reading) -> Any:
    """One parquet file that names images by path rather than holding them."""
    if not _path(source).is_file():  # a folder is not a table of paths: not listed twice
        return None
    files = _parquet(source, spec, reading)
    if files is None or not _is_path_table(files[0], spec):
        return None
    return files


def _zip(source: str, spec: DataSpec, reading: Reading) -> Any:
    path = _path(source)
    if not path.is_file():
        return None
    if path.suffix.lower() != ".zip":
        raise ValueError(
            f"{source!r} is a file but not a .zip, .tar, .parquet or .csv; give a folder, one of those or sample:clothing"
        )
    return path


def _folder(source: str, spec: DataSpec, reading: Reading) -> Any:
    path = _path(source)
    if not path.exists():
        raise ValueError(f"{source!r} does not exist; give a folder, a .zip, shards, a parquet file or sample:clothing")
    return path


def _has_images(folder: Path) -> bool:
    """Whether a folder holds image files (then its parquet files, if any, are not its images)."""
    return any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.rglob("*") if p.is_file())


def _is_path_table(path: str, spec: DataSpec) -> bool:
    """Whether a parquet file names images by path rather than holding them (no binary column)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        schema = pq.ParquetFile(path).schema_arrow
    except (OSError, ValueError) as exc:
        raise ValueError(
            f"{Path(path).name} is not a readable parquet file ({str(exc).splitlines()[0][:120]})"
        ) from None
    if spec.image_column is not None:
        if spec.image_column not in schema.names:
            raise ValueError(f"no image column {spec.image_column!r}; the columns are {', '.join(schema.names)}")
        kind = schema.field(spec.image_column).type
        return not pa.types.is_nested(kind) and not pa.types.is_binary(kind)
    return not any(
        pa.types.is_binary(f.type)
        or pa.types.is_large_binary(f.type)
        or (pa.types.is_struct(f.type) and f.type.get_field_index("bytes") >= 0)
        for f in schema
    )


# ---- listing here


def _list_sample(name: str, spec: DataSpec, reading: Reading) -> Found:
    if name == "digits":
        return Found(_digits_items())
    found = _list_folder(SAMPLES_DIR / name, replace(spec, label_column=None), reading)
    found.folder = None  # bundled: checked once per process (the dashboard's shared sample), not remembered
    return found


def _digits_items() -> list[tuple[ImageItem, str | None]]:
    """scikit-learn's 8x8 digits as PNGs: dark ink on white, like a scan."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    out: list[tuple[ImageItem, str | None]] = []
    for i, (img, target) in enumerate(zip(digits.images, digits.target)):
        arr = np.clip(255 - img * 16, 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr, "L").save(buf, format="PNG")
        out.append((ImageItem(f"{target}/digit_{i:04d}.png", data=buf.getvalue()), str(target)))
    return out


def _list_folder(path: Path, spec: DataSpec, reading: Reading, tempdir: str | None = None) -> Found:
    found = candidates(path, label_column=spec.label_column)
    base = os.fspath(found.root) + os.sep
    pairs: list[tuple[ImageItem, str | None]] = [(ImageItem(rel, path=base + rel), lab) for rel, lab in found.images]
    return Found(pairs, list(found.skipped), found.columns, found.extra, tempdir=tempdir, folder=found.root)


def _list_zip(path: Path, spec: DataSpec, reading: Reading) -> Found:
    tempdir = tempfile.mkdtemp(prefix="explorer-upload-")
    try:
        report = safe_extract_zip(path, tempdir, reading.limits)
        found = _list_folder(Path(tempdir), spec, reading, tempdir)
    except BaseException:
        shutil.rmtree(tempdir, ignore_errors=True)
        raise
    found.skipped = [Skipped(f, r) for f, r in report.ignored] + found.skipped
    return found


def _list_shards(shards: list[str], spec: DataSpec, reading: Reading) -> Found:
    return _from_tables(
        list_shards(shards, spec.label_column), ReadableFiles("webdataset", tuple(shards), spec.label_column)
    )


def _list_saved_dataset(files: list[str], spec: DataSpec, reading: Reading) -> Found:
    listed = containers.list_tables(
        files, "arrow", spec.label_column, spec.image_column, reading.server_paths, reading.limits
    )
    return _from_tables(listed, None)  # no Ray reader: read cell by cell


def _list_path_table(path: Path, spec: DataSpec, reading: Reading) -> Found:
    rows, columns, skipped = path_tables.table_rows(
        path_tables.read_table(path),
        label_column=spec.label_column,
        path_column=spec.image_column,
        root=path.parent,
        inside_only=not reading.server_paths,
    )
    pairs: list[tuple[ImageItem, str | None]] = [(item, label) for item, label, _ in rows]
    files = ReadableFiles("binary", tuple(os.fspath(item.path) for item, _ in pairs))
    return Found(pairs, list(skipped), columns, {item.name: values for item, _, values in rows}, files)


def _list_parquet_paths(files: list[str], spec: DataSpec, reading: Reading) -> Found:
    containers.check_parquet(files[0], reading.limits)  # its footer, before pandas reads the table
    return _list_path_table(Path(files[0]), spec, reading)


def _list_parquet(files: list[str], spec: DataSpec, reading: Reading) -> Found:
    listed = containers.list_tables(
        files, "parquet", spec.label_column, spec.image_column, reading.server_paths, reading.limits
    )
    column = listed.images[0][1].column if listed.images else spec.image_column
    return _from_tables(listed, ReadableFiles("parquet", tuple(files), column))


def _from_tables(listed: containers.Listed, files: ReadableFiles | None) -> Found:
    pairs: list[tuple[ImageItem, str | None]] = [
        (ImageItem(name, member=where), label) for name, where, label in listed.images
    ]
    skipped = [Skipped(f, r) for f, r in (listed.skipped or [])]
    return Found(pairs, skipped, listed.columns, listed.extra or {}, files)


# ---- the table

SOURCES: tuple[DataSource, ...] = (
    DataSource(
        "upload", _upload, None, RAY_HERE, "an upload the dashboard has not written yet; choose files to upload first"
    ),
    DataSource(
        "in-memory", _in_memory, None, RAY_HERE, "images held in Python: give them to explorer.compare(data=...)"
    ),
    DataSource("sample", _sample, _list_sample, RAY_HERE),
    DataSource("webdataset", _shards, _list_shards, RAY_WEBDATASET),
    DataSource("save_to_disk", _saved_dataset, _list_saved_dataset, RAY_CHECKED),
    DataSource("csv table of paths", _csv_table, _list_path_table, RAY_CHECKED),
    DataSource("parquet table of paths", _parquet_paths, _list_parquet_paths, RAY_CHECKED),
    DataSource("parquet", _parquet, _list_parquet, RAY_CHECKED),
    DataSource("zip", _zip, _list_zip, RAY_HERE),
    DataSource("folder", _folder, _list_folder, RAY_HERE),
)  # the objects of "in-memory" are read by data/in_memory.py (run.read_data), on the local engine


def recognise(source: str, spec: DataSpec, reading: Reading) -> tuple[DataSource, Any]:
    """The kind of `source` and what its lister needs: the first entry of SOURCES that matches.

    Raises:
        ValueError: an unknown sample, a missing path, a file of no known kind.
    """
    for kind in SOURCES:
        matched = kind.match(source, spec, reading)
        if matched is not None:
            return kind, matched
    raise AssertionError("the folder entry matches every existing path")  # _folder raises for the others


def kind_name(source: str) -> str:
    """The kind a source's text names without touching the file system: upload, sample or path."""
    return "upload" if source.startswith("upload:") else "sample" if source.startswith("sample:") else "path"


def list_here(source: str, spec: DataSpec, reading: Reading) -> Found:
    """The images `source` names, listed in this process."""
    kind, matched = recognise(source, spec, reading)
    if kind.list_here is None:
        raise ValueError(f"{source!r}: {kind.read_elsewhere}")
    return kind.list_here(matched, spec, reading)
