"""A dataset listed and checked on a Ray cluster: WebDataset shards, parquet files and tables of paths
read by Ray Data's own readers (`read_webdataset`, `read_parquet`, `read_binary_files`) on the
workers, each image's bytes hashed and its header checked where they are read. Only names, labels,
hashes and reasons come back: the driver never holds the images' bytes.

What comes back is the dataset `datasets.load_dataset` gives for the same source (the same images,
names, labels, columns, hashes and skipped files), so the feature cache keys are the same. The
`files` it records let the Ray engine read the images for extraction with the same readers
(ray_backend.py), each matched to its row by its hash.

A `save_to_disk` folder has no Ray reader: its cells are read and hashed on the workers one by
one. Folders, zips and samples are listed here as `load_dataset` lists them (None is returned).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..config import DataSpec, Limits
from ..progress import Progress
from .archive import is_ignored_name
from .datasets import ImageDataset, check_image_bytes, dataset_from_items, stratified_subsample
from .items import ImageItem, ReadableFiles, describe, from_description
from .listing import Skipped
from .shards import SMALL_MEMBER_BYTES, ShardSample, check_shard, read_sample, shard_columns
from .source_table import RAY_HERE, RAY_WEBDATASET, Reading, recognise

LISTING_BATCH = 256  # images a worker checks per batch


def list_on_cluster(
    spec: DataSpec, *, limits: Limits | None = None, progress: Progress | None = None
) -> ImageDataset | None:
    """The dataset `spec` names, listed and checked on the running Ray cluster, or None where the
    source is a folder, a zip or a sample (list those with load_dataset). Arguments as load_dataset's.

    Raises:
        ValueError: a missing path or column, an unsafe shard, no usable image (one sentence).
    """

    limits = limits or Limits()
    source = spec.source
    reading = Reading(limits, server_paths=True)
    kind, matched = recognise(source, spec, reading)
    if kind.on_ray == RAY_HERE:
        return None
    if kind.on_ray == RAY_WEBDATASET:
        pairs, checked, columns, extra, skipped = _webdataset(matched, spec, limits, progress)
        files: ReadableFiles | None = ReadableFiles("webdataset", tuple(matched), spec.label_column)
    else:  # RAY_CHECKED: listed here from headers and footers, each image checked on a worker
        found = kind.list_here(matched, spec, reading)
        pairs, columns, extra, skipped, files = found.pairs, found.columns, found.extra, found.skipped, found.files
        if spec.max_images is not None and (files is None or files.kind == "binary"):
            # the sample first (load_dataset's, so the same one): only its images are read. A parquet
            # file is read whole by its reader, and matched to its rows by position, so it is sampled after.
            pairs = [
                pairs[i] for i in stratified_subsample([lab for _, lab in pairs], spec.max_images, spec.random_state)
            ]
            if files is not None:
                files = ReadableFiles("binary", tuple(os.fspath(item.path) for item, _ in pairs))
        checked = _check_on_cluster([item for item, _ in pairs], files, limits, progress)
    ds = dataset_from_items(source, pairs, skipped, spec=spec, limits=limits, checked=checked, files=files)
    if columns:
        ds.metadata = {c: tuple(extra[it.name][j] for it in ds.items) for j, c in enumerate(columns)}
    return ds


# ---- what runs on the workers


def image_bytes(batch: Any, files: ReadableFiles) -> list[bytes | None]:
    """Each row's image bytes in a batch (pyarrow) of the reader `files` names: a shard's `image`
    column, a table's image column (HF's `{bytes, path}` struct or plain bytes; a struct that names a
    file is read from beside the parquet file), a binary file's `bytes`."""
    import pyarrow as pa

    if files.kind == "binary":
        return batch.column("bytes").to_pylist()
    if files.kind == "webdataset":
        return batch.column("image").to_pylist()
    col = batch.column(files.column).combine_chunks() if isinstance(batch, pa.Table) else batch.column(files.column)
    if not pa.types.is_struct(col.type):
        return col.to_pylist()
    data = col.field("bytes").to_pylist()
    if col.type.get_field_index("path") < 0 or "path" not in batch.column_names:
        return data
    names, tables = col.field("path").to_pylist(), batch.column("path").to_pylist()
    return [d if d is not None or not n else _beside(t, n) for d, n, t in zip(data, names, tables)]


def _beside(table: str, name: str) -> bytes | None:
    target = Path(name).expanduser()
    if not target.is_absolute() and (Path(table).parent / target).exists():
        target = Path(table).parent / target
    try:
        return target.read_bytes()
    except OSError:
        return None


