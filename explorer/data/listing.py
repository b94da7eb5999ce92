"""Which files of a folder are a dataset's images, and their labels: the listing (documents and
ignored names left out), a single wrapper folder, labels.csv, and what is skipped and why."""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .archive import is_ignored_name
from .images import IMAGE_SUFFIXES

log = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
METADATA_FILES = ("metadata.csv", "metadata.jsonl")  # Hugging Face's imagefolder: file_name, then any columns
LABEL_COLUMNS = ("label", "labels", "class", "target")


@dataclass(frozen=True)
class Skipped:
    """A file left out of the dataset, and why."""

    file: str
    reason: str


_DOC_NAMES = ("readme", "license", "licence", "attribution", "notice")


def _is_doc(rel: str) -> bool:
    """README / LICENSE / ATTRIBUTION files travel with datasets; they are not reported as skipped."""
    return Path(rel).stem.lower().split(".")[0] in _DOC_NAMES


def _is_image_name(rel: str) -> bool:
    return rel.lower().endswith(IMAGE_SUFFIXES)


def _list_files(root: Path, rel: str = "") -> Iterator[str]:
    """Relative paths of the regular files under `root` in sorted order (as sorted paths), found
    lazily with os.scandir (no stat per file, nothing held but one folder's names); links are
    never followed."""
    try:
        with os.scandir(root / rel if rel else root) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        log.warning("cannot list %s: %s", root / rel, exc)
        return
    for e in entries:
        if e.is_symlink():
            continue  # a folder may hold links to anywhere; they are never followed
        path = f"{rel}/{e.name}" if rel else e.name
        if e.is_dir(follow_symlinks=False):
            yield from _list_files(root, path)
        elif e.is_file(follow_symlinks=False):
            yield path


def _strip_wrapper(root: Path, files: list[str]) -> tuple[Path, list[str]]:
    """A zip of `clothing/dress/a.jpg` is treated like one of `dress/a.jpg`."""
    while files:
        firsts = {f.split("/", 1)[0] for f in files}
        if len(firsts) != 1 or all("/" not in f for f in files):
            break
        (top,) = firsts
        if not all("/" in f for f in files):
            break
        root = root / top
        files = [f.split("/", 1)[1] for f in files]
    return root, files


@dataclass(frozen=True)
class LabelsTable:
    """What a labels.csv says: each file's label, and the values of any further columns.

    Attributes:
        labels: file name -> label.
        columns: the names of the columns after the label (from the header row; `column 3`, ...
            without one).
        extra: file name -> its values in those columns.
    """

    labels: dict[str, str]
    columns: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _read_labels_csv(path: Path) -> LabelsTable:
    """`filename,label[,more columns]` rows; a header row (`filename,label,...`) is optional and
    names the further columns."""
    text = path.read_bytes().decode("utf-8-sig", errors="replace")
    labels: dict[str, str] = {}
    extra: dict[str, tuple[str, ...]] = {}
    columns: list[str] = []
    for i, row in enumerate(csv.reader(io.StringIO(text))):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) < 2:
            raise ValueError(f"{path.name} line {i + 1}: expected 'filename,label', got {','.join(row)!r}")
        cells = [c.strip() for c in row]
        name, label = cells[0], cells[1]
        if i == 0 and name.lower() in ("filename", "file", "path", "image") and label.lower() in ("label", "class"):
            columns = [c or f"column {j + 3}" for j, c in enumerate(cells[2:])]
            continue
        if len(cells) - 2 > len(columns):
            columns += [f"column {j + 3}" for j in range(len(columns), len(cells) - 2)]
        if label:
            key = name.replace("\\", "/")
            labels[key] = label
            extra[key] = tuple(cells[2:])
    if not columns:
        return LabelsTable(labels)
    width = len(columns)
    return LabelsTable(labels, tuple(columns), {k: (v + ("",) * width)[:width] for k, v in extra.items()})


@dataclass
class Candidates:
    """A folder's images before they are read: the data root (a wrapper folder stripped), (path
    relative to it, label or None) per image, the files skipped, and labels.csv's further columns
    (their names, and each image's values by its path)."""

    root: Path
    images: list[tuple[str, str | None]]
    skipped: list[Skipped]
    columns: tuple[str, ...] = ()
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)


