"""Content-addressed on-disk feature store: complete keys, atomic npz writes, resumable chunks."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .fsutil import atomic_write, default_cache_root

log = logging.getLogger(__name__)

SCHEMA = 1


def make_key(kind: str, parts: dict[str, Any]) -> str:
    """sha256 of a versioned, canonical JSON of every input that changes a result.

    Args:
        kind: what is keyed (`layer`, `chunk`, ...): part of the key.
        parts: JSON-serialisable inputs.
    """
    payload = {"schema": SCHEMA, "kind": kind, "explorer": __version__, **parts}
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
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("numpy", "scipy", "scikit-learn", "umap-learn", "pynndescent", "numba", "faiss-cpu"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "absent"
    return out


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
    except (OSError, ValueError, EOFError) as exc:  # a damaged entry is a miss, and is removed
        log.warning("dropping unreadable cache file %s: %s", path, exc)
        path.unlink(missing_ok=True)
        return None


class FeatureCache:
    """Per-layer feature arrays and in-progress extraction chunks under one root.

    Args:
        root: cache folder (default: `EXPLORER_CACHE_DIR` or the user cache folder).
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root) if root is not None else default_cache_root()

    def _layer_path(self, key: str) -> Path:
        return self.root / "features" / key[:2] / f"{key}.npz"

    def _chunk_dir(self, run_key: str) -> Path:
        return self.root / "partial" / run_key

    def get(self, key: str) -> np.ndarray | None:
        """The cached array for a layer key, or None."""
        path = self._layer_path(key)
        if not path.is_file():
            return None
        got = _load_npz(path)
        return None if got is None else got["features"]

    def put(self, key: str, features: np.ndarray) -> None:
        """Store a layer's features (atomically)."""
        _save_npz(self._layer_path(key), {"features": np.ascontiguousarray(features, dtype=np.float32)})

    def _result_path(self, key: str) -> Path:
        return self.root / "results" / key[:2] / f"{key}.npz"

    def get_result(self, key: str) -> dict[str, np.ndarray] | None:
        """A cached derived result (projection, scores) as named arrays, or None."""
        path = self._result_path(key)
        return _load_npz(path) if path.is_file() else None

    def put_result(self, key: str, arrays: dict[str, np.ndarray]) -> None:
        """Store a derived result (atomically)."""
        _save_npz(self._result_path(key), arrays)

    def get_chunk(self, run_key: str, start: int, stop: int) -> dict[str, np.ndarray] | None:
        """A finished chunk [start, stop) of an interrupted extraction, or None."""
        path = self._chunk_dir(run_key) / f"{start:08d}-{stop:08d}.npz"
        return _load_npz(path) if path.is_file() else None

    def put_chunk(self, run_key: str, start: int, stop: int, feats: dict[str, np.ndarray]) -> None:
        """Store a finished chunk so an interrupted extraction resumes after it."""
        _save_npz(self._chunk_dir(run_key) / f"{start:08d}-{stop:08d}.npz", feats)

    def drop_chunks(self, run_key: str) -> None:
        """Remove an extraction's chunks once its layers are stored whole."""
        shutil.rmtree(self._chunk_dir(run_key), ignore_errors=True)

    def size_bytes(self) -> int:
        """Total size of the cache on disk."""
        return sum(p.stat().st_size for p in self.root.rglob("*") if p.is_file()) if self.root.exists() else 0
