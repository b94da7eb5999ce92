"""One feature extractor for all chosen layers: batching, device, precision, progress, cancellation."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from .datasets import ImageItem
from .images import load_rgb
from .pooling import pool_auto

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
ShouldStop = Callable[[], bool]


class Cancelled(RuntimeError):
    """The caller asked the extraction to stop; finished batches were already handed out."""


def resolve_device(device: str = "auto") -> str:
    """`auto` picks CUDA, then MPS, then the CPU; an unavailable explicit choice is an error."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA GPU is visible; use --device auto or cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device='mps' but MPS is not available; use --device auto or cpu")
    return device


def cpu_supports_bf16() -> bool:
    """True when oneDNN has native bf16 kernels here (AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: str) -> str:
    """`auto` means bf16 where the hardware runs it natively (CUDA with bf16, CPUs with AVX512-BF16/AMX)."""
    import torch

    if precision != "auto":
        return precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"


class FeatureExtractor:
    """Captures many FX nodes of a model in one forward pass and pools each to vectors.

    Args:
        model: a torchvision model in eval mode.
        nodes: FX node names to capture.
        model_name: torchvision registry name (for layout inference).
        pooling: map pooling (avg, max, avgmax).
        token_pooling: token pooling (cls, mean).
        device: resolved device (`cpu`, `cuda`, `mps`).
        precision: resolved precision (`fp32`, `bf16`).
    """

    def __init__(
        self,
        model: Any,
        nodes: Sequence[str],
        *,
        model_name: str,
        pooling: str = "avg",
        token_pooling: str = "cls",
        device: str = "cpu",
        precision: str = "fp32",
    ) -> None:
        import torch
        from torchvision.models.feature_extraction import create_feature_extractor

        if not nodes:
            raise ValueError("no layers chosen; give at least one FX node name")
        self.nodes = list(nodes)
        self.model_name = model_name
        self.pooling = pooling
        self.token_pooling = token_pooling
        self.device = device
        self.precision = precision
        fx = create_feature_extractor(model, return_nodes={n: n for n in self.nodes}).eval()
        # channels_last lets oneDNN/cuDNN run convolutions without layout conversions.
        self.memory_format = torch.channels_last if device in ("cpu", "cuda") else torch.contiguous_format
        self.fx = fx.to(device=device, memory_format=self.memory_format)

    def _autocast(self) -> Any:
        import torch

        if self.precision == "bf16":
            return torch.autocast(device_type=self.device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        """Run one batch (N, 3, H, W) and return {node: (N, D) float32 array}."""
        import torch

        batch = batch.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)
        with torch.inference_mode(), self._autocast():
            out = self.fx(batch)
            pooled = {
                n: pool_auto(out[n], model=self.model_name, pooling=self.pooling, token_pooling=self.token_pooling)
                for n in self.nodes
            }
        return {n: t.float().cpu().numpy() for n, t in pooled.items()}


DECODE_NICE = 10


def _lower_priority() -> None:
    """Run this (decode) thread below the model's threads: when cores are scarce it fills their idle
    gaps instead of pre-empting them (an OpenMP region waits for its slowest thread). Measured on
    2 cores: 400 images 3.2 s at equal priority, 2.4-2.6 s niced (README.md, "Measured")."""
    with contextlib.suppress(AttributeError, OSError, PermissionError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICE)


def _batches(
    items: Sequence[ImageItem], transform: Any, batch_size: int, max_pixels: int, workers: int
) -> Iterator[Any]:
    """Decode and preprocess batches in a background thread, one batch ahead of the model."""
    import torch

    def prep(item: ImageItem) -> Any:
        return transform(load_rgb(item.read_bytes(), max_pixels=max_pixels))

    q: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()

    def producer() -> None:
        try:
            with ThreadPoolExecutor(max_workers=workers, initializer=_lower_priority) as pool:
                for s in range(0, len(items), batch_size):
                    if stop.is_set():
                        return
                    tensors = list(pool.map(prep, items[s : s + batch_size]))
                    q.put(torch.stack(tensors))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            q.put(exc)
        finally:
            q.put(None)

    thread = threading.Thread(target=producer, name="explorer-decode", daemon=True)
    thread.start()
    try:
        while True:
            got = q.get()
            if got is None:
                return
            if isinstance(got, BaseException):
                raise got
            yield got
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                q.get_nowait()
            thread.join(timeout=0.05)


def iter_features(
    extractor: FeatureExtractor,
    items: Sequence[ImageItem],
    transform: Any,
    *,
    batch_size: int = 32,
    max_pixels: int = 64_000_000,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    offset: int = 0,
    total: int | None = None,
    decode_workers: int = 1,
) -> Iterator[tuple[int, dict[str, np.ndarray]]]:
    """Yield (start index, {node: features}) batch by batch.

    Args:
        extractor: the FeatureExtractor.
        items: images to run.
        transform: the weights' preprocessing (PIL image -> tensor).
        batch_size: images per forward pass.
        max_pixels: pixel-bomb limit for decoding.
        progress: called with (done, total) after each batch.
        should_stop: polled between batches; True raises Cancelled.
        offset: index of items[0] in the whole dataset (for progress and start indices).
        total: size of the whole dataset (default offset + len(items)).
        decode_workers: decoding threads.

    Raises:
        Cancelled: when should_stop() returned True.
    """
    total = offset + len(items) if total is None else total
    done = offset
    for batch in _batches(items, transform, batch_size, max_pixels, decode_workers):
        if should_stop is not None and should_stop():
            raise Cancelled("extraction cancelled")
        feats = extractor(batch)
        yield done, feats
        done += len(batch)
        if progress is not None:
            progress(done, total)


def extract(
    extractor: FeatureExtractor,
    items: Sequence[ImageItem],
    transform: Any,
    **kwargs: Any,
) -> dict[str, np.ndarray]:
    """All features at once: {node: (len(items), D) float32 array}. Keyword args as iter_features."""
    parts: dict[str, list[np.ndarray]] = {n: [] for n in extractor.nodes}
    for _, feats in iter_features(extractor, items, transform, **kwargs):
        for n, a in feats.items():
            parts[n].append(a)
    return {n: np.concatenate(v) if v else np.zeros((0, 0), np.float32) for n, v in parts.items()}
