"""A table of image paths and labels (a CSV or parquet file, or a DataFrame from Python): each row's
file, its label and its further columns, with paths relative to the table's folder or absolute."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .items import ImageItem
from .listing import Skipped

PATH_COLUMNS = ("path", "file", "file_name", "filename", "image", "image_path")
LABEL_COLUMNS = ("label", "labels", "class", "target")

Row = tuple[ImageItem, "str | None", tuple[str, ...]]


def pick_column(columns: Sequence[str], asked: str | None, defaults: Sequence[str], what: str) -> str | None:
    """`asked` if the table has it (else ValueError naming the columns), else the first of `defaults` it has."""
    if asked is not None:
        if asked not in columns:
            raise ValueError(f"no {what} column {asked!r}; the columns are {', '.join(map(str, columns))}")
        return asked
    return next((c for c in defaults if c in columns), None)


def read_table(path: Path) -> Any:
    """A CSV or parquet file as a DataFrame of text (what a path table holds)."""
    import pandas as pd

    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as exc:  # pandas' and pyarrow's parse errors are ValueErrors
        raise ValueError(f"{path.name} cannot be read as a table: {str(exc).splitlines()[0][:200]}") from exc


def table_rows(
    df: Any,
    *,
    label_column: str | None = None,
    path_column: str | None = None,
    root: Path | None = None,
    inside_only: bool = False,
) -> tuple[list[Row], tuple[str, ...], list[Skipped]]:
    """(image, label, further column values) per row, the further columns' names, and the rows left out.

    Args:
        df: the table.
        label_column: its label column (default: label, labels, class or target where it has one).
        path_column: its path column (default: the first of PATH_COLUMNS it has).
        root: what relative paths are relative to (default: the working folder).
        inside_only: refuse a table that names a file outside `root` (an absolute path, `..`, a
            link out): the demo's rule, where the table came from a stranger.

    Raises:
        ValueError: no path column, a missing label column, or (inside_only) a path outside root.
    """
    columns = [str(c) for c in df.columns]
    path_col = pick_column(columns, path_column, PATH_COLUMNS, "path")
    if path_col is None:
        raise ValueError(f"the table has no path column: name it one of {', '.join(PATH_COLUMNS)}")
    label_col = pick_column(columns, label_column, LABEL_COLUMNS, "label")
    extra = tuple(c for c in columns if c not in (path_col, label_col))
    base = (root or Path.cwd()).resolve()
    rows: list[Row] = []
    skipped: list[Skipped] = []
    seen: set[str] = set()
    for rec in df.astype(object).itertuples(index=False, name=None):
        values = dict(zip(columns, rec))
        raw = values[path_col]
        if not isinstance(raw, (str, os.PathLike)) or not str(raw).strip():
            skipped.append(Skipped(str(raw), "no path in the table's row"))
            continue
        name = os.fspath(raw)
        if name in seen:
            skipped.append(Skipped(name, "listed twice in the table"))
            continue
        seen.add(name)
        full = Path(os.path.expanduser(name))
        full = full if full.is_absolute() else base / full
        if inside_only and not full.resolve().is_relative_to(base):
            raise ValueError(
                f"the table names {name!r}, outside the table's folder; here a table may name only the files beside it"
            )
        label = values[label_col] if label_col is not None else None
        rows.append(
            (
                ImageItem(name, path=str(full)),
                None if label is None or label == "" else str(label),
                tuple("" if values[c] is None else str(values[c]) for c in extra),
            )
        )
    return rows, extra, skipped
