"""Layer features of a dataset: from the cache where possible, else every missing layer in one
forward pass (in this process, or on Ray with ray_backend.py), chunk by chunk, resumable; and the
record of the images that pass could not decode."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..code_identity import identities
from ..config import ExtractSpec
from ..data.datasets import ImageDataset
from ..networks import layers as layers_mod
from ..networks.sources import canonical, source_of
from ..networks.weights import ResolvedWeights
from ..progress import Cancelled, ShouldStop, StageProgress
from ..store import FeatureCache, library_versions, make_key
from .backend import FOLD_BATCHNORM, ExtractionBackend, ExtractionJob
from .local_backend import LocalBackend

log = logging.getLogger(__name__)

CHUNK = 256  # images per resumable chunk of an extraction


@dataclass
class ModelRun:
    """One model's extraction: its resolved settings and {node: features}."""

    label: str
    spec: ExtractSpec
    weights: ResolvedWeights
    profile: layers_mod.LayerProfile
    device: str
    precision: str
    store_keys: dict[str, str]  # {layer: its key in the feature store}
    nodes: dict[str, str] = field(default_factory=dict)  # {layer as the user named it: FX node it resolved to}
    features: dict[str, np.ndarray] = field(default_factory=dict)  # by the user's layer names, memory-mapped
    computed: int = 0  # images that went through the model (0: every layer came from the cache)
    unreadable: dict[int, str] = field(
        default_factory=dict
    )  # {row: why} of the dataset's images no extraction could decode

    def key(self, node: str, multi: bool) -> str:
        return f"{self.label}:{node}" if multi else node

    def without_rows(self, rows: Sequence[int]) -> None:
        """Leave out the given image rows (images that could not be decoded) from every layer's
        features (a copy in memory of the rows kept), and key the results derived from them apart."""
        drop = np.asarray(sorted(rows), dtype=np.int64)
        self.features = {n: np.delete(f, drop, axis=0) for n, f in self.features.items()}
        self.store_keys = {
            n: make_key("rows", {"layer": k, "without": drop.tolist()}) for n, k in self.store_keys.items()
        }


def _context(
    dataset: ImageDataset, spec: ExtractSpec, w: ResolvedWeights, transform: Any, device: str, precision: str
) -> dict:
    return {
        "dataset": dataset.content_hash,
        "n_images": len(dataset),
        "model": spec.model,
        "source": source_of(spec.model).name,
        "architecture": source_of(spec.model).architecture(spec.model),  # an own model's file or builder code
        "weights": w.identity,
        "preprocessing": repr(transform),
        "pooling": spec.pooling,
        "token_pooling": spec.token_pooling,
        "precision": precision,
        "graph": "batchnorm folded" if FOLD_BATCHNORM else "as traced",  # folded features differ in rounding
        "device": device,
        "libraries": library_versions(),
        "code": identities("decode", "extract"),
    }


@dataclass
class _Prepared:
    """A run about to be extracted: its ModelRun (cached layers read), the context of its keys and
    its preprocessing."""

    run: ModelRun
    ctx: dict
    transform: Any

    def missing(self) -> list[str]:
        return [n for n in self.run.nodes if n not in self.run.features]


def _prepare(
    dataset: ImageDataset,
    spec: ExtractSpec,
    cache: FeatureCache,
    label: str | None,
    backend: ExtractionBackend,
    progress: StageProgress | None = None,
) -> _Prepared:
    if progress:  # a stage of its own: the model's library imported, its graph traced (seconds, the first time)
        progress(f"preparing {label or spec.model}", 0, 1)
    spec = spec.replace(model=canonical(spec.model))
    profile = layers_mod.profile(spec.model)
    names = resolve_names(profile, spec.layers or profile.default)
    spec = spec.replace(layers=tuple(names))
    if spec.token_pooling == "cls" and not profile.class_token:  # its first token is a patch, not a summary
        log.info("%s has no class token: its token sequences are mean-pooled", spec.model)
        spec = spec.replace(token_pooling="mean")
    src = source_of(spec.model)
    weights = src.resolve_weights(spec.model, spec.weights, random_state=spec.random_state)
    transform = src.transform(spec.model, weights)
    device, precision = backend.device_and_precision(spec)
    ctx = _context(dataset, spec, weights, transform, device, precision)
    keys = {name: make_key("layer", {**ctx, "layer": node}) for name, node in names.items()}  # the node is the identity
    run = ModelRun(label or spec.model, spec, weights, profile, device, precision, keys, names)
    _read_cached(run, cache, len(dataset))
    return _Prepared(run, ctx, transform)


