"""The one run path: an analysis request in, a Comparison out.

The command line (`compare`), the Python API (`explorer.compare`) and the dashboard's jobs all call
`run_analysis`. It starts the engine, reads the data under the limits, runs the analysis
(comparison.compare) and owns the cleanup: the engine stopped, the data closed or kept while the
result lives, the cache brought back under its limit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import ExitStack, nullcontext
from dataclasses import dataclass, field
from typing import Any

from . import comparison
from .config import DataSpec, Limits
from .data import in_memory
from .data.datasets import ImageDataset, load_dataset
from .extraction.layer_features import ModelRun
from .extraction.ray_backend import RayEngine
from .networks import memory_source
from .networks.memory_source import InMemoryModel
from .progress import ShouldStop, StageProgress
from .record import Comparison
from .request import AnalysisRequest
from .store import FeatureCache

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


@dataclass(frozen=True, kw_only=True)
class RunSettings:
    """How an analysis runs, apart from what it analyses (the request).

    Attributes:
        limits: what reading the data may cost: files, bytes, pixels.
        engine: `local` (this process) or `ray` (a Ray cluster extracts, and lists shards, parquet
            and tables of paths).
        ray_address: with `ray`, the cluster (`HOST:6379`, `ray://HOST:10001`, `auto`); None starts
            a local instance for the run.
        ray_actors: with `ray`, the model-holding actors (None: one per GPU, else per 4 CPUs).
        leaderboard: also score the cuts (LogME, compression curves, parameters, GFLOPs).
        latency: with `leaderboard`, time the network up to each layer here.
        server_paths: a table of paths may name files anywhere on this machine (the demo: False).
        remember_reads: what reading a folder's files found is kept in the cache's file checks.
        thumbnails: the thumbnails are made while the images are read (data deleted after the run).
        keep_files: a zip's unpacked images stay while the result lives (views read them); False:
            they go when the run ends.
        cache_max_bytes: the cache's limit: room is reserved before extraction, and the cache is
            brought back under it after the run (None: no limit).
    """

    limits: Limits = field(default_factory=Limits)
    engine: str = "local"
    ray_address: str | None = None
    ray_actors: int | None = None
    leaderboard: bool = True
    # CKA, CKNNA, mutual kNN, RSA and Procrustes against permutation nulls (similarity.csv): True, False,
    # or None for "auto" (up to alignment.AUTO_MAX_LAYERS layers; the command line's and the API's default)
    similarity_nulls: bool | None = False
    latency: bool = True
    server_paths: bool = True
    remember_reads: bool = True
    thumbnails: bool = False
    keep_files: bool = True
    cache_max_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine={self.engine!r}: choose 'local' or 'ray'")
        if self.engine == "local" and (self.ray_address is not None or self.ray_actors is not None):
            raise ValueError("ray_address and ray_actors are for the ray engine")


def start_engine(settings: RunSettings) -> Any:
    """The extraction backend the settings name, started (None: this process). Started before the
    images are read, so an unreachable cluster is said at once."""
    if settings.engine == "local":
        return None

    engine = RayEngine(address=settings.ray_address, actors=settings.ray_actors)
    engine.start()
    return engine


def read_data(
    spec: DataSpec,
    *,
    settings: RunSettings,
    cache: FeatureCache | None = None,
    progress: StageProgress | None = None,
    engine: Any = None,
    data: Any = None,
    labels: Sequence[Any] | None = None,
) -> ImageDataset:
    """The dataset to analyse, read and checked under the settings' limits.

    Args:
        spec: the source and sample (unused for `data`, but for its sample and columns).
        settings: the limits, and what reading keeps (thumbnails, file checks, server paths).
        cache: where a folder's file checks are remembered.
        progress: told (stage, done, total).
        engine: a started Ray engine: shards, parquet and tables of paths are listed on it.
        data: a Python object of images (data/in_memory.py) instead of `spec.source`.
        labels: with `data`, one label per image.
    """

    def told(stage: str) -> Callable[[int, int], None] | None:
        return None if progress is None else lambda done, total: progress(stage, done, total)

    if data is not None:  # the table's in-memory entry: objects, read by data/in_memory.py
        if not in_memory.is_in_memory(data):
            raise TypeError(
                f"data of type {type(data).__name__} cannot be read: give a path, or images in memory "
                "(a DataFrame of paths, a Hugging Face or torch Dataset, a list of images)"
            )
        return in_memory.load(
            data,
            labels,
            label_column=spec.label_column,
            image_column=spec.image_column,
            max_images=spec.max_images,
            random_state=spec.random_state,
            limits=settings.limits,
            progress=told("reading images"),
            thumbnails=settings.thumbnails,
        )
    if labels is not None:
        raise ValueError("labels= is for images given in memory; a folder's labels are its class folders or labels.csv")
    if engine is not None:
        listed = engine.load_dataset(spec, limits=settings.limits, progress=told("reading images on Ray"))
        if listed is not None:
            return listed
    checks = (
        cache.file_checks_dir if cache is not None and settings.remember_reads and not settings.thumbnails else None
    )
    return load_dataset(
        spec,
        limits=settings.limits,
        progress=told("reading images"),
        thumbnails=settings.thumbnails,
        file_checks_dir=checks,
        server_paths=settings.server_paths,
    )


def run_analysis(
    request: AnalysisRequest,
    *,
    cache: FeatureCache | None = None,
    settings: RunSettings | None = None,
    dataset: ImageDataset | None = None,
    data: Any = None,
    labels: Sequence[Any] | None = None,
    models: Sequence[InMemoryModel] = (),
    run_labels: Sequence[str | None] | None = None,
    progress: StageProgress | None = None,
    should_stop: ShouldStop | None = None,
    admit: Callable[[ImageDataset], int] | None = None,
    first_view: Callable[[Comparison], None] | None = None,
) -> Comparison:
    """Run the analysis `request` names and return what it found.

    Args:
        request: what to analyse: the data, the models and layers, the projection, the metrics.
        cache: the feature store (default: FeatureCache()).
        settings: how to run it (default: RunSettings(), local and unlimited but for the default limits).
        dataset: images already read: the caller's, never closed here (a shared sample).
        data: images as a Python object (data/in_memory.py) instead of the request's source.
        labels: with `data`, one label per image.
        models: the request's models given as Python objects (networks/memory_source.name_model),
            readable by their names while this run lasts.
        run_labels: each run's name in the tables (None: from the model names).
        progress: told (stage, done, total) through every stage.
        should_stop: polled between batches and layers; the run stops with progress.Cancelled.
        admit: called with the dataset read, before extraction: raises ValueError to refuse it
            (a budget), else returns the cache bytes to reserve for the run.
        first_view: called once, on this thread, with what the first panels read (graphs, scores,
            projections, CKA) before the rest is computed: a Comparison whose `pending` names what
            it lacks (comparison.analyse; the dashboard shows it while the rest runs).

    Returns:
        A Comparison.
    """
    settings = settings or RunSettings()
    cache = cache or FeatureCache()
    spec, specs, projection, metric = request.specs()
    with ExitStack() as cleanup:
        cleanup.enter_context(memory_source.using(models))
        engine = start_engine(settings)
        if engine is not None:
            cleanup.callback(engine.stop)
        if settings.cache_max_bytes is not None:
            cleanup.callback(cache.evict, settings.cache_max_bytes)
        owned = dataset is None
        if owned:
            dataset = read_data(
                spec, settings=settings, cache=cache, progress=progress, engine=engine, data=data, labels=labels
            )
            cleanup.callback(dataset.close)  # a no-op once its files are kept with the result
        room = admit(dataset) if admit is not None else 0
        reserved = cache.reserve(room, settings.cache_max_bytes) if settings.cache_max_bytes else nullcontext()
        with reserved:  # the cache stays under its limit while this run writes
            comp = comparison.compare(
                dataset,
                specs,
                projection=projection,
                metric=metric,
                cache=cache,
                progress=progress,
                should_stop=should_stop,
                max_pixels=settings.limits.max_pixels,
                backend=engine,
                leaderboard=settings.leaderboard,
                latency=settings.latency,
                labels=run_labels,
                request=request,
                similarity_nulls=settings.similarity_nulls,
                first_view=first_view,
            )
        if owned and settings.keep_files:  # a zip's images: read by the views for as long as the result is shown
            dataset.keep_files_while(comp.dataset)
    return comp


def run_on_features(
    request: AnalysisRequest,
    dataset: ImageDataset,
    runs: Sequence[ModelRun],
    *,
    cache: FeatureCache | None = None,
    progress: StageProgress | None = None,
) -> Comparison:
    """The analysis of features computed elsewhere (extraction/given_features.py): nothing to read or
    extract, and no network to cost, so no leaderboard."""
    _, _, projection, metric = request.specs()
    return comparison.analyse(
        dataset,
        runs,
        projection=projection,
        metric=metric,
        cache=cache or FeatureCache(),
        progress=progress,
        leaderboard=False,
        request=request,
    )
