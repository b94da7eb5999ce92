"""Content-addressed on-disk store: complete keys; layer features as memory-mappable .npy files
written chunk by chunk as an extraction runs (resumable); derived results as small atomic npz files.

Why .npy: numpy reads it memory-mapped with no extra library, it holds no pickle, and
`open_memmap` lets an extraction write rows in place as chunks finish, so no layer is ever held
whole in RAM. (safetensors maps too but cannot be written in parts; zarr would add a dependency
and chunk files for what is one dense float32 matrix per layer.)"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import shutil
import stat
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .fsutil import atomic_write, default_cache_root

log = logging.getLogger(__name__)

SCHEMA = 2  # the layout of keys and files (2: the code of each stage in its keys, code_identity.py)


def make_key(kind: str, parts: dict[str, Any]) -> str:
    """sha256 of a versioned, canonical JSON of every input that changes a result.

    Args:
        kind: what is keyed (`layer`, `chunk`, ...): part of the key.
        parts: JSON-serialisable inputs.
    """
    payload = {"schema": SCHEMA, "kind": kind, **parts}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose numerics shape the features."""
    import PIL
    import torch
    import torchvision

    return {"torch": torch.__version__, "torchvision": torchvision.__version__, "pillow": PIL.__version__}


def analysis_versions() -> dict[str, str]:
    """Versions of the libraries whose numerics shape derived results (scores, graphs, projections)."""
    return dict(_installed_analysis_versions())


@functools.cache
def _installed_analysis_versions() -> tuple[tuple[str, str], ...]:
    """analysis_versions, read once per process (7 ms a call from the packages' metadata, and every
    layer's every result's key asks: 0.6 s of a 2,000-image analysis); the code that runs is the
    code imported, whatever is installed later."""
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in ("numpy", "scipy", "scikit-learn", "umap-learn", "pynndescent", "numba", "faiss-cpu"):
        try:
            out.append((dist, version(dist)))
        except PackageNotFoundError:
            out.append((dist, "absent"))
    return tuple(out)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    def write(fh: Any) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        fh.write(buf.getvalue())

    atomic_write(path, write)