def _split(checked: tuple[str, bytes] | str) -> tuple[str, str]:
    """check_image_bytes' answer as (hash, reason): one of them empty."""
    return (checked[0], "") if isinstance(checked, tuple) else ("", checked)


def _columns(out: list[tuple[str, bytes] | str]) -> dict[str, np.ndarray]:
    hashes, reasons = zip(*map(_split, out)) if out else ((), ())
    return {"hash": np.array(hashes, dtype=object), "reason": np.array(reasons, dtype=object)}


def _check_batch(batch: Any, files: ReadableFiles, limits: Limits) -> dict[str, np.ndarray]:

    out = [
        check_image_bytes(d, limits) if d is not None else "no image bytes in the row"
        for d in image_bytes(batch, files)
    ]
    return _columns(out)


def _sample_row(sample: dict[str, Any], label_field: str | None, limits: Limits, keep_bytes: bool) -> dict[str, Any]:
    """A WebDataset sample as Ray's reader gives it (key, shard, members' bytes by extension) as one
    row: the image member's name, its label and json fields, and its hash or why it is left out
    (`keep_bytes`: its bytes instead, for extraction)."""
    import json

    parts = {k: v for k, v in sample.items() if not k.startswith("__")}
    got = read_sample(
        parts, lambda v: bytes(v[:SMALL_MEMBER_BYTES]).decode("utf-8", errors="replace").strip(), label_field
    )
    data = parts.get(got.image) if got.image else None
    row = {
        "key": sample["__key__"],
        "shard": sample["__url__"],
        "ext": got.image or "",
        "label": got.label,
        "meta": json.dumps(got.meta),
        "problems": json.dumps(got.problems),
    }
    if keep_bytes:
        return row | {"image": data}
    h, why = _split(check_image_bytes(data, limits)) if data is not None else ("", "")
    return row | {"hash": h, "reason": why}


def _check_shard_task(row: dict[str, Any]) -> dict[str, Any]:

    return {"shard": row["shard"], "refused": check_shard(row["shard"])}


def _check_cells(batch: dict[str, np.ndarray], limits: Limits) -> dict[str, np.ndarray]:
    """Cells of a table with no Ray reader (save_to_disk's Arrow files), read and checked one by one."""

    out = []
    for text in batch["member"]:
        try:
            out.append(check_image_bytes(from_description(text).read(), limits))
        except OSError as exc:
            out.append(f"unreadable file: {exc}")
    return _columns(out)


# ---- the readers


def read(files: ReadableFiles, *, keep_bytes: bool, limits: Limits | None = None, num_cpus: float | None = None) -> Any:
    """A Ray Dataset over the files, in their order: a shard's samples as rows (`_sample_row`), a
    table's image column (with each file's path), binary files' bytes and paths. `num_cpus`: what
    each read task reserves (less than a CPU where actors hold the rest)."""
    import ray.data

    settle_fsspec_http()
    if files.kind == "webdataset":
        row = functools.partial(_sample_row, label_field=files.column, limits=limits or Limits(), keep_bytes=keep_bytes)
        return ray.data.read_webdataset(list(files.files), decoder=row, fileselect=_not_ignored, num_cpus=num_cpus)
    if files.kind == "parquet":
        return ray.data.read_parquet(
            list(files.files), columns=[files.column], include_paths=True, partitioning=None, num_cpus=num_cpus
        )
    return ray.data.read_binary_files(list(files.files), include_paths=True, num_cpus=num_cpus)


def settle_fsspec_http() -> None:
    """Ray Data's file listing asks, from several threads at once, whether fsspec's HTTP filesystem
    can be imported; without aiohttp that import fails, and a thread that meets the half-imported
    module raises ImportError instead of the ModuleNotFoundError Ray expects (seen at 10 parquet
    files). Settled once: imported, or marked absent, which every later import then says; here in
    the driver, and in every Ray worker by ray_backend's worker setup hook (the listing runs there too)."""
    import importlib
    import sys

    try:
        importlib.import_module("fsspec.implementations.http")
    except ImportError:
        sys.modules["fsspec.implementations.http"] = None  # type: ignore[assignment]


def _not_ignored(name: str) -> bool:

    return not is_ignored_name(name)


def _ordered() -> Callable[[], None]:
    """Keep Ray Data's output in its input's order (rows are matched to items by position); returns
    the undo."""
    from ray.data import DataContext

    options = DataContext.get_current().execution_options
    before = options.preserve_order
    options.preserve_order = True

    def undo() -> None:
        options.preserve_order = before

    return undo


def _collect(dataset: Any, columns: list[str], total: int, progress: Progress | None) -> dict[str, list[Any]]:
    got: dict[str, list[Any]] = {c: [] for c in columns}
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for c in columns:
            got[c].extend(batch[c].tolist())
        if progress is not None:
            progress(len(got[columns[0]]), total)
    return got


