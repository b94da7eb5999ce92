"""Image datasets: bundled samples, folders, zips and labels.csv, with a report of skipped files."""

from __future__ import annotations

import hashlib
import logging
import shutil
import weakref
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import DataSpec, Limits
from ..progress import Progress
from .file_checks import FileCheckCache
from .images import ImageError, check_and_thumbnail, check_header, to_jpeg_bytes
from .items import ImageItem, ReadableFiles
from .listing import Skipped
from .source_table import Reading, list_here

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


@dataclass
class ImageDataset:
    """A validated, de-duplicated list of images with optional labels.

    Attributes:
        source: what was loaded (`sample:clothing`, a folder or a zip path).
        items: the usable images.
        labels: one class name per item, or None when the dataset is unlabeled.
        hashes: sha256 of each item's bytes (the cache key's view of the image).
        thumbnails: small JPEG bytes per item, for hover images and grids (empty when not asked for).
        skipped: files left out, with the reason.
        duplicates: (file, the earlier file it duplicates) pairs; duplicates are left out.
        metadata: labels.csv's further columns: name -> one value per item (text, as written).
        files: the files that hold the images, for a reader elsewhere (Ray Data's) that reads them
            whole (None: read each item where it lies).
    """

    source: str
    items: tuple[ImageItem, ...]
    labels: tuple[str, ...] | None
    hashes: tuple[str, ...]
    thumbnails: tuple[bytes, ...]
    skipped: tuple[Skipped, ...] = ()
    duplicates: tuple[tuple[str, str], ...] = ()
    metadata: dict[str, tuple[str, ...]] = field(default_factory=dict)
    files: ReadableFiles | None = None
    _tempdir: str | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    @property
    def names(self) -> list[str]:
        return [it.name for it in self.items]

    @property
    def classes(self) -> list[str]:
        return sorted(set(self.labels)) if self.labels is not None else []

    @property
    def class_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.labels).items())) if self.labels is not None else {}

    @property
    def content_hash(self) -> str:
        """sha256 over the ordered image hashes: the dataset's identity in cache keys."""
        return hashlib.sha256("\n".join(self.hashes).encode()).hexdigest()

    def without(self, rows: dict[int, str]) -> ImageDataset:
        """This dataset less the given rows, each reported in `skipped` with its reason; the files
        unpacked for it (if any) stay this dataset's to close."""
        keep = [i for i in range(len(self.items)) if i not in rows]
        if not keep:
            raise ValueError(f"no usable images in {self.source!r}: none of the {len(self.items)} could be decoded")
        skipped = self.skipped + tuple(Skipped(self.items[i].name, why) for i, why in sorted(rows.items()))
        return replace(self.take(keep), skipped=skipped)

    def take(self, rows: Sequence[int] | np.ndarray) -> ImageDataset:
        """The images at `rows` (in that order), their labels and metadata, as a dataset of their own
        (its content hash is theirs); the files unpacked for this dataset stay this dataset's to close."""
        rows = [int(i) for i in rows]
        return replace(
            self,
            items=tuple(self.items[i] for i in rows),
            labels=tuple(self.labels[i] for i in rows) if self.labels is not None else None,
            hashes=tuple(self.hashes[i] for i in rows),
            thumbnails=tuple(self.thumbnails[i] for i in rows) if self.thumbnails else (),
            metadata={c: tuple(v[i] for i in rows) for c, v in self.metadata.items()},
            _tempdir=None,
        )

    def keep_files_while(self, owner: object) -> None:
        """Keep the files unpacked for this dataset (a zip's) until `owner` is garbage-collected,
        then delete them: a result shown for a zip reads its images (previews, neighbours) for as
        long as it is shown. close() no longer deletes them."""
        if self._tempdir:
            weakref.finalize(owner, shutil.rmtree, self._tempdir, ignore_errors=True)
            self._tempdir = None

    def close(self) -> None:
        """Delete the files unpacked for this dataset (uploads, zips)."""
        if self._tempdir:
            shutil.rmtree(self._tempdir, ignore_errors=True)
            self._tempdir = None


def thumbnail_bytes(item: ImageItem, *, max_pixels: int) -> bytes | None:
    """A small JPEG of one image, made on demand (None when the file can no longer be read)."""
    try:
        return to_jpeg_bytes(check_and_thumbnail(item.read_bytes(), max_pixels=max_pixels)[0])
    except (ImageError, OSError):
        return None


