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


def candidates(root: Path) -> Candidates:
    files = [f for f in _list_files(root) if not is_ignored_name(f)]
    root, files = _strip_wrapper(root, files)
    skipped: list[Skipped] = []
    images: list[str] = []
    labels_csv = None
    for f in files:
        if f == LABELS_FILE:
            labels_csv = root / f
        elif _is_image_name(f):
            images.append(f)
        elif _is_doc(f):
            continue
        else:
            skipped.append(Skipped(f, "not an image file (by extension)"))
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
