"""Layer features of a dataset: from the cache where possible, else every missing layer in one
forward pass (in this process, or on Ray with distributed.py), chunk by chunk, resumable; and the
record of the images that pass could not decode."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from . import layers as layers_mod
from . import models
from .cache import FeatureCache, LayerWriter, library_versions, make_key
from .config import ExtractSpec
from .datasets import ImageDataset
from .extract import BatchDecoder, FeatureExtractor, resolve_device, resolve_precision, run_batches, spans
from .weights import ResolvedWeights

if TYPE_CHECKING:
    from .distributed import RayEngine

log = logging.getLogger(__name__)

CHUNK = 256  # images per resumable chunk of an extraction
FOLD_BATCHNORM = True  # fold.py: part of every layer's cache key
StageProgress = Callable[[str, int, int], None]
ShouldStop = Callable[[], bool]


@dataclass
class ModelRun:
    """One model's extraction: its resolved settings and {node: features}."""

    label: str
    spec: ExtractSpec
    weights: ResolvedWeights
    profile: layers_mod.LayerProfile
    device: str
    precision: str
    layer_keys: dict[str, str]
    nodes: dict[str, str] = field(default_factory=dict)  # {layer as the user named it: FX node it resolved to}
    features: dict[str, np.ndarray] = field(default_factory=dict)  # by the user's layer names, memory-mapped
    computed: int = 0  # images that went through the model (0: every layer came from the cache)

    def key(self, node: str, multi: bool) -> str:
        return f"{self.label}:{node}" if multi else node

    def without_rows(self, rows: Sequence[int]) -> None:
        """Leave out the given image rows (images that could not be decoded) from every layer's
        features (a copy in memory of the rows kept), and key the results derived from them apart."""
        drop = np.asarray(sorted(rows), dtype=np.int64)
        self.features = {n: np.delete(f, drop, axis=0) for n, f in self.features.items()}
        self.layer_keys = {n: make_key("rows", {"layer": k, "without": drop.tolist()}) for n, k in self.layer_keys.items()}


def _context(dataset: ImageDataset, spec: ExtractSpec, w: ResolvedWeights, transform: Any, device: str, precision: str) -> dict:
    return {
        "dataset": dataset.content_hash,
        "n_images": len(dataset),
        "model": spec.model,
        "weights": w.identity,
        "preprocessing": repr(transform),
        "pooling": spec.pooling,
        "token_pooling": spec.token_pooling,
        "precision": precision,
        "graph": "batchnorm folded" if FOLD_BATCHNORM else "as traced",  # folded features differ in rounding
        "device": device,
        "libraries": library_versions(),
    }