def _waiting(run: ModelRun, progress: StageProgress | None, should_stop: ShouldStop | None) -> Any:
    def waiting() -> None:  # another process (or job) extracts this model's layers of this dataset now
        if should_stop is not None and should_stop():
            raise Cancelled("extraction cancelled")
        if progress:
            progress(f"waiting for another extraction of {run.label}", 0, 1)

    return waiting


def _finish(p: _Prepared, cache: FeatureCache, dataset: ImageDataset, max_pixels: int) -> ModelRun:
    run = p.run
    run.features = {n: run.features[n] for n in run.nodes}  # execution order, cached or not
    _check_unreadable_covered(run, cache, dataset, max_pixels)
    return run


def extract_features(
    dataset: ImageDataset,
    spec: ExtractSpec,
    *,
    cache: FeatureCache,
    label: str | None = None,
    progress: StageProgress | None = None,
    should_stop: ShouldStop | None = None,
    max_pixels: int = 64_000_000,
    backend: ExtractionBackend | None = None,
) -> ModelRun:
    """Features of every chosen layer, from the cache where possible, else in one pass.

    Layers already cached never touch the model; the rest run together, chunk by chunk, each
    chunk stored as it finishes so an interrupted extraction resumes where it stopped.

    Args:
        dataset: the images.
        spec: model, weights, layers (empty: defaults), pooling, precision, device.
        cache: the feature store.
        label: the run's name in layer keys (default: the model name).
        progress: called with (stage, done, total).
        should_stop: polled between batches; True raises extract.Cancelled.
        max_pixels: pixel-bomb limit for decoding.
        backend: where the forward passes run (default: this process, local_backend.py; a Ray
            cluster: ray_backend.RayEngine); the features go to the same store under the same keys.

    Returns:
        A ModelRun with features for every chosen layer.
    """
    backend = backend if backend is not None else LocalBackend()
    p = _prepare(dataset, spec, cache, label, backend, progress)
    run = p.run
    if p.missing():
        with cache.lock(make_key("extraction", p.ctx), waiting=_waiting(run, progress, should_stop)):
            _read_cached(run, cache, len(dataset))  # what an extraction that held the lock meanwhile stored
            missing = p.missing()
            if missing:
                _extract_missing(
                    dataset,
                    run,
                    missing,
                    p.ctx,
                    cache,
                    backend,
                    p.transform,
                    progress=progress,
                    should_stop=should_stop,
                    max_pixels=max_pixels,
                )
    else:
        log.info("%s: all %d layers from the cache", run.label, len(run.nodes))
    return _finish(p, cache, dataset, max_pixels)