def _check_on_cluster(
    items: list[ImageItem], files: ReadableFiles | None, limits: Limits, progress: Progress | None
) -> list[tuple[str, bytes] | str]:
    """(hash, b"") or the reason it is left out, for each listed image, computed on the workers."""
    import ray.data

    undo = _ordered()
    try:
        if files is None:  # save_to_disk: cell by cell
            source = ray.data.from_items([{"member": describe(it.member)} for it in items])
            checks = source.map_batches(_check_cells, fn_kwargs={"limits": limits}, batch_size=LISTING_BATCH)
            got = _collect(checks, ["hash", "reason"], len(items), progress)
        elif files.kind == "binary":  # a table of paths: a file that is not there is said so, not read
            present = [_missing(p) for p in files.files]
            checks = read(
                ReadableFiles("binary", tuple(p for p, missing in zip(files.files, present) if not missing)),
                keep_bytes=True,
            )
            found = _collect(
                checks.map_batches(
                    _with_path(_check_batch),
                    fn_kwargs={"files": files, "limits": limits},
                    batch_format="pyarrow",
                    batch_size=LISTING_BATCH,
                ),
                ["path", "hash", "reason"],
                present.count(""),
                progress,
            )
            by_path = dict(zip(map(os.path.normpath, found["path"]), zip(found["hash"], found["reason"])))
            got = {"hash": [], "reason": []}
            for p, missing in zip(files.files, present):
                h, why = (
                    ("", missing)
                    if missing
                    else by_path.get(os.path.normpath(p), ("", "unreadable file: the cluster did not read it"))
                )
                got["hash"].append(h)
                got["reason"].append(why)
        else:
            checks = read(files, keep_bytes=True).map_batches(
                _check_batch,
                fn_kwargs={"files": files, "limits": limits},
                batch_format="pyarrow",
                batch_size=LISTING_BATCH,
            )
            got = _collect(checks, ["hash", "reason"], len(items), progress)
    finally:
        undo()
    if len(got["hash"]) != len(items):
        raise ValueError(
            f"the cluster read {len(got['hash'])} images where {len(items)} were listed: were the files changed?"
        )
    return [(h, b"") if h else why for h, why in zip(got["hash"], got["reason"])]


def _missing(path: str) -> str:
    """Why a file cannot be read ('' when it is a file): what reading it here would say."""
    try:
        if os.path.isfile(path):
            return ""
        os.stat(path)
        return f"unreadable file: {path} is not a file"
    except OSError as exc:
        return f"unreadable file: {exc}"


def _with_path(check: Callable[..., dict[str, np.ndarray]]) -> Callable[..., dict[str, np.ndarray]]:
    def run(batch: Any, **kwargs: Any) -> dict[str, np.ndarray]:
        return {"path": np.array(batch.column("path").to_pylist(), dtype=object), **check(batch, **kwargs)}

    return run


def _webdataset(shards: list[str], spec: DataSpec, limits: Limits, progress: Progress | None) -> tuple[Any, ...]:
    """Shards' samples, listed on the workers: every shard's headers checked first (a task per
    shard), then read by `read_webdataset`, one row per sample with its hash."""
    import json

    import ray.data

    refused = [
        r for r in ray.data.from_items([{"shard": s} for s in shards]).map(_check_shard_task).take_all() if r["refused"]
    ]
    if refused:
        raise ValueError(refused[0]["refused"])
    undo = _ordered()
    try:
        rows = _collect(
            read(ReadableFiles("webdataset", tuple(shards), spec.label_column), keep_bytes=False, limits=limits),
            ["key", "shard", "ext", "label", "meta", "problems", "hash", "reason"],
            0,
            None,
        )
    except Exception as exc:  # Ray wraps a reader's error: the first line of the cause is the sentence
        raise ValueError(f"the shards cannot be read: {str(exc).strip().splitlines()[-1][:300]}") from exc
    finally:
        undo()
    images, metas, checked, skipped = [], [], [], []
    for key, shard, ext, label, meta, problems, h, why in zip(*rows.values()):
        where = f"{Path(shard).name}:{key}"
        skipped += [Skipped(where, p) for p in json.loads(problems)]
        if not ext:
            continue
        images.append((f"{where}.{ext}", ShardSample(shard, f"{key}.{ext}"), label))
        metas.append(json.loads(meta))
        checked.append((h, b"") if h else why)
    columns, extra = shard_columns(images, metas)
    if progress is not None:
        progress(len(images), len(images))
    return [(ImageItem(name, member=m), label) for name, m, label in images], checked, columns, extra, skipped
