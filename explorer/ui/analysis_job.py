"""One analysis of the dashboard as a job: the request run on the one run path (run.py) under the
mode's limits, budget and cache limit.

It is a plain picklable object that imports no Streamlit, so the demo can run it in a process of its
own (job_process.py: killed at its deadline, its memory bounded); locally it runs on the server's
worker thread with the server's cache and the shared sample.
"""

from __future__ import annotations

import functools
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import AppMode, DataSpec, ExtractSpec
from ..data.datasets import ImageDataset
from ..data.source_table import kind_name
from ..record import Comparison
from ..request import AnalysisRequest
from ..run import RunSettings, read_data, run_analysis
from ..store import FeatureCache
from . import budget


@functools.lru_cache(maxsize=8)
def shared_sample(source: str, max_images: int | None, limits: Any) -> ImageDataset:
    """Bundled samples never change: checked once per process, shared by every visitor of it."""
    return read_data(DataSpec(source=source, max_images=max_images), settings=RunSettings(limits=limits))


_TEMP_PATH = re.compile(re.escape(tempfile.gettempdir().rstrip("/")) + r"/[^\s'\"),;]+")


def without_server_paths(message: str) -> str:
    """A bad-input sentence about an upload, told to its visitor without this server's folders: each
    path under the temp folder (where uploads are written and unpacked) said by its file name."""
    return _TEMP_PATH.sub(lambda m: Path(m.group(0)).name or "your upload", message)


@dataclass
class AnalysisJob:
    """An analysis to run under `mode`'s limits, into the cache at `cache_root`.

    Attributes:
        request: what to analyse; its data is an upload's written path, a sample or a folder.
        fresh_upload: the data was written for this job and is deleted after it: its thumbnails are
            made while it is read, and its reads are not remembered.
        cache: the server's own cache object when the job runs on its thread (reservations shared
            between jobs); in a process of its own, one on the same folder is made there.
    """

    request: AnalysisRequest
    mode: AppMode
    cache_root: str
    fresh_upload: bool
    cache: FeatureCache | None = field(default=None, repr=False, compare=False)

    @property
    def specs(self) -> list[ExtractSpec]:
        return self.request.specs()[1]

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["cache"] = None  # a process of its own makes its own (locks do not cross processes)
        return state

    def __call__(self, job: Any) -> Comparison:
        """Run it; `job` takes progress and says when to stop (jobs.Job, or job_process's stand-in)."""
        mode = self.mode
        cache = self.cache if self.cache is not None else FeatureCache(self.cache_root, keep_partial=mode.keep_partial)
        job.progress("checking images", 0, 1)
        sample = kind_name(self.request.data) == "sample"
        settings = RunSettings(
            limits=mode.limits,
            server_paths=mode.server_paths,  # a stranger's table names only its own files
            thumbnails=self.fresh_upload,  # an upload is deleted after the job: its thumbnails now
            remember_reads=not self.fresh_upload,
            keep_files=not self.fresh_upload,
            cache_max_bytes=mode.cache_max_bytes,
        )
        shared = shared_sample(self.request.data, self.request.max_images, mode.limits) if sample else None
        specs = self.specs

        def admit(ds: ImageDataset) -> int:
            """The mode's budget, with the exact number of images; the cache room the run needs."""
            budget.check(specs, len(ds), mode, len(ds.classes))
            return budget.cache_bytes(specs, len(ds), len(ds.classes)) if mode.cache_max_bytes else 0

        try:
            return run_analysis(
                self.request,
                cache=cache,
                settings=settings,
                dataset=shared,
                progress=job.progress,
                should_stop=job.should_stop,
                admit=admit,
                # the first panels as soon as they are ready, where the job can show them (on the
                # server's thread; a job in a process of its own returns its whole result only)
                first_view=getattr(job, "show_early", None),
            )
        except ValueError as exc:
            if not self.fresh_upload:
                raise
            raise ValueError(without_server_paths(str(exc))) from None
