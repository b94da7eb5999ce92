"""Pure pooling functions: any layer output (maps, tokens, vectors) to one vector per image."""

from __future__ import annotations

from typing import Any

from ..config import POOLINGS, TOKEN_POOLINGS


def infer_layout(shape: tuple[int, ...], model: str) -> str:
    """Guess a tensor's layout from its (batch-less) shape.

    Swin keeps its maps channels-last (N, H, W, C): there the two spatial sizes come first.
    """
    if len(shape) == 1:
        return "vector"
    if len(shape) == 2:
        return "tokens"
    if len(shape) == 3:
        a, b, c = shape
        if a == b and c != a:
            return "nhwc"
        if a == b == c and "swin" in model.lower():
            return "nhwc"
        return "nchw"
    return "other"


def pool(t: Any, *, layout: str, pooling: str = "avg", token_pooling: str = "cls") -> Any:
    """Pool a batch of activations to (N, D) float32.

    Args:
        t: a torch tensor with the batch first.
        layout: `nchw` (conv maps), `nhwc` (Swin maps), `tokens` (N x T x C, ViT), `vector`,
            or `other` (any other rank: averaged over all but the batch and the last axis).
        pooling: for maps: `avg`, `max` or `avgmax` (both, concatenated: 2C values).
        token_pooling: for tokens: `cls` (the first token) or `mean`.

    Returns:
        A new float32 tensor of shape (N, D); the input is not modified.
    """
    if pooling not in POOLINGS:
        raise ValueError(f"pooling={pooling!r} is not one of {', '.join(POOLINGS)}")
    if token_pooling not in TOKEN_POOLINGS:
        raise ValueError(f"token_pooling={token_pooling!r} is not one of {', '.join(TOKEN_POOLINGS)}")
    t = t.float()
    if layout == "vector":
        return t.reshape(t.shape[0], -1)
    if layout == "tokens":
        return t[:, 0] if token_pooling == "cls" else t.mean(dim=1)
    if layout in ("nchw", "nhwc"):
        dims = (2, 3) if layout == "nchw" else (1, 2)
        if pooling == "avg":
            return t.mean(dim=dims)
        if pooling == "max":
            return t.amax(dim=dims)
        import torch

        return torch.cat([t.mean(dim=dims), t.amax(dim=dims)], dim=1)
    if layout == "other":
        return t.reshape(t.shape[0], -1, t.shape[-1]).mean(dim=1)
    raise ValueError(f"unknown layout {layout!r}")


def pool_auto(t: Any, *, model: str, pooling: str = "avg", token_pooling: str = "cls") -> Any:
    """Pool a batch, inferring its layout from its shape (see infer_layout)."""
    return pool(t, layout=infer_layout(tuple(t.shape[1:]), model), pooling=pooling, token_pooling=token_pooling)
