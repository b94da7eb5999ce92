"""A chosen layer taken away as an embedder, to recognise classes the network never saw: the
network up to the layer with no head, its pooled features L2-normalised, optionally through a
learned projection, exported and tested on held-out classes (`cut --embedding`); a gallery of a
few images per class enrolled with it, and queries recognised as a class or `unknown`
(`predict --gallery`). The export's shared parts (the network up to a layer, running a program
over a dataset) are cutting.py's."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .analysis.open_set import enrol, recognise
from .analysis.retrieval import retrieval_scores, stratified_rows
from .analysis.unseen import PROJECTIONS, fit_projection, split_classes
from .config import ExtractSpec
from .cutting import check_stop, network_up_to, program_outputs
from .data.datasets import ImageDataset
from .extraction.layer_features import extract_features
from .networks.cost import cut_costs
from .networks.sources import canonical
from .output import cut_files, embedder_files
from .progress import ShouldStop, StageProgress
from .store import FeatureCache

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedderResult:
    """What `make_embedder` wrote: the folder's files and the numbers of metrics.json."""

    files: dict[str, Path]
    metrics: dict[str, Any]


EMBEDDER_TEST_IMAGES = 2_000  # images of the held-out classes the exported program embeds to test itself, at most


def make_embedder(
    dataset: ImageDataset,
    spec: ExtractSpec,
    out: str | Path,
    *,
    reduce: str | None = None,
    dims: int | None = None,
    cache: FeatureCache | None = None,
    progress: StageProgress | None = None,
    max_pixels: int = 64_000_000,
    command: str = "",
    should_stop: ShouldStop | None = None,
) -> EmbedderResult:
    """Export the network up to one layer with no head: images -> pooled, L2-normalised features,
    optionally through a learned projection to `dims` dimensions, to recognise classes by
    similarity (`predict --gallery`).

    With labels of at least four classes (two images each), the classes are halved by the seed
    (analysis/unseen.split_classes): the projection is fitted on the first half only, and the
    exported program embeds images of the second half, classes it never saw, to measure its
    retrieval (MAP@R, precision@1, verification AUC) for the model card. Otherwise a PCA is fitted
    on every image and nothing is measured. Each image is decoded once: the projection's images by
    extraction, the held-out ones by the exported program.

    Args:
        dataset: the images (labels optional, except for `reduce="lda"`).
        spec: the model, its weights and exactly one layer.
        out: the folder to write into.
        reduce: None, `pca` or `lda`.
        dims: dimensions kept by the projection (default: all it gives).
        cache, progress, max_pixels, command, should_stop: as make_cut's.

    Raises:
        ValueError: not exactly one layer, `lda` without enough labelled classes, `dims` below 1,
            a preprocessing that preprocess.json cannot say.
    """
    import torch

    if len(spec.layers) != 1:
        raise ValueError(
            f"an embedder is cut at one layer; got {len(spec.layers)} ({', '.join(spec.layers) or 'none'}): give --layer NODE"
        )
    if reduce is not None and reduce not in PROJECTIONS:
        raise ValueError(f"--reduce {reduce!r}: use one of {', '.join(PROJECTIONS)}")
    if dims is not None and dims < 1:
        raise ValueError(f"--dims {dims} must be at least 1")
    cache = cache or FeatureCache()
    spec = spec.replace(model=canonical(spec.model))
    layer = spec.layers[0]
    labels = np.asarray(dataset.labels, dtype=str) if dataset.labels is not None else None
    y = np.unique(labels, return_inverse=True)[1] if labels is not None else None
    seen, unseen = split_classes(y, spec.random_state) if y is not None else (np.array([]), np.array([]))
    held_out = len(seen) >= 2 and len(unseen) >= 2
    if reduce == "lda" and not held_out:
        raise ValueError("--reduce lda needs labels of at least 4 classes with 2 images each (class folders)")
    fit_rows = np.flatnonzero(np.isin(y, seen)) if held_out else np.arange(len(dataset))
    # each image decoded once: the projection's images by extraction, the held-out classes' by the
    # exported program; with no projection, one image resolves the layer and its input size
    fit_ds = dataset.take(fit_rows if reduce is not None else fit_rows[:1])
    run = extract_features(fit_ds, spec, cache=cache, progress=progress, max_pixels=max_pixels, should_stop=should_stop)
    check_stop(should_stop)
    feats = run.features[layer]
    readable = np.array([i for i in range(len(fit_ds)) if i not in run.unreadable], dtype=np.int64)
    projection = None
    if reduce is not None:
        if progress:
            progress(f"fitting the {reduce.upper()} projection", 0, 1)
        fit_y = y[fit_rows][readable] if held_out else None
        projector = fit_projection(np.asarray(feats[readable]), fit_y, reduce, dims)
        projection = (projector.mean, projector.weights)
    pre, build_features = network_up_to(spec, run)
    if progress:
        progress("exporting the embedder", 0, 1)
    with torch.device("cpu"):
        program = embedder_files.export_embedder(build_features(), projection, run.profile.input_size)
    check_stop(should_stop)
    out_dim = int(projection[1].shape[1]) if projection is not None else int(feats.shape[1])
    test: dict[str, Any] = {}
    if held_out:
        test_rows = np.flatnonzero(np.isin(y, unseen))
        test_rows = test_rows[stratified_rows(y[test_rows], EMBEDDER_TEST_IMAGES, spec.random_state)]
        test_ds = dataset.take(test_rows)
        emb, errors = program_outputs(
            program.module(),
            cut_files.transform_from(pre),
            test_ds,
            max_pixels=max_pixels,
            progress=(lambda d, t: progress("testing the embedder", d, t)) if progress else None,
        )
        ok = np.array([not e for e in errors])
        test_y = np.unique(np.asarray(test_ds.labels)[ok], return_inverse=True)[1]
        scored = retrieval_scores(emb[ok], test_y, random_state=spec.random_state)
        if scored is not None:
            test = {
                "test_images": int(ok.sum()),
                "test_classes": [str(c) for c in np.unique(labels)[unseen]],
                "test_map_at_r": scored.map_at_r,
                "test_map_at_r_low": scored.map_at_r_low,
                "test_map_at_r_high": scored.map_at_r_high,
                "test_precision_at_1": scored.precision_at_1,
                "test_verification_auc": scored.verification_auc,
            }
    cost = cut_costs(spec.model, [run.nodes[layer]])[run.nodes[layer]]
    metrics = {
        "kind": "embedder",
        "model": spec.model,
        "layer": layer,
        "node": run.nodes[layer],
        "weights": run.weights.name,
        "layer_dim": int(feats.shape[1]),
        "dim": out_dim,
        "reduce": reduce or "none",
        "fit_images": len(readable) if reduce else 0,
        "fit_classes": [str(c) for c in np.unique(labels)[seen]] if (reduce and held_out) else [],
        "pooling": spec.pooling,
        "input_size": run.profile.input_size,
        "params": cost.params,
        "gflops": cost.gflops,
        "preprocess": pre,
        "random_state": spec.random_state,
        **test,
    }
    card = embedder_files.model_card(metrics, command)
    files = embedder_files.write_embedder(Path(out), program, pre, metrics, card)
    log.info("embedder %s at %s: %d dimensions", spec.model, layer, out_dim)
    return EmbedderResult(files, metrics)