def _read_metadata(
    path: Path, label_column: str | None
) -> tuple[dict[str, str | None], tuple[str, ...], dict[str, tuple[str, ...]]]:
    """An imagefolder's metadata.csv or metadata.jsonl: ({file_name: label or None}, the further
    columns, {file_name: their values}); the label column is `label_column`, else the first of
    LABEL_COLUMNS it has, else none."""
    import pandas as pd

    try:
        df = (
            pd.read_json(path, lines=True, dtype=False)
            if path.suffix == ".jsonl"
            else pd.read_csv(path, dtype=str, keep_default_na=False)
        )
    except ValueError as exc:
        raise ValueError(f"{path.name} cannot be read: {str(exc).splitlines()[0][:200]}") from exc
    columns = [str(c) for c in df.columns]
    if "file_name" not in columns:
        raise ValueError(
            f"{path.name} has no file_name column (Hugging Face's imagefolder convention); its columns are "
            f"{', '.join(columns)}"
        )
    if label_column is not None and label_column not in columns:
        raise ValueError(f"no label column {label_column!r} in {path.name}; its columns are {', '.join(columns)}")
    label = label_column or next((c for c in LABEL_COLUMNS if c in columns), None)
    extra = tuple(
        c
        for c in columns
        if c not in ("file_name", label) and df[c].map(lambda v: not isinstance(v, (dict, list))).all()
    )
    labels: dict[str, str | None] = {}
    values: dict[str, tuple[str, ...]] = {}
    for rec in df.astype(object).to_dict("records"):
        key = str(rec["file_name"]).replace("\\", "/").lstrip("./")
        labels[key] = None if label is None or rec[label] is None or rec[label] == "" else str(rec[label])
        values[key] = tuple("" if rec[c] is None else str(rec[c]) for c in extra)
    return labels, extra, values


def candidates(root: Path, label_column: str | None = None) -> Candidates:
    files = [f for f in _list_files(root) if not is_ignored_name(f)]
    root, files = _strip_wrapper(root, files)
    skipped: list[Skipped] = []
    images: list[str] = []
    labels_csv = None
    metadata = next((root / m for m in METADATA_FILES if m in files), None)
    for f in files:
        if f in METADATA_FILES and root / f == metadata:
            continue
        if f == LABELS_FILE:
            labels_csv = root / f
        elif _is_image_name(f):
            images.append(f)
        elif _is_doc(f):
            continue
        else:
            skipped.append(Skipped(f, "not an image file (by extension)"))
    if metadata is not None:
        labels, columns, values = _read_metadata(metadata, label_column)
        listed = [f for f in images if f in labels]
        skipped += [Skipped(f, f"not in {metadata.name}") for f in images if f not in labels]
        skipped += [Skipped(k, f"listed in {metadata.name} but not found") for k in labels if k not in set(images)]
        if all(labels[f] is None for f in listed) and listed and all("/" in f for f in listed):
            out = [(f, f.split("/", 1)[0]) for f in listed]  # no label column: the class folders', as imagefolder does
        else:
            out = [(f, labels[f]) for f in listed]
        return Candidates(root, out, skipped, columns, {f: values[f] for f in listed})
    if label_column is not None:
        raise ValueError(
            f"label_column={label_column!r} names a column, but this folder has no metadata.csv, "
            "metadata.jsonl or table"
        )
    if labels_csv is not None:
        table = _read_labels_csv(labels_csv)
        by_base = {Path(k).name: k for k in table.labels}
        out: list[tuple[str, str | None]] = []
        extra: dict[str, tuple[str, ...]] = {}
        for f in images:
            key = f if f in table.labels else by_base.get(Path(f).name)
            if key is None:
                skipped.append(Skipped(f, f"no label in {LABELS_FILE}"))
            else:
                out.append((f, table.labels[key]))
                if table.columns:
                    extra[f] = table.extra[key]
        known = set(images) | {Path(f).name for f in images}
        skipped += [Skipped(k, f"listed in {LABELS_FILE} but not found") for k in table.labels if k not in known]
        return Candidates(root, out, skipped, table.columns, extra)
    in_folders = [f for f in images if "/" in f]
    if in_folders:
        out = [(f, f.split("/", 1)[0]) for f in in_folders]
        skipped += [Skipped(f, "not inside a class folder") for f in images if "/" not in f]
        return Candidates(root, out, skipped)
    return Candidates(root, [(f, None) for f in images], skipped)
