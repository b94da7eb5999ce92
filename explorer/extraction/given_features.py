"""Features computed elsewhere (torchlens, thingsvision, your own code) as the runs an extraction
would have made, so that the same scores, similarity, projections and views apply to them.

Each layer is keyed in the cache by a hash of its array, so its derived results (the neighbour
graph, the scores, the projection) are computed once per array, as an extracted layer's are.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..config import ExtractSpec
from ..data.datasets import ImageDataset, ImageItem
from ..networks.layers import LayerInfo, LayerProfile
from ..networks.weights import ResolvedWeights
from ..store import make_key
from .layer_features import ModelRun


def as_rows(name: str, array: Any) -> np.ndarray:
    """(N, D) float32 rows from an (N, D) array, or from (N, C, H, W) maps averaged over H and W
    (the extractor's `avg` pooling).

    Raises:
        ValueError: another shape, or values that are not finite.
    """
    x = np.asarray(array.detach().cpu().numpy() if hasattr(array, "detach") else array)
    if x.ndim == 4:
        x = x.mean(axis=(2, 3))
    if x.ndim != 2:
        raise ValueError(f"layer {name!r} has shape {x.shape}: give one row per image, (N, D), or (N, C, H, W) maps")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError(f"layer {name!r} holds NaN or infinite values")
    return x


def _array_key(x: np.ndarray) -> str:
    h = hashlib.sha256(f"{x.shape}".encode())
    h.update(memoryview(x).cast("B"))
    return make_key("given", {"sha256": h.hexdigest()})


def given_run(label: str, layers: Mapping[str, Any]) -> ModelRun:
    """One model's layers, in the mapping's order (taken as depth order), as a ModelRun."""
    if not layers:
        raise ValueError(f"{label}: no layers given")
    feats = {str(name): as_rows(str(name), a) for name, a in layers.items()}
    n = {f.shape[0] for f in feats.values()}
    if len(n) != 1:
        raise ValueError(
            f"{label}: the layers have different numbers of rows ({', '.join(map(str, sorted(n)))}): one row per image in each"
        )
    last = max(len(feats) - 1, 1)
    infos = tuple(
        LayerInfo(name, i, i / last, (f.shape[1],), "vector", f.shape[1], f.shape[1])
        for i, (name, f) in enumerate(feats.items())
    )
    profile = LayerProfile(label, 0, infos, tuple(feats))
    spec = ExtractSpec(model=label, layers=tuple(feats))
    weights = ResolvedWeights("given", label, None, "given")
    return ModelRun(
        label,
        spec,
        weights,
        profile,
        "cpu",
        "fp32",
        {n: _array_key(f) for n, f in feats.items()},
        {n: n for n in feats},
        feats,
    )


def given_dataset(
    n: int,
    labels: Sequence[Any] | None,
    names: Sequence[str] | None,
    metadata: Mapping[str, Sequence[Any]] | None = None,
) -> ImageDataset:
    """The rows of given features as a dataset without images: each row's name (default `row 0`,
    `row 1`, ...), its label and further columns."""
    names = [str(s) for s in names] if names is not None else [f"row {i}" for i in range(n)]
    for what, values in (
        ("labels", labels),
        ("names", names),
        *((f"column {c!r}", v) for c, v in (metadata or {}).items()),
    ):
        if values is not None and len(values) != n:
            raise ValueError(f"{len(values)} {what} for {n} rows of features: give one per row")
    return ImageDataset(
        source="features",
        items=tuple(ImageItem(s) for s in names),
        labels=tuple(str(v) for v in labels) if labels is not None else None,
        hashes=tuple(names),
        thumbnails=(),
        metadata={str(c): tuple(str(v) for v in vals) for c, vals in (metadata or {}).items()},
    )