def extract_sweep(
    dataset: ImageDataset,
    specs: Sequence[ExtractSpec],
    labels: Sequence[str],
    *,
    cache: FeatureCache,
    progress: StageProgress | None = None,
    should_stop: ShouldStop | None = None,
    max_pixels: int = 64_000_000,
    backend: ExtractionBackend | None = None,
) -> list[ModelRun]:
    """Several models' features of one dataset, as extract_features gives each, with every image
    decoded once for all of them: the models whose layers are missing over the same chunks run in
    one pass (LocalBackend.extract_sweep), each image resized from the one decoded picture for each
    model's preprocessing. A backend without a sweep (Ray) runs the models one after another.

    Args:
        dataset: the images.
        specs: one ExtractSpec per run.
        labels: the runs' names.
        cache, progress, should_stop, max_pixels, backend: as extract_features.

    Returns:
        One ModelRun per spec, in order.
    """
    backend = backend if backend is not None else LocalBackend()
    sweep = getattr(backend, "extract_sweep", None)
    if len(specs) < 2 or sweep is None:
        return [
            extract_features(
                dataset,
                s,
                cache=cache,
                label=lab,
                progress=progress,
                should_stop=should_stop,
                max_pixels=max_pixels,
                backend=backend,
            )
            for s, lab in zip(specs, labels)
        ]
    prepared = [_prepare(dataset, s, cache, lab, backend, progress) for s, lab in zip(specs, labels)]
    pending = [p for p in prepared if p.missing()]
    with contextlib.ExitStack() as locks:
        for p in sorted(pending, key=lambda p: make_key("extraction", p.ctx)):  # one order: no two sweeps deadlock
            locks.enter_context(
                cache.lock(make_key("extraction", p.ctx), waiting=_waiting(p.run, progress, should_stop))
            )
        started = []
        for p in pending:
            _read_cached(p.run, cache, len(dataset))  # what an extraction that held a lock meanwhile stored
            if p.missing():
                started.append((p, *_start_missing(dataset, p.run, p.missing(), p.ctx, cache, p.transform, max_pixels)))
        groups: dict[tuple, list] = {}
        for item in started:
            if item[3] is not None:  # a job: chunks to run
                groups.setdefault(tuple(item[3].todo), []).append(item)
        for group in groups.values():
            try:
                if len(group) == 1:
                    p, _, writer, job = group[0]
                    p.run.computed += backend.extract(dataset, job, writer, progress=progress, should_stop=should_stop)
                else:
                    computed = sweep(
                        dataset,
                        [g[3] for g in group],
                        [g[2] for g in group],
                        progress=progress,
                        should_stop=should_stop,
                    )
                    for g in group:
                        g[0].run.computed += computed
            except BaseException:
                if not cache.keep_partial:
                    for g in group:
                        g[2].discard()
                raise
        for p, missing, writer, _job in started:
            _end_missing(dataset, p.run, missing, cache, writer, max_pixels)
    return [_finish(p, cache, dataset, max_pixels) for p in prepared]


def _read_cached(run: ModelRun, cache: FeatureCache, n_rows: int) -> None:
    for name, key in run.store_keys.items():
        if name not in run.features:
            got = cache.get(key)
            if got is not None and got.shape[0] == n_rows:
                run.features[name] = got


def _start_missing(
    dataset: ImageDataset,
    run: ModelRun,
    missing: list[str],
    ctx: dict,
    cache: FeatureCache,
    transform: Any,
    max_pixels: int,
) -> tuple[list[str], Any, ExtractionJob | None]:
    """(missing, the writer of their features, the job of the chunks still to run, None when none is)."""
    run_key = make_key("run", {**ctx, "layers": missing, "chunk": CHUNK})
    total = len(dataset)
    bounds = [(s, min(s + CHUNK, total)) for s in range(0, total, CHUNK)]
    writer = cache.writer(run_key, missing, total)
    todo = [(s, e) for s, e in bounds if s not in writer.done]
    if not todo:
        return missing, writer, None
    job = ExtractionJob(
        run.label,
        run.spec,
        run.weights,
        run.device,
        run.precision,
        [run.nodes[n] for n in missing],
        todo,
        CHUNK,
        transform,
        max_pixels,
    )
    return missing, writer, job


def _end_missing(
    dataset: ImageDataset, run: ModelRun, missing: list[str], cache: FeatureCache, writer: Any, max_pixels: int
) -> None:
    """Record the undecodable images, move the finished features into place and read them back."""
    # the record first: a crash between the two leaves it naming more layers than exist, never fewer
    _record_unreadable(cache, dataset, max_pixels, writer.unreadable, [run.store_keys[n] for n in missing])
    writer.finish({n: cache.layer_path(run.store_keys[n]) for n in missing})
    for n in missing:
        got = cache.get(run.store_keys[n])
        if got is None:
            raise RuntimeError(f"the features of {n} could not be read back from {cache.layer_path(run.store_keys[n])}")
        run.features[n] = got