def _load_npz(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (
        OSError,
        ValueError,
        EOFError,
        zipfile.BadZipFile,
        KeyError,
    ) as exc:  # a damaged entry is a miss, and is removed
        log.warning("dropping unreadable cache file %s: %s", path, exc)
        path.unlink(missing_ok=True)
        return None


def _open_npy(path: Path, mode: str = "r") -> np.ndarray | None:
    """A 2-D float32 .npy file memory-mapped, or None (and the file removed) when it is damaged."""
    try:
        arr = np.load(path, mmap_mode=mode, allow_pickle=False)
        if arr.ndim == 2 and arr.dtype == np.float32:
            return arr
        reason = f"{arr.ndim}-D {arr.dtype}"
    except (OSError, ValueError, EOFError) as exc:
        reason = str(exc)
    log.warning("dropping unreadable cache file %s: %s", path, reason)
    path.unlink(missing_ok=True)
    return None


class LayerWriter:
    """An extraction in progress: one preallocated N x D .npy per layer, written in place as
    chunks finish, and a list of the finished chunks (updated atomically after the rows are
    flushed), so a killed run resumes after its last finished chunk and never trusts half-written rows.

    Args:
        folder: where the partial files live (one per run key).
        nodes: the layers being extracted.
        n_rows: images in the dataset.
    """

    def __init__(self, folder: Path, nodes: list[str], n_rows: int) -> None:
        self.folder, self.nodes, self.n_rows = folder, list(nodes), n_rows
        self._maps: dict[str, np.ndarray] = {}
        self.done: set[int] = set()
        self.unreadable: dict[int, str] = {}  # row -> why the image could not be decoded (its row is a blank's)
        state = self._read_state()
        if state is not None:
            maps = {n: _open_npy(self._path(i), "r+") for i, n in enumerate(self.nodes) if self._path(i).is_file()}
            if all(m is not None and m.shape[0] == n_rows for m in maps.values()) and len(maps) == len(self.nodes):
                self._maps = maps  # type: ignore[assignment]
                self.done = set(state["done"])
                self.unreadable = {int(r): why for r, why in state.get("unreadable", {}).items()}
            else:  # damaged: start again
                self._maps = {}
                shutil.rmtree(self.folder, ignore_errors=True)

    def _path(self, i: int) -> Path:
        return self.folder / f"layer{i:03d}.npy"

    def _read_state(self) -> dict | None:
        try:
            state = json.loads((self.folder / "done.json").read_text())
        except (OSError, ValueError):
            return None
        return state if state.get("nodes") == self.nodes and state.get("n_rows") == self.n_rows else None

    def write(self, start: int, feats: dict[str, np.ndarray]) -> None:
        """Put rows [start, start + len) of every layer in place (allocating the files on first use)."""
        n = len(next(iter(feats.values())))
        self.write_rows(slice(start, start + n), feats)

    def write_rows(self, rows: slice | np.ndarray, feats: dict[str, np.ndarray]) -> None:
        """Put the given rows of every layer in place."""
        for i, n in enumerate(self.nodes):
            block = np.asarray(feats[n], dtype=np.float32)
            if n not in self._maps:
                self.folder.mkdir(parents=True, exist_ok=True)
                self._maps[n] = np.lib.format.open_memmap(
                    self._path(i), mode="w+", dtype=np.float32, shape=(self.n_rows, block.shape[1])
                )
            self._maps[n][rows] = block

    def mark_unreadable(self, found: dict[int, str]) -> None:
        """Record rows whose image could not be decoded ({row: why}), after their rows are written:
        each such row is stored as NaN in every layer (a real feature is never NaN: the extractor
        stores NaN as 0), so the features themselves say which rows are blanks, whatever becomes
        of the record beside them."""
        if not found:
            return
        rows = np.asarray(sorted(found), dtype=np.int64)
        for m in self._maps.values():
            m[rows] = np.nan
        self.unreadable |= found

    def mark_done(self, start: int) -> None:
        """Record chunk `start` as finished, after flushing its rows to disk."""
        for m in self._maps.values():
            m.flush()  # type: ignore[attr-defined]
        self.done.add(start)
        state = {"nodes": self.nodes, "n_rows": self.n_rows, "done": sorted(self.done), "unreadable": self.unreadable}
        atomic_write(self.folder / "done.json", lambda fh: fh.write(json.dumps(state).encode()))

    def discard(self) -> None:
        """Delete this unfinished extraction's files (a demo's cancelled or failed job)."""
        self._maps.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def finish(self, final: dict[str, Path]) -> None:
        """Move every finished layer file to its place in the store, and remove the partial folder."""
        for m in self._maps.values():
            m.flush()  # type: ignore[attr-defined]
        self._maps.clear()
        for i, n in enumerate(self.nodes):
            final[n].parent.mkdir(parents=True, exist_ok=True)
            os.replace(self._path(i), final[n])
        shutil.rmtree(self.folder, ignore_errors=True)


class FeatureCache:
    """Per-layer feature arrays, extractions in progress and derived results under one root.

    Args:
        root: cache folder (default: `EXPLORER_CACHE_DIR` or the user cache folder).
        keep_partial: keep an interrupted extraction's finished chunks for a later run to resume
            (False: delete them when it is cancelled or fails; the demo's choice).
    """

    def __init__(self, root: str | Path | None = None, *, keep_partial: bool = True) -> None:
        self.root = Path(root) if root is not None else default_cache_root()
        self.keep_partial = keep_partial
        self._reserved: dict[int, int] = {}  # bytes held for the jobs writing now (reserve())
        self._reserve_lock = threading.Lock()

    @staticmethod
    def _used(path: Path) -> None:
        """Mark a file as just used: its modification time is the cache's LRU clock (atime is often off)."""
        try:
            os.utime(path)
        except OSError:
            pass

    @property
    def file_checks_dir(self) -> Path:
        """Where what reading a folder's files found is remembered (file_checks.py)."""
        return self.root / "reads"

    def layer_path(self, key: str) -> Path:
        """Where a layer's features live (a float32 .npy file)."""
        return self.root / "features" / key[:2] / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The cached features of a layer key, memory-mapped read-only, or None (a damaged file is a miss)."""
        path = self.layer_path(key)
        if not path.is_file():
            return None
        self._used(path)
        return _open_npy(path)

    def put(self, key: str, features: np.ndarray) -> None:
        """Store a layer's features whole (atomically)."""
        arr = np.ascontiguousarray(features, dtype=np.float32)
        atomic_write(self.layer_path(key), lambda fh: np.save(fh, arr, allow_pickle=False))

    def writer(self, run_key: str, nodes: list[str], n_rows: int) -> LayerWriter:
        """The in-place writer of an extraction (resuming the finished chunks of an earlier one)."""
        return LayerWriter(self.root / "partial" / run_key, nodes, n_rows)

    def _result_path(self, key: str) -> Path:
        return self.root / "results" / key[:2] / f"{key}.npz"

    def get_result(self, key: str) -> dict[str, np.ndarray] | None:
        """A cached derived result (projection, scores, graph) as named arrays, or None."""
        path = self._result_path(key)
        if not path.is_file():
            return None
        self._used(path)
        return _load_npz(path)

    def has_result(self, key: str) -> bool:
        """Whether a derived result is stored (nothing is read)."""
        return self._result_path(key).is_file()

    def put_result(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Store a derived result (atomically)."""
        _save_npz(self._result_path(key), arrays)

    def evict(self, max_bytes: int) -> tuple[int, int]:
        """Delete the least recently used features, results and read records until the cache folder
        holds at most `max_bytes` less the room reserved for running jobs (reserve()); extractions in progress (`partial/`) and numba's compiled code are
        counted but left alone. Safe while others read:
        a memory-mapped file stays readable after its name is gone.

        A dataset's record of unreadable images is read on every run that reads its features, after
        them, so it is always more recent than they are and goes only after them.

        Returns:
            (files deleted, bytes freed).
        """
        evictable = {self.root / sub for sub in ("features", "results", "reads")}
        entries, total = [], 0  # one walk: the whole folder counts, numba's code and extractions in progress too
        for p in self.root.rglob("*") if self.root.exists() else ():
            try:
                st = p.stat()
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            total += st.st_size
            if not evictable.isdisjoint(p.parents):
                entries.append((st.st_mtime, p, st.st_size))
        removed = freed = 0
        with self._reserve_lock:
            target = max_bytes - sum(self._reserved.values())
        for _, path, size in sorted(entries):
            if total <= target:
                break
            path.unlink(missing_ok=True)
            total -= size
            removed, freed = removed + 1, freed + size
        if removed:
            log.info("cache over %.1f GB: evicted %d files (%.1f GB)", max_bytes / 1024**3, removed, freed / 1024**3)
        return removed, freed

    @contextmanager
    def lock(self, name: str, *, waiting: Callable[[], None] | None = None) -> Iterator[None]:
        """Hold the store's lock `name` across processes (a file lock; threads of one process
        exclude each other too): a second extraction of the same features waits here, then finds
        them in the store. `waiting` is called about once a second while another holder has it
        (to report progress, or raise to give up)."""
        from filelock import FileLock, Timeout

        path = self.root / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path, thread_local=False, is_singleton=False)
        while True:
            try:
                lock.acquire(timeout=1.0)
                break
            except Timeout:
                if waiting is not None:
                    waiting()
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def reserve(self, nbytes: int, max_bytes: int | None) -> Iterator[None]:
        """Hold room for a job that will write at most `nbytes`: evict until the folder plus every
        running job's reservation fits in `max_bytes`, so the folder stays under the limit while the
        jobs write (files a running job has already written count twice meanwhile: eviction errs
        on the side of room). No-op without a limit."""
        if max_bytes is None:
            yield
            return
        token = object()
        with self._reserve_lock:
            self._reserved[id(token)] = nbytes
        self.evict(max_bytes)
        try:
            yield
        finally:
            with self._reserve_lock:
                del self._reserved[id(token)]

    def clean_leftovers(self, *, partial: bool, min_age_s: float = 3600.0) -> int:
        """At start: delete the temporary files that writes of a killed process left (`*.tmp`, older
        than `min_age_s`: a live writer's file is seconds old), and with `partial` every unfinished
        extraction too (a demo does not resume; the CLI and local mode do). Returns the number of
        paths removed."""
        removed = 0
        if not self.root.exists():
            return 0
        cutoff = time.time() - min_age_s
        for p in self.root.rglob("*.tmp"):
            try:
                if p.stat().st_mtime > cutoff:
                    continue
            except OSError:
                continue
            p.unlink(missing_ok=True)
            removed += 1
        if partial and (self.root / "partial").exists():
            for p in (self.root / "partial").iterdir():
                shutil.rmtree(p, ignore_errors=True)
                removed += 1
        return removed

    def size_bytes(self) -> int:
        """Total size of the cache on disk."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else 0