def stratified_subsample(labels: list[str | None], max_images: int, random_state: int) -> np.ndarray:
    """Indices of at most `max_images` items, keeping class proportions (largest-remainder rounding).

    Args:
        labels: one label per item (None for unlabeled items: one group).
        max_images: how many to keep.
        random_state: seed of the choice.

    Returns:
        Sorted indices.
    """
    n = len(labels)
    if n <= max_images:
        return np.arange(n)
    rng = np.random.default_rng(random_state)
    groups: dict[str | None, list[int]] = {}
    for i, lab in enumerate(labels):
        groups.setdefault(lab, []).append(i)
    keys = sorted(groups, key=lambda k: (k is None, str(k)))
    exact = np.array([len(groups[k]) * max_images / n for k in keys])
    take = np.floor(exact).astype(int)
    for j in np.argsort(-(exact - take), kind="stable")[: max_images - take.sum()]:
        take[j] += 1
    chosen = [rng.choice(groups[k], size=t, replace=False) for k, t in zip(keys, take) if t > 0]
    return np.sort(np.concatenate(chosen))


def check_image_bytes(data: bytes, limits: Limits, thumbnails: bool = False) -> tuple[str, bytes] | str:
    """One image's bytes through the checks every dataset's images get: (sha256, thumbnail JPEG or
    b"") when they pass, else the reason they are left out. Without `thumbnails` only the header is
    checked: extraction decodes each image once and reports what fails there."""
    if len(data) > limits.max_file_bytes:
        return f"file of {len(data)} bytes is over the limit of {limits.max_file_bytes}"
    try:
        thumb = b""
        if thumbnails:
            thumb = to_jpeg_bytes(check_and_thumbnail(data, max_pixels=limits.max_pixels)[0])
        else:
            check_header(data, max_pixels=limits.max_pixels)
    except ImageError as exc:
        return str(exc)
    return hashlib.sha256(data).hexdigest(), thumb


def _validate(
    pairs: list[tuple[ImageItem, str | None]],
    limits: Limits,
    progress: Progress | None,
    thumbnails: bool,
    index: FileCheckCache | None = None,
) -> tuple[list[int], list[str], list[bytes], list[Skipped]]:
    def read(item: ImageItem) -> tuple[str, bytes] | Skipped:
        try:
            data = item.read_bytes()
        except OSError as exc:
            return Skipped(item.name, f"unreadable file: {exc}")
        got = check_image_bytes(data, limits, thumbnails)
        return Skipped(item.name, got) if isinstance(got, str) else got

    def one(item: ImageItem) -> tuple[str, bytes] | Skipped:
        got = read(item)
        if index is None or item.path is None:
            return got
        if isinstance(got, Skipped):
            if not got.reason.startswith("unreadable file"):  # a passing I/O error is not remembered
                index.record(item.path, "", got.reason)
        else:
            index.record(item.path, got[0], None)
        return got

    # files the index knows unchanged cost a stat here; only the others are read, on two threads
    items = [p[0] for p in pairs]
    known = [index.lookup(it.path) if index is not None and it.path is not None else None for it in items]
    ok, hashes, thumbs, skipped = [], [], [], []
    with ThreadPoolExecutor(max_workers=2) as pool:  # (index.record from two threads: one dict item each, GIL-atomic)
        todo = iter(pool.map(one, [it for it, k in zip(items, known) if k is None]))
        for i, (item, k) in enumerate(zip(items, known)):
            if k is None:
                res = next(todo)
            else:
                res = Skipped(item.name, k[1]) if k[1] is not None else (k[0], b"")
            if isinstance(res, Skipped):
                skipped.append(res)
            else:
                ok.append(i)
                hashes.append(res[0])
                thumbs.append(res[1])
            if progress is not None:
                progress(i + 1, len(pairs))
    if index is not None:
        index.save()
    return ok, hashes, thumbs, skipped


def load_dataset(
    spec: DataSpec,
    *,
    limits: Limits | None = None,
    progress: Progress | None = None,
    thumbnails: bool = True,
    file_checks_dir: Path | None = None,
    server_paths: bool = True,
) -> ImageDataset:
    """Load, validate and de-duplicate a dataset.

    Args:
        spec: what to load (`sample:<name>`, a folder, a .zip, WebDataset shards, parquet, a
            save_to_disk folder or a table of paths: docs/datasets.md) and how many images.
        limits: bounds on files, sizes and pixels (defaults: Limits()).
        progress: called with (done, total) while images are checked.
        thumbnails: make the small JPEGs that hover images and grids show (the dashboard), which
            decodes each image at reduced scale; without them (`thumbnails` is empty) only each
            file's header is checked, and the one full decode is extraction's, which leaves out and
            reports an image that fails there (pipeline.compare).
        file_checks_dir: a folder where, without thumbnails, what reading a folder's files found is
            remembered (file_checks.py): reopening unchanged files costs a stat each, not a read.
        server_paths: whether a table of paths may name files anywhere on this machine (False for
            the demo's visitors: only the files beside the table).

    Returns:
        An ImageDataset; call `close()` when done with a zip's dataset to delete its unpacked files.

    Raises:
        ValueError: unknown sample, missing path, unsafe archive or shard, a missing column, or no
            usable image.
    """
    limits = limits or Limits()
    found = list_here(spec.source, spec, Reading(limits, server_paths))
    index = None
    if found.folder is not None and file_checks_dir is not None and found.tempdir is None and not thumbnails:
        index = FileCheckCache(file_checks_dir, found.folder, f"{limits.max_file_bytes}:{limits.max_pixels}")
    try:
        ds = _finish(
            spec.source,
            found.pairs,
            found.skipped,
            spec,
            limits,
            progress,
            found.tempdir,
            thumbnails,
            index,
            files=found.files,
        )
        if found.columns:
            ds.metadata = {c: tuple(found.extra[it.name][j] for it in ds.items) for j, c in enumerate(found.columns)}
        return ds
    except BaseException:
        if found.tempdir:
            shutil.rmtree(found.tempdir, ignore_errors=True)
        raise