def embed(
    embedder: Any,
    dataset: ImageDataset,
    *,
    max_pixels: int = 64_000_000,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, list[str]]:
    """An exported embedder's unit-length embeddings of every image of `dataset`, and each image's
    reason where it could not be decoded ("").

    Args:
        embedder: an embedder folder, or one read already (output/embedder_files.LoadedEmbedder).
    """

    emb = embedder if isinstance(embedder, embedder_files.LoadedEmbedder) else embedder_files.load_embedder(embedder)
    return program_outputs(
        emb.module, cut_files.transform_from(emb.preprocess), dataset, max_pixels=max_pixels, progress=progress
    )


def enrol_gallery(
    embedder: Any,
    gallery: ImageDataset,
    *,
    far: float = 0.01,
    max_pixels: int = 64_000_000,
    progress: Callable[[int, int], None] | None = None,
) -> Any:
    """The enrolled open_set.Gallery: each class folder of `gallery` embedded by `embedder` (a
    folder or a LoadedEmbedder) and averaged, and the threshold for `far` estimated on it.

    Raises:
        ValueError: a gallery without class labels, or of fewer than two classes.
    """
    if gallery.labels is None:
        raise ValueError(f"the gallery {gallery.source!r} has no classes: give one folder of images per class")
    emb, errors = embed(embedder, gallery, max_pixels=max_pixels, progress=progress)
    ok = np.array([not e for e in errors])
    return enrol(emb[ok], np.asarray(gallery.labels)[ok], far)


def recognise_images(
    embedder: Any,
    gallery: Any,
    dataset: ImageDataset,
    *,
    max_pixels: int = 64_000_000,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """predictions.csv for an embedder (a folder or a LoadedEmbedder) and an enrolled gallery:
    path, prediction (a gallery class or `unknown`), similarity (cosine to the nearest prototype).
    An image that cannot be decoded gets the prediction `unreadable` and no similarity."""
    emb, errors = embed(embedder, dataset, max_pixels=max_pixels, progress=progress)
    prediction, similarity, _ = recognise(gallery, emb)
    bad = np.array([bool(e) for e in errors], dtype=bool)
    prediction = np.where(bad, "unreadable", prediction)
    similarity = np.where(bad, np.nan, similarity)
    for it, why in zip(dataset.items, errors):
        if why:
            log.warning("%s could not be decoded: %s", it.name, why)
    return pd.DataFrame(
        {"path": [it.name for it in dataset.items], "prediction": prediction, "similarity": similarity},
        columns=["path", "prediction", "similarity"],
    )
