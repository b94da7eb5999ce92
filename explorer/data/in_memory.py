"""Datasets that live in Python rather than on disk, for the Python API: a table of paths and labels
(a pandas DataFrame), a Hugging Face `datasets.Dataset` with an image column, a torch `Dataset` of
(image, label) pairs, or a list of images (PIL, arrays, tensors or paths) with a list of labels.

Each becomes the same ImageDataset a folder does, through the same checks (size and pixel limits,
content hashes, duplicates left out and reported). Image bytes are never held twice: a Hugging Face
dataset's encoded bytes, and PNG encodings of images that exist only as pixels, are written to one
temporary folder that the dataset owns (deleted by `close()`, or with the result that keeps it);
a table's files are read where they are.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..config import DataSpec, Limits
from ..progress import Progress
from .datasets import ImageDataset, dataset_from_items
from .items import ImageItem
from .listing import Skipped
from .path_tables import LABEL_COLUMNS, Row, pick_column, table_rows

_PNG_MODES = ("1", "L", "LA", "P", "RGB", "RGBA", "I;16")


def is_in_memory(data: Any) -> bool:
    """Whether `data` is one of the Python objects this module reads (not a path or a source name)."""
    return not isinstance(data, (str, os.PathLike))


def load(
    data: Any,
    labels: Sequence[Any] | None = None,
    *,
    label_column: str | None = None,
    image_column: str | None = None,
    max_images: int | None = None,
    random_state: int = 0,
    limits: Limits | None = None,
    progress: Progress | None = None,
    thumbnails: bool = False,
) -> ImageDataset:
    """An ImageDataset from a Python object.

    Args:
        data: a pandas DataFrame of paths (a column named path, file, file_name, filename, image or
            image_path) and labels; a Hugging Face `datasets.Dataset` with an Image column; a torch
            `Dataset` whose items are (image, label) or images; or a sequence of images (PIL
            images, uint8 arrays, tensors or file paths).
        labels: one label per image, for a sequence of images or a torch Dataset of bare images.
        label_column: the table's or Hugging Face dataset's label column (default: label, labels,
            class or target when there is one; no labels otherwise).
        image_column: the image column of a Hugging Face dataset (default: its first Image feature)
            or of a table (default: the first of PATH_COLUMNS it has).
        max_images: a stratified sample of at most this many images.
        random_state: seed of that sample.
        limits: bounds on images (default: Limits()).
        progress: called with (done, total) while images are checked.
        thumbnails: make the small JPEGs hover images use.

    Raises:
        ValueError: a column that is missing, an image that cannot be turned into a picture, or no
            usable image; TypeError: a type this module does not read.
    """
    limits = limits or Limits()
    spec = DataSpec(source="python", max_images=max_images, random_state=random_state)
    tempdir = tempfile.mkdtemp(prefix="explorer-python-")
    try:
        source, rows, columns, skipped = _rows(data, labels, label_column, image_column, tempdir)
        items = [(item, label) for item, label, _ in rows]
        extra = {item.name: values for item, _, values in rows}
        ds = dataset_from_items(
            source, items, skipped, spec=spec, limits=limits, progress=progress, tempdir=tempdir, thumbnails=thumbnails
        )
        if columns:
            ds.metadata = {c: tuple(extra[it.name][j] for it in ds.items) for j, c in enumerate(columns)}
        return ds
    except BaseException:
        import shutil

        shutil.rmtree(tempdir, ignore_errors=True)
        raise


def _rows(
    data: Any, labels: Sequence[Any] | None, label_column: str | None, image_column: str | None, tempdir: str
) -> tuple[str, list[Row], tuple[str, ...], list[Skipped]]:
    """(what the source is called, (item, label, further column values) per image, the further
    columns' names, images skipped before checking)."""
    kind = type(data).__module__.split(".")[0]
    if kind == "pandas":
        return _table_rows(data, label_column, image_column)
    if kind == "datasets" and hasattr(data, "features"):
        return _hf_rows(data, label_column, image_column, tempdir)
    if _is_torch_dataset(data):
        return _torch_rows(data, labels, tempdir)
    if isinstance(data, (list, tuple)) or (kind in ("numpy", "torch") and getattr(data, "ndim", 0) == 4):
        if labels is not None and len(labels) != len(data):
            raise ValueError(f"{len(labels)} labels for {len(data)} images: give one label per image")
        writer = _PngWriter(tempdir)
        rows = [(writer.item(i, img), _label(labels, i), ()) for i, img in enumerate(data)]
        return f"{len(rows)} images in memory", rows, (), writer.skipped
    raise TypeError(
        f"cannot read a dataset from a {type(data).__name__}: give a folder, a .zip, sample:NAME, a DataFrame "
        "of paths, a Hugging Face or torch Dataset, or a list of images"
    )


def _label(labels: Sequence[Any] | None, i: int) -> str | None:
    return None if labels is None else str(labels[i])


def _table_rows(
    df: Any, label_column: str | None, path_column: str | None
) -> tuple[str, list[Row], tuple[str, ...], list[Skipped]]:
    """A DataFrame of paths (relative to the working folder, or absolute), labels and further columns."""
    rows, extra, skipped = table_rows(df, label_column=label_column, path_column=path_column)
    return f"a table of {len(df)} paths", rows, extra, skipped


def _hf_rows(
    ds: Any, label_column: str | None, image_column: str | None, tempdir: str
) -> tuple[str, list[Row], tuple[str, ...], list[Skipped]]:
    """A Hugging Face dataset: its image column's encoded bytes (not decoded here: the one decode is
    extraction's), a ClassLabel's names as labels, and its other plain columns."""
    import datasets as hf

    features = ds.features
    images = [c for c, f in features.items() if isinstance(f, hf.Image)]
    image_col = pick_column(list(features), image_column, images, "image")
    if image_col is None:
        raise ValueError(f"the dataset has no Image column; its columns are {', '.join(features)}: pass image_column=")
    label_col = pick_column(list(features), label_column, LABEL_COLUMNS, "label")
    names = (
        features[label_col].names if label_col is not None and isinstance(features[label_col], hf.ClassLabel) else None
    )
    extra = tuple(c for c, f in features.items() if c not in (image_col, label_col) and isinstance(f, hf.Value))
    raw = ds.cast_column(image_col, hf.Image(decode=False)).select_columns(
        [image_col, *([label_col] if label_col else []), *extra]
    )
    writer = _PngWriter(tempdir)
    rows: list[Row] = []
    for i, rec in enumerate(_records(raw)):
        cell = rec[image_col] or {}
        label = rec[label_col] if label_col is not None else None
        if names is not None and label is not None and label >= 0:
            label = names[label]
        item = (
            writer.item(i, cell.get("bytes"), hint=cell.get("path"))
            if cell.get("bytes")
            else ImageItem(f"{i:06d}-{Path(cell['path']).name}", path=cell["path"])
            if cell.get("path")
            else None
        )
        if item is None:
            writer.skipped.append(Skipped(f"row {i}", "no image in the row"))
            continue
        rows.append(
            (item, None if label is None else str(label), tuple("" if rec[c] is None else str(rec[c]) for c in extra))
        )
    return f"a Hugging Face dataset of {len(ds)} rows", rows, extra, writer.skipped


def _records(ds: Any, batch_size: int = 256) -> Iterator[dict[str, Any]]:
    """A Hugging Face dataset's rows, read a batch at a time (its Arrow table is memory-mapped)."""
    for batch in ds.iter(batch_size=batch_size):
        cols = list(batch)
        yield from (dict(zip(cols, values)) for values in zip(*(batch[c] for c in cols)))


def _is_torch_dataset(data: Any) -> bool:
    try:
        from torch.utils.data import Dataset
    except ImportError:
        return False
    return isinstance(data, Dataset)


def _torch_rows(
    ds: Any, labels: Sequence[Any] | None, tempdir: str
) -> tuple[str, list[Row], tuple[str, ...], list[Skipped]]:
    """A map-style torch Dataset of (image, label) or of images (then `labels`); an integer label is
    named by the dataset's `classes` where it has them (torchvision's datasets do)."""
    classes = getattr(ds, "classes", None)
    writer = _PngWriter(tempdir)
    rows: list[Row] = []
    for i in range(len(ds)):
        got = ds[i]
        image, label = (
            (got[0], got[1]) if isinstance(got, (tuple, list)) and len(got) >= 2 else (got, _label(labels, i))
        )
        if hasattr(label, "item"):  # a 0-d tensor or numpy scalar
            label = label.item()
        if isinstance(label, int) and classes is not None and 0 <= label < len(classes):
            label = classes[label]
        rows.append((writer.item(i, image), None if label is None else str(label), ()))
    return f"a torch dataset of {len(ds)} items", rows, (), writer.skipped


class _PngWriter:
    """Puts each in-memory image where the dataset reads images from: encoded bytes as they are,
    pixels as a PNG (lossless: the pixels the model sees are the ones given), a path as that file."""

    def __init__(self, tempdir: str) -> None:
        self.dir = tempdir
        self.skipped: list[Skipped] = []

    def item(self, i: int, image: Any, hint: str | None = None) -> ImageItem:
        if isinstance(image, (str, os.PathLike)):
            return ImageItem(f"{i:06d}-{Path(image).name}", path=os.fspath(image))
        if isinstance(image, (bytes, bytearray, memoryview)):
            suffix = Path(hint).suffix.lower() if hint else ""
            return self._write(f"{i:06d}{suffix or '.img'}" if not hint else f"{i:06d}-{Path(hint).name}", bytes(image))
        return self._write(f"{i:06d}.png", _png_bytes(_as_pil(image, i)))

    def _write(self, name: str, data: bytes) -> ImageItem:
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return ImageItem(name, path=path)


def _as_pil(image: Any, i: int) -> Any:
    """A PIL image from a PIL image, an (H, W[, C]) uint8 array or a (C, H, W) tensor (uint8, or
    float in [0, 1] as ToTensor gives)."""
    import numpy as np
    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    kind = type(image).__module__.split(".")[0]
    if kind == "torch":
        import torch

        t = image.detach().cpu()
        if t.is_floating_point():
            if t.numel() and (float(t.min()) < 0 or float(t.max()) > 1):
                raise ValueError(
                    f"image {i} is a float tensor outside [0, 1] (a normalised one?): give the images "
                    "without the model's preprocessing; the model's own runs on them"
                )
            t = (t * 255).round().to(torch.uint8)
        arr = t.numpy()
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4):  # (C, H, W) -> (H, W, C)
            arr = arr.transpose(1, 2, 0)
        image = arr
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise ValueError(f"image {i} is a {image.dtype} array: give uint8 pixels (0-255)")
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[:, :, 0]
        if image.ndim not in (2, 3):
            raise ValueError(f"image {i} has shape {image.shape}: give (H, W) or (H, W, C) pixels")
        return Image.fromarray(image)
    raise TypeError(f"image {i} is a {type(image).__name__}: give PIL images, uint8 arrays, tensors or file paths")


def _png_bytes(img: Any) -> bytes:
    import io

    if img.mode not in _PNG_MODES:
        img = img.convert("RGB")
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)  # fast; lossless whatever the level
    return buf.getvalue()