def dataset_from_items(
    source: str,
    pairs: list[tuple[ImageItem, str | None]],
    skipped: list[Skipped],
    *,
    spec: DataSpec,
    limits: Limits,
    progress: Progress | None = None,
    tempdir: str | None = None,
    thumbnails: bool = False,
    checked: Sequence[tuple[str, bytes] | str] | None = None,
    files: ReadableFiles | None = None,
) -> ImageDataset:
    """A dataset from (image, label) pairs found some other way (in_memory.py, cluster_listing.py),
    through the checks every dataset gets: the sample, the size and pixel limits, content hashes and
    duplicates. `tempdir`, where the items' files were written, becomes the dataset's to delete;
    `checked`, each pair's (hash, thumbnail) or the reason it is left out, where that was found
    elsewhere (check_image_bytes on a Ray worker); `files`, where a reader of whole files finds them."""
    return _finish(
        source, pairs, list(skipped), spec, limits, progress, tempdir, thumbnails, checked=checked, files=files
    )


def _finish(
    source: str,
    pairs: list[tuple[ImageItem, str | None]],
    skipped: list[Skipped],
    spec: DataSpec,
    limits: Limits,
    progress: Progress | None,
    tempdir: str | None,
    thumbnails: bool,
    index: FileCheckCache | None = None,
    checked: Sequence[tuple[str, bytes] | str] | None = None,
    files: ReadableFiles | None = None,
) -> ImageDataset:
    if spec.max_images is not None:
        keep = stratified_subsample([lab for _, lab in pairs], spec.max_images, spec.random_state)
        pairs = [pairs[i] for i in keep]
        checked = [checked[i] for i in keep] if checked is not None else None
    if len(pairs) > limits.max_files:  # the limit is on what is kept, after --max-images
        raise ValueError(
            f"{source!r} has {len(pairs):,} images, over the limit of {limits.max_files:,}; "
            "keep a stratified sample with --max-images N, or raise the limit with --max-files"
        )
    if checked is None:
        ok, hashes, thumbs, bad = _validate(pairs, limits, progress, thumbnails, index)
    else:  # checked elsewhere (on a Ray cluster: cluster_listing.py)
        ok, hashes, thumbs, bad = [], [], [], []
        for i, ((item, _), got) in enumerate(zip(pairs, checked)):
            if isinstance(got, str):
                bad.append(Skipped(item.name, got))
            else:
                ok.append(i)
                hashes.append(got[0])
                thumbs.append(got[1])
    skipped += bad
    seen: dict[str, str] = {}
    items, labels, uniq_hashes, uniq_thumbs, dups = [], [], [], [], []
    for i, h, t in zip(ok, hashes, thumbs):
        item, label = pairs[i]
        if h in seen:
            dups.append((item.name, seen[h]))
            skipped.append(Skipped(item.name, f"duplicate of {seen[h]}"))
            continue
        seen[h] = item.name
        items.append(item)
        labels.append(label)
        uniq_hashes.append(h)
        if thumbnails:
            uniq_thumbs.append(t)
    if not items:
        raise ValueError(f"no usable images in {source!r} ({len(skipped)} files skipped)")
    labeled = all(lab is not None for lab in labels)
    log.info("dataset %s: %d images, %d skipped, %d duplicates", source, len(items), len(skipped), len(dups))
    return ImageDataset(
        source=source,
        items=tuple(items),
        labels=tuple(labels) if labeled else None,  # type: ignore[arg-type]
        hashes=tuple(uniq_hashes),
        thumbnails=tuple(uniq_thumbs),
        skipped=tuple(skipped),
        duplicates=tuple(dups),
        files=files,
        _tempdir=tempdir,
    )