def _extract_missing(
    dataset: ImageDataset,
    run: ModelRun,
    missing: list[str],
    ctx: dict,
    cache: FeatureCache,
    backend: ExtractionBackend,
    transform: Any,
    *,
    progress: StageProgress | None,
    should_stop: ShouldStop | None,
    max_pixels: int,
) -> None:
    """Extract the `missing` layers in one pass, resuming finished chunks, into the store (under
    the store's lock for this model and dataset, held by the caller)."""
    missing, writer, job = _start_missing(dataset, run, missing, ctx, cache, transform, max_pixels)
    if job is not None:
        try:
            run.computed += backend.extract(dataset, job, writer, progress=progress, should_stop=should_stop)
        except BaseException:
            if not cache.keep_partial:
                writer.discard()
            raise
    elif progress:
        progress(f"extracting {run.label}", len(dataset), len(dataset))
    _end_missing(dataset, run, missing, cache, writer, max_pixels)


def resolve_names(profile: layers_mod.LayerProfile, requested: Sequence[str]) -> dict[str, str]:
    """{layer as asked for: FX node}, in execution order; a name that resolves to a node already
    asked for (by another name) is dropped. `features.14` stays `features.14` in every output,
    though it is extracted at its output node `features.14.conv.3`."""
    nodes = profile.resolve(tuple(requested))
    order = {n: i for i, n in enumerate(profile.nodes)}
    out: dict[str, str] = {}
    for name, node in sorted(zip(requested, nodes), key=lambda p: order[p[1]]):
        if node not in out.values():
            out[name] = node
    return out


def _unreadable_key(dataset: ImageDataset, max_pixels: int) -> str:
    return make_key(
        "unreadable", {"dataset": dataset.content_hash, "max_pixels": max_pixels, "code": identities("decode")}
    )


def _read_record(cache: FeatureCache, dataset: ImageDataset, max_pixels: int) -> tuple[dict[int, str], set[str]]:
    got = cache.get_result(_unreadable_key(dataset, max_pixels))
    if got is None:
        return {}, set()
    return {int(r): str(w) for r, w in zip(got["rows"], got["reasons"])}, set(
        got.get("layers", np.array([], dtype=str)).tolist()
    )


def _record_unreadable(
    cache: FeatureCache, dataset: ImageDataset, max_pixels: int, found: dict[int, str], layers: list[str]
) -> None:
    """Add the images an extraction could not decode, and the layer keys whose features it
    covers, to the dataset's record (written even when empty: a run whose features are cached
    finds the record beside them)."""
    known, covered = _read_record(cache, dataset, max_pixels)
    if not set(found) - set(known) and not set(layers) - covered:
        return
    merged = sorted((known | found).items())
    cache.put_result(
        _unreadable_key(dataset, max_pixels),
        {
            "rows": np.array([r for r, _ in merged], dtype=np.int64),
            "reasons": np.array([w for _, w in merged], dtype=str),
            "layers": np.array(sorted(covered | set(layers)), dtype=str),
        },
    )


def _check_unreadable_covered(run: ModelRun, cache: FeatureCache, dataset: ImageDataset, max_pixels: int) -> None:
    """Set `run.unreadable` from the dataset's record, making the record cover every layer of the
    run first: a layer it does not name (the record was lost, or evicted) is read for its blank
    rows, stored as NaN, and the record rebuilt from them."""
    known, covered = _read_record(cache, dataset, max_pixels)
    uncovered = [name for name, key in run.store_keys.items() if key not in covered]
    if uncovered:
        blank = {
            int(r): "could not be decoded" for n in uncovered for r in np.flatnonzero(np.isnan(run.features[n][:, 0]))
        }
        log.info(
            "%s: the record of undecodable images did not cover %d layers; %d found in their features",
            run.label,
            len(uncovered),
            len(blank),
        )
        _record_unreadable(cache, dataset, max_pixels, blank, [run.store_keys[n] for n in uncovered])
        known = {**blank, **known}
    run.unreadable = known


def unreadable_images(cache: FeatureCache, dataset: ImageDataset, max_pixels: int) -> dict[int, str]:
    """{row: reason} of the dataset's images that passed the header check but could not be decoded
    by any extraction so far (their rows in the features are NaN)."""
    return _read_record(cache, dataset, max_pixels)[0]
