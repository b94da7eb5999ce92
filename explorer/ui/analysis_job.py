"""One analysis of the dashboard as a job: the dataset read and checked, every layer extracted, scored
and projected (comparison.compare), within the mode's budget and cache limit.

It is a plain picklable object that imports no Streamlit, so the demo can run it in a process of its
own (job_process.py: killed at its deadline, its memory bounded); locally it runs on the server's
worker thread with the server's cache and the shared sample. Everything it needs is decided on the
page first (the specs, from the sidebar's inputs), and it returns the Comparison.
"""

from __future__ import annotations

import functools
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import comparison
from ..config import AppMode, DataSpec, ExtractSpec, MetricSpec, ProjectionSpec
from ..data.datasets import ImageDataset, load_dataset
from ..store import FeatureCache
from . import budget


@functools.lru_cache(maxsize=8)
def shared_sample(source: str, max_images: int | None, limits: Any, file_checks_dir: str | None) -> ImageDataset:
    """Bundled samples never change: checked once per process, shared by every visitor of it."""
    return load_dataset(DataSpec(source=source, max_images=max_images), limits=limits, thumbnails=False,
                        file_checks_dir=Path(file_checks_dir) if file_checks_dir else None)  # fmt: skip


_TEMP_PATH = re.compile(re.escape(tempfile.gettempdir().rstrip("/")) + r"/[^\s'\"),;]+")


def without_server_paths(message: str) -> str:
    """A bad-input sentence about an upload, told to its visitor without this server's folders: each
    path under the temp folder (where uploads are written and unpacked) said by its file name."""
    return _TEMP_PATH.sub(lambda m: Path(m.group(0)).name or "your upload", message)


@dataclass
class AnalysisJob:
    """An analysis to run: `data` read from `source` (an upload's written path, a sample, a folder),
    `specs` extracted and analysed under `mode`'s limits, into the cache at `cache_root`.

    Attributes:
        fresh_upload: `source` was written for this job and is deleted after it: its thumbnails are
            made while it is read, and its reads are not remembered.
        cache: the server's own cache object when the job runs on its thread (reservations shared
            between jobs); in a process of its own, one on the same folder is made there.
    """

    source: str
    data: DataSpec
    specs: tuple[ExtractSpec, ...]
    projection: ProjectionSpec
    metric: MetricSpec
    mode: AppMode
    cache_root: str
    fresh_upload: bool
    cache: FeatureCache | None = field(default=None, repr=False, compare=False)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["cache"] = None  # a process of its own makes its own (locks do not cross processes)
        return state

    def __call__(self, job: Any) -> comparison.Comparison:
        """Run it; `job` takes progress and says when to stop (jobs.Job, or job_process's stand-in)."""
        mode = self.mode
        cache = self.cache if self.cache is not None else FeatureCache(self.cache_root, keep_partial=mode.keep_partial)
        job.progress("checking images", 0, 1)
        if self.source.startswith("sample:"):
            ds = shared_sample(self.source, self.data.max_images, mode.limits, str(cache.file_checks_dir))
        else:
            try:
                ds = load_dataset(self.data, limits=mode.limits,
                                  server_paths=mode.server_paths,  # a stranger's table names only its own files
                                  progress=lambda d, t: job.progress("reading images", d, t),
                                  thumbnails=self.fresh_upload,  # an upload is deleted after the job: its thumbnails now
                                  file_checks_dir=None if self.fresh_upload else cache.file_checks_dir)  # fmt: skip
            except ValueError as exc:
                if not self.fresh_upload:
                    raise
                raise ValueError(without_server_paths(str(exc))) from None
        try:
            budget.check(list(self.specs), len(ds), mode, len(ds.classes))  # with the exact number of images
            room = budget.cache_bytes(list(self.specs), len(ds), len(ds.classes)) if mode.cache_max_bytes else 0
            with cache.reserve(room, mode.cache_max_bytes):  # the cache stays under its limit while this writes
                comp = comparison.compare(ds, list(self.specs), projection=self.projection, metric=self.metric,
                                          progress=job.progress, cache=cache, should_stop=job.should_stop,
                                          max_pixels=mode.limits.max_pixels)  # fmt: skip
            if not self.fresh_upload:  # a zip opened by its path: its images are read while the result is shown
                ds.keep_files_while(comp)
        finally:
            if not self.source.startswith("sample:"):  # samples are shared; an upload's copy goes at once
                ds.close()
            if mode.cache_max_bytes is not None:
                cache.evict(mode.cache_max_bytes)
        return comp
