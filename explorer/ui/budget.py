"""What one analysis may cost in the demo: layers, compute and time, checked before any work.

The compute estimate is torchvision's own: each weights enum carries the GFLOPs of one image's
forward pass (`meta["_ops"]`), times the images. Local mode has no budget (the CLI's limits).
"""

from __future__ import annotations

from collections.abc import Sequence

from .. import layers, models
from ..config import AppMode, ExtractSpec

SMALL_MODEL = "mobilenet_v2"  # what a refusal suggests instead


def _layer_count(spec: ExtractSpec) -> int:
    return len(spec.layers) if spec.layers else len(layers.profile(spec.model).default)


def gflop(specs: Sequence[ExtractSpec], n_images: int) -> float:
    """The forward passes' GFLOPs of every model over `n_images` (a model torchvision gives no figure
    for counts as 0: the time budget still bounds it)."""
    return sum((models.forward_gflops(s.model, s.weights != "none") or 0.0) * n_images for s in specs)


def check(specs: Sequence[ExtractSpec], n_images: int, mode: AppMode) -> None:
    """Refuse, with one sentence that says what would fit, an analysis over the mode's budget.

    Raises:
        ValueError: too many layers, or too much compute.
    """
    n_layers = sum(_layer_count(s) for s in specs)
    if n_layers > mode.max_layers:
        raise ValueError(f"this demo extracts at most {mode.max_layers} layers per analysis, and this one asks for "
                         f"{n_layers}; choose fewer layers")  # fmt: skip
    if mode.max_gflop is None or n_images < 1:
        return
    need = gflop(specs, n_images)
    if need <= mode.max_gflop:
        return
    per_image = need / n_images
    fits = int(mode.max_gflop // per_image)
    small = models.forward_gflops(SMALL_MODEL) or 0.3
    names = " + ".join(dict.fromkeys(s.model for s in specs))
    raise ValueError(
        f"{n_images:,} images through {names} need about {need:,.0f} GFLOPs, over this demo's budget of "
        f"{mode.max_gflop:,.0f}; it fits with at most {fits:,} images, or with a smaller model such as "
        f"{SMALL_MODEL} ({small:.1f} GFLOPs per image)"
    )
