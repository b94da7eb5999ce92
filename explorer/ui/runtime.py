"""The dashboard's process-wide parts, made in one `start()`: its mode, the feature cache (cleaned
of what killed processes left), the job queue and the background threads. Importing a ui module
makes none of them, deletes nothing and reads no environment variable; the server's start-up hook
(server_app.lifespan) calls `start()`, and a page run without it (an AppTest) starts it on first use.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ..config import AppMode, Settings, app_mode, settings
from ..networks import weights
from ..store import FeatureCache
from . import job_process
from .jobs import JobQueue

log = logging.getLogger(__name__)

UPLOADS = "explorer-uploads"  # the uploads' folder, in the temp folder
UNPACKED = "explorer-upload-*"  # zips unpacked by datasets.load_dataset, in the temp folder
STALE_S = 3600.0  # an upload folder untouched this long belongs to no running job (jobs last minutes)


@dataclass
class Runtime:
    """What the dashboard's process shares between its sessions.

    Attributes:
        mode: local or demo (config.AppMode), from EXPLORER_MODE.
        settings: the rest of the environment's settings.
        cache: the feature cache, with the mode's size limit and partial-extraction policy.
        queue: the bounded job queue every analysis runs on.
        catalog_pool: one thread listing every source's models, for the picker.
        layer_pool: one thread reading models' layers, for the picker (never a page's thread).
    """

    mode: AppMode
    settings: Settings
    cache: FeatureCache
    queue: JobQueue
    catalog_pool: ThreadPoolExecutor
    layer_pool: ThreadPoolExecutor


_lock = threading.Lock()
_current: Runtime | None = None


def start(mode: AppMode | None = None) -> Runtime:
    """Make the runtime once per process (later calls return it): read the mode and settings, forbid
    weight downloads in demo mode, clean the cache of leftovers and stale uploads and bring it under
    its limit, and make the queue and threads.

    Raises:
        ValueError: an unknown mode or a setting that is not a number, before anyone is served.
    """
    global _current
    with _lock:
        if _current is None:
            _current = _build(mode or app_mode(server_address=listening_address()), settings())
        return _current


def listening_address() -> str:
    """The address Streamlit's server listens on (server.address: .streamlit/config.toml, a flag or
    STREAMLIT_SERVER_ADDRESS); "" for every interface."""
    from streamlit import config

    return str(config.get_option("server.address") or "")


def current() -> Runtime:
    """The started runtime (started now if it was not: a page run without the server's hook)."""
    return _current if _current is not None else start()


def upload_root() -> Path:
    """Where uploads are written, one folder each (in the temp folder, TMPDIR's)."""
    return Path(tempfile.gettempdir()) / UPLOADS


def _build(mode: AppMode, env: Settings) -> Runtime:

    (log.warning if mode.name == "demo" or "other machines" in mode.why else log.info)(
        "%s mode: %s", mode.name, mode.why
    )
    if not mode.downloads:
        weights.forbid_downloads()
    cache = FeatureCache(keep_partial=mode.keep_partial)
    _clean(cache, mode)
    queue = JobQueue(
        workers=env.workers,
        max_pending=env.max_pending,
        threads_per_worker=max(1, (os.cpu_count() or 1) // env.workers),
        ttl=env.result_ttl,
        max_seconds=mode.max_job_seconds,
        max_per_client=mode.max_jobs_per_client,
        max_job_bytes=mode.max_job_bytes,
    )
    if mode.isolated_jobs:  # each analysis in a process of its own (job_process.py): its forkserver's imports now
        threading.Thread(target=job_process.start_forkserver, name="explorer-forkserver", daemon=True).start()
    return Runtime(
        mode,
        env,
        cache,
        queue,
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="explorer-catalog"),
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="explorer-layer-lister"),
    )


def _clean(cache: FeatureCache, mode: AppMode) -> None:
    """Delete what killed processes left (temporary files, a demo's unfinished extractions, uploads
    nobody will collect), and bring the cache under its limit."""
    removed = cache.clean_leftovers(partial=not mode.keep_partial)
    cutoff = time.time() - STALE_S
    stale = [
        p
        for p in [*upload_root().glob("upload-*"), *Path(tempfile.gettempdir()).glob(UNPACKED)]
        if p.is_dir() and p.stat().st_mtime < cutoff
    ]
    for p in stale:
        shutil.rmtree(p, ignore_errors=True)
    if mode.cache_max_bytes is not None:
        cache.evict(mode.cache_max_bytes)
    log.info("start-up: %d leftover cache files and %d stale upload folders removed", removed, len(stale))
