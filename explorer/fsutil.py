"""Filesystem helpers: the one atomic-write routine and the user cache root."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from .config import settings

FILE_MODE = 0o644  # cache files: readable by other users of the machine, written by this one


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file so readers never see it half-written.

    Args:
        path: destination.
        write: called with a binary file object opened on a temporary file in the same folder.

    Returns:
        The destination path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)  # mkstemp makes 0600 files; an explicit mode, never the umask juggled
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_new_file(path: str | os.PathLike, data: bytes, mode: int = 0o600) -> Path:
    """Create `path` with `data` and this mode; an existing file is never overwritten.

    Raises:
        FileExistsError: `path` exists already.
    """
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write `data` to `path`."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write UTF-8 `text` to `path`."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def default_cache_root() -> Path:
    """The cache root: `EXPLORER_CACHE_DIR`, else the platform's user cache folder (config.settings)."""

    got = settings()
    if got.cache_dir:
        return Path(got.cache_dir).expanduser()
    return Path(got.user_cache) / "bottleneck-explorer"