def extract_features(
    dataset: ImageDataset,
    spec: ExtractSpec,
    *,
    cache: FeatureCache,
    label: str | None = None,
    progress: StageProgress | None = None,
    should_stop: ShouldStop | None = None,
    max_pixels: int = 64_000_000,
    ray: RayEngine | None = None,
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
        ray: run the forward passes on a Ray cluster (distributed.py) instead of in this process;
            the features go to the same store under the same keys.

    Returns:
        A ModelRun with features for every chosen layer.
    """

    profile = layers_mod.profile(spec.model)
    names = resolve_names(profile, spec.layers or profile.default)
    spec = spec.replace(layers=tuple(names))
    weights = models.resolve_weights(spec.model, spec.weights, random_state=spec.random_state)
    transform = models.transforms(spec.model, weights.tv_weights)
    if ray is not None:
        device, precision = ray.device_and_precision(spec)
    else:
        device = resolve_device(spec.device)
        precision = resolve_precision(spec.precision, device)
    ctx = _context(dataset, spec, weights, transform, device, precision)
    keys = {name: make_key("layer", {**ctx, "layer": node}) for name, node in names.items()}  # the node is the identity
    run = ModelRun(label or spec.model, spec, weights, profile, device, precision, keys, names)
    for name in names:
        got = cache.get(keys[name])
        if got is not None and got.shape[0] == len(dataset):
            run.features[name] = got
    missing = [name for name in names if name not in run.features]
    if not missing:
        log.info("%s: all %d layers from the cache", run.label, len(names))
        return run
    run_key = make_key("run", {**ctx, "layers": missing, "chunk": CHUNK})
    total = len(dataset)
    bounds = [(s, min(s + CHUNK, total)) for s in range(0, total, CHUNK)]
    writer = cache.writer(run_key, missing, total)
    todo = [(s, e) for s, e in bounds if s not in writer.done]
    if todo:
        fill = ray.extract if ray is not None else _extract_here
        try:
            fill(dataset, run, [names[n] for n in missing], todo, writer, transform,
                 progress=progress, should_stop=should_stop, max_pixels=max_pixels)  # fmt: skip
        except BaseException:
            if not cache.keep_partial:
                writer.discard()
            raise
    elif progress:
        progress(f"extracting {run.label}", total, total)
    _record_unreadable(cache, dataset, max_pixels, writer.unreadable)  # before the features: these imply it
    writer.finish({n: cache.layer_path(keys[n]) for n in missing})
    for n in missing:
        got = cache.get(keys[n])
        if got is None:
            raise RuntimeError(f"the features of {n} could not be read back from {cache.layer_path(keys[n])}")
        run.features[n] = got
    run.features = {n: run.features[n] for n in names}  # execution order, cached or not
    return run


def _extract_here(
    dataset: ImageDataset,
    run: ModelRun,
    nodes: list[str],
    todo: list[tuple[int, int]],
    writer: LayerWriter,
    transform: Any,
    *,
    progress: StageProgress | None,
    should_stop: ShouldStop | None,
    max_pixels: int,
) -> None:
    """Run the chunks `todo` through the model in this process, into `writer` (`nodes`: the FX
    node of each of `writer.nodes`, in order)."""
    import torch

    spec, total = run.spec, len(dataset)
    rows = [r for s, e in todo for r in range(s, e)]  # the dataset row of each item decoded here
    items = [dataset.items[r] for r in rows]
    if progress:
        progress(f"loading {spec.model}", 0, 1)
    # one decoder across chunk boundaries; on a GPU it starts now, while the model is built
    with BatchDecoder(
        items, transform, spans(len(items), spec.batch_size, CHUNK), max_pixels=max_pixels,
        workers=torch.get_num_threads(), background=run.device != "cpu",
    ) as batches:  # fmt: skip
        extractor = FeatureExtractor(
            models.build_model(spec.model, run.weights), nodes, model_name=spec.model, pooling=spec.pooling,
            token_pooling=spec.token_pooling, device=run.device, precision=run.precision, fold_bn=FOLD_BATCHNORM,
        )  # fmt: skip
        for start, stop, feats in run_batches(
            extractor, batches, should_stop=should_stop, offset=total - len(items), total=total,
            progress=(lambda d, t: progress(f"extracting {run.label}", d, t)) if progress else None,
        ):  # fmt: skip
            chunk_start, chunk_end = todo[start // CHUNK]  # batches never cross a chunk (spans)
            writer.write(chunk_start + start % CHUNK, {layer: feats[node] for layer, node in zip(writer.nodes, nodes)})
            writer.unreadable |= {rows[i]: why for i, why in batches.unreadable.items() if start <= i < stop}
            if stop % CHUNK == 0 or stop == len(items):  # the chunk is complete: mark it at once
                writer.mark_done(chunk_start)
                run.computed += chunk_end - chunk_start


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
    return make_key("unreadable", {"dataset": dataset.content_hash, "max_pixels": max_pixels})


def _record_unreadable(cache: FeatureCache, dataset: ImageDataset, max_pixels: int, found: dict[int, str]) -> None:
    """Add the images an extraction could not decode to the dataset's record (written even when
    empty: a run whose features are cached finds the record beside them)."""
    known = unreadable_images(cache, dataset, max_pixels)
    if known and not set(found) - set(known):
        return
    merged = sorted((known | found).items())
    cache.put_result(_unreadable_key(dataset, max_pixels), {
        "rows": np.array([r for r, _ in merged], dtype=np.int64), "reasons": np.array([w for _, w in merged], dtype=str),
    })  # fmt: skip


def unreadable_images(cache: FeatureCache, dataset: ImageDataset, max_pixels: int) -> dict[int, str]:
    """{row: reason} of the dataset's images that passed the header check but could not be decoded
    by any extraction so far."""
    got = cache.get_result(_unreadable_key(dataset, max_pixels))
    if got is None:
        return {}
    return {int(r): str(w) for r, w in zip(got["rows"], got["reasons"])}
