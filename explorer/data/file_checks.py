"""What reading a folder's files found (sha256, header check), remembered across runs.

Reopening a folder of 100,000 unchanged photos should not read 1 GB again: a file whose size,
modification time, status-change time and inode are those recorded keeps its recorded hash and
check result (the heuristic of git's index and rsync). Any write to a file changes its ctime, so a
changed file is read again; a damaged or foreign index file is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ..code_identity import stage_identity
from ..fsutil import atomic_write_text

VERSION = 1  # the layout of an index file; the code that checks a file is in its name too (decode stage)


class FileCheckCache:
    """The remembered reads of one folder under one set of limits.

    Args:
        folder: where index files live (one per dataset root and limits).
        root: the dataset's root folder.
        tag: what else shapes a check's result (the limits), part of the index's name.
    """

    def __init__(self, folder: Path, root: Path, tag: str) -> None:
        name = hashlib.sha256(
            json.dumps([str(root.resolve()), tag, VERSION, stage_identity("decode")]).encode()
        ).hexdigest()
        self.path = folder / f"{name}.json"
        self.root = root.resolve()
        self.entries: dict[str, list] = {}
        self.changed = False
        try:
            got = json.loads(self.path.read_text())
            if isinstance(got, dict) and got.get("version") == VERSION and isinstance(got.get("files"), dict):
                self.entries = got["files"]
        except (OSError, ValueError):
            pass

    @staticmethod
    def _stamp(st: os.stat_result) -> list[int]:
        return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]

    def lookup(self, path: Path) -> tuple[str, str | None] | None:
        """(sha256, reason it was refused or None) as recorded for this unchanged file, else None."""
        rel = str(path)
        got = self.entries.get(rel)
        if got is None:
            return None
        try:
            stamp = self._stamp(os.stat(path))
        except OSError:
            return None
        return (got[4], got[5]) if got[:4] == stamp else None

    def record(self, path: Path, sha256: str, reason: str | None) -> None:
        """Remember what reading `path` found (its stamp taken now; a file that vanished is skipped)."""
        try:
            stamp = self._stamp(os.stat(path))
        except OSError:
            return
        self.entries[str(path)] = [*stamp, sha256, reason]
        self.changed = True

    def save(self) -> None:
        """Write the index (atomically) if anything was recorded."""
        if self.changed:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(self.path, json.dumps({"version": VERSION, "files": self.entries}))
            self.changed = False
