"""Image datasets: bundled samples, folders, zips and labels.csv, with a report of skipped files."""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import shutil
import tempfile
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..config import DataSpec, Limits
from .archive import is_ignored_name, safe_extract_zip
from .file_checks import FileCheckCache
from .images import IMAGE_SUFFIXES, ImageError, check_and_thumbnail, check_header, to_jpeg_bytes

log = logging.getLogger(__name__)

SAMPLES_DIR = Path(__file__).parents[1] / "samples"
SAMPLES = ("clothing", "digits")
LABELS_FILE = "labels.csv"

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ImageItem:
    """One image: a display name (its path relative to the dataset root) and where its bytes are."""

    name: str
    path: Path | None = None
    data: bytes | None = None

    def read_bytes(self) -> bytes:
        if self.data is not None:
            return self.data
        if self.path is None:
            raise ValueError(f"image {self.name!r} has neither bytes nor a path")
        return self.path.read_bytes()


@dataclass(frozen=True)
class Skipped:
    """A file left out of the dataset, and why."""

    file: str
    reason: str


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
    """

    source: str
    items: tuple[ImageItem, ...]
    labels: tuple[str, ...] | None
    hashes: tuple[str, ...]
    thumbnails: tuple[bytes, ...]
    skipped: tuple[Skipped, ...] = ()
    duplicates: tuple[tuple[str, str], ...] = ()
    metadata: dict[str, tuple[str, ...]] = field(default_factory=dict)
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
        return replace(
            self,
            items=tuple(self.items[i] for i in keep),
            labels=tuple(self.labels[i] for i in keep) if self.labels is not None else None,
            hashes=tuple(self.hashes[i] for i in keep),
            thumbnails=tuple(self.thumbnails[i] for i in keep) if self.thumbnails else (),
            metadata={c: tuple(v[i] for i in keep) for c, v in self.metadata.items()},
            skipped=self.skipped + tuple(Skipped(self.items[i].name, why) for i, why in sorted(rows.items())),
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


def _candidates(root: Path) -> Candidates:
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


def _digits_items() -> list[tuple[ImageItem, str]]:
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    out = []
    for i, (img, target) in enumerate(zip(digits.images, digits.target)):
        arr = np.clip(255 - img * 16, 0, 255).astype(np.uint8)  # dark ink on white, like a scan
        buf = io.BytesIO()
        Image.fromarray(arr, "L").save(buf, format="PNG")
        out.append((ImageItem(f"{target}/digit_{i:04d}.png", data=buf.getvalue()), str(target)))
    return out


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
        if len(data) > limits.max_file_bytes:
            return Skipped(item.name, f"file of {len(data)} bytes is over the limit of {limits.max_file_bytes}")
        try:
            thumb = b""
            if thumbnails:
                thumb = to_jpeg_bytes(check_and_thumbnail(data, max_pixels=limits.max_pixels)[0])
            else:  # the header only: extraction decodes each image once, and reports what fails there
                check_header(data, max_pixels=limits.max_pixels)
        except ImageError as exc:
            return Skipped(item.name, str(exc))
        return hashlib.sha256(data).hexdigest(), thumb

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
) -> ImageDataset:
    """Load, validate and de-duplicate a dataset.

    Args:
        spec: what to load (`sample:<name>`, a folder, or a .zip) and how many images.
        limits: bounds on files, sizes and pixels (defaults: Limits()).
        progress: called with (done, total) while images are checked.
        thumbnails: make the small JPEGs that hover images and grids show (the dashboard), which
            decodes each image at reduced scale; without them (`thumbnails` is empty) only each
            file's header is checked, and the one full decode is extraction's, which leaves out and
            reports an image that fails there (pipeline.compare).
        file_checks_dir: a folder where, without thumbnails, what reading a folder's files found is
            remembered (file_checks.py): reopening unchanged files costs a stat each, not a read.

    Returns:
        An ImageDataset; call `close()` when done with a zip's dataset to delete its unpacked files.

    Raises:
        ValueError: unknown sample, missing path, unsafe archive, or no usable image.
    """
    limits = limits or Limits()
    source = spec.source
    tempdir = None
    index = None
    found: Candidates | None = None
    skipped: list[Skipped] = []
    if source.startswith("sample:"):
        name = source.split(":", 1)[1]
        if name == "digits":
            pairs = _digits_items()
        elif name in SAMPLES:
            found = _candidates(SAMPLES_DIR / name)
            pairs = [(ImageItem(rel, path=found.root / rel), lab) for rel, lab in found.images]
            skipped = found.skipped
        else:
            raise ValueError(f"unknown sample {source!r}; choose one of {', '.join('sample:' + s for s in SAMPLES)}")
    else:
        path = Path(source).expanduser()
        if not path.exists():
            raise ValueError(f"{source!r} does not exist; give a folder, a .zip or sample:clothing")
        if path.is_file():
            if path.suffix.lower() != ".zip":
                raise ValueError(f"{source!r} is a file but not a .zip; give a folder, a .zip or sample:clothing")
            tempdir = tempfile.mkdtemp(prefix="explorer-upload-")
            try:
                report = safe_extract_zip(path, tempdir, limits)
            except BaseException:
                shutil.rmtree(tempdir, ignore_errors=True)
                raise
            skipped += [Skipped(f, r) for f, r in report.ignored]
            path = Path(tempdir)
        found = _candidates(path)
        skipped += found.skipped
        pairs = [(ImageItem(rel, path=found.root / rel), lab) for rel, lab in found.images]
        if file_checks_dir is not None and tempdir is None and not thumbnails:  # a folder (a zip unpacks anew each time)
            index = FileCheckCache(file_checks_dir, found.root, f"{limits.max_file_bytes}:{limits.max_pixels}")
    try:
        ds = _finish(source, pairs, skipped, spec, limits, progress, tempdir, thumbnails, index)
        if found is not None and found.columns:
            ds.metadata = {c: tuple(found.extra[it.name][j] for it in ds.items) for j, c in enumerate(found.columns)}
        return ds
    except BaseException:
        if tempdir:
            shutil.rmtree(tempdir, ignore_errors=True)
        raise


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
) -> ImageDataset:
    if spec.max_images is not None:
        keep = stratified_subsample([lab for _, lab in pairs], spec.max_images, spec.random_state)
        pairs = [pairs[i] for i in keep]
    if len(pairs) > limits.max_files:  # the limit is on what is kept, after --max-images
        raise ValueError(
            f"{source!r} has {len(pairs):,} images, over the limit of {limits.max_files:,}; "
            "keep a stratified sample with --max-images N, or raise the limit with --max-files"
        )
    ok, hashes, thumbs, bad = _validate(pairs, limits, progress, thumbnails, index)
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
        _tempdir=tempdir,
    )
