"""What one analysis may cost in the demo: layers, compute, disk and time, checked before any work.

The compute estimate is torchvision's own where it has one (each weights enum carries the GFLOPs of
one image's forward pass, `meta["_ops"]`), else counted on the meta device when the model's layers
are listed (networks/module_layers.py), times the images. The disk estimate is an upper bound of the files
the analysis writes to the cache (cache_bytes). Local mode has no budget (the CLI's limits).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..analysis.neighbors import GRAPH_K
from ..config import AppMode, ExtractSpec
from ..networks import layers

SMALL_MODEL = "mobilenet_v2"  # what a refusal suggests instead
# Bytes per image and layer besides its features: the neighbour graph (GRAPH_K int32 indices and
# float32 distances), a projection (at most 3 float32) and the probe's prediction (int16), rounded up.
RESULT_BYTES_PER_ROW = GRAPH_K * 8 + 3 * 4 + 8
FILE_OVERHEAD = 8 * 1024  # a layer's files' headers (npy, npz), rounded up; also the per-analysis files
NEW_CLASS_BYTES = 4 * 1024  # the few-shot and unseen-class curves' arrays (about 50 rows of a few numbers each)
# a pair of layers' similarity measures against their nulls: 5 measures x (1 + 50 permutations + 50 resamples) float64
ALIGNMENT_BYTES_PER_PAIR = 5 * 101 * 8


def _layer_count(spec: ExtractSpec) -> int:
    return len(spec.layers) if spec.layers else len(layers.profile(spec.model).default)


def _layer_dims(spec: ExtractSpec) -> list[int]:
    """Feature dimension of each layer the spec extracts (avgmax pooling doubles a map's channels)."""
    prof = layers.profile(spec.model)
    nodes = prof.resolve(spec.layers) if spec.layers else prof.default
    return [prof[n].dim * (2 if spec.pooling == "avgmax" and prof[n].layout in ("nchw", "nhwc") else 1) for n in nodes]


def cache_bytes(specs: Sequence[ExtractSpec], n_images: int, n_classes: int = 0) -> int:
    """An upper bound of the bytes one analysis writes to the feature cache: per layer its float32
    features and its derived results (graph, projection, scores with an int64 confusion matrix, the
    new-class results, the scorers), plus the layer-similarity matrices and the measures against
    their nulls (which the dashboard computes on request)."""
    dims = [d for s in specs for d in _layer_dims(s)]
    # the small results (retrieval, few-shot, unseen-class curve, intrinsic dimension, the H-score and
    # TransRate): five files, the unseen-class curve naming the classes of each half
    new_classes = 5 * FILE_OVERHEAD + NEW_CLASS_BYTES + 16 * n_classes
    per_layer = sum(
        n_images * (4 * d + RESULT_BYTES_PER_ROW) + 8 * n_classes**2 + FILE_OVERHEAD + new_classes for d in dims
    )
    pairs = len(dims) * (len(dims) - 1) // 2
    return per_layer + 3 * 8 * len(dims) ** 2 + ALIGNMENT_BYTES_PER_PAIR * pairs + 3 * FILE_OVERHEAD


def gflop(specs: Sequence[ExtractSpec], n_images: int) -> float:
    """The forward passes' GFLOPs of every model over `n_images` (a model with no figure counts as 0:
    the time budget still bounds it)."""
    return sum((layers.forward_gflops(s.model, s.weights != "none") or 0.0) * n_images for s in specs)


def check(specs: Sequence[ExtractSpec], n_images: int, mode: AppMode, n_classes: int = 0) -> None:
    """Refuse, with one sentence that says what would fit, an analysis over the mode's budget.

    Raises:
        ValueError: too many layers, too much compute, or more files than the cache holds.
    """
    n_layers = sum(_layer_count(s) for s in specs)
    if n_layers > mode.max_layers:
        raise ValueError(
            f"this demo extracts at most {mode.max_layers} layers per analysis, and this one asks for "
            f"{n_layers}; choose fewer layers"
        )
    if mode.cache_max_bytes is not None and n_images >= 1:
        disk = cache_bytes(specs, n_images, n_classes)
        if disk > mode.cache_max_bytes:
            fixed = cache_bytes(specs, 0, n_classes)  # linear in the images: what is left over them, per image
            fits = max(0, (mode.cache_max_bytes - fixed) // (cache_bytes(specs, 1, n_classes) - fixed))
            raise ValueError(
                f"{n_images:,} images would write about {disk / 1e6:,.1f} MB of features and results, more "
                f"than this server's cache holds ({mode.cache_max_bytes / 1e6:,.1f} MB); it fits with at "
                f"most {fits:,} images, or with fewer or narrower layers"
            )
    if mode.max_gflop is None or n_images < 1:
        return
    need = gflop(specs, n_images)
    if need <= mode.max_gflop:
        return
    per_image = need / n_images
    fits = int(mode.max_gflop // per_image)
    small = layers.forward_gflops(SMALL_MODEL) or 0.3
    names = " + ".join(dict.fromkeys(s.model for s in specs))
    raise ValueError(
        f"{n_images:,} images through {names} need about {need:,.0f} GFLOPs, over this demo's budget of "
        f"{mode.max_gflop:,.0f}; it fits with at most {fits:,} images, or with a smaller model such as "
        f"{SMALL_MODEL} ({small:.1f} GFLOPs per image)"
    )
