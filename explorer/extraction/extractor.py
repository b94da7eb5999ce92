"""One feature extractor for all chosen layers: batching, device, precision, progress, cancellation."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

import numpy as np

from ..data.datasets import ImageItem
from ..networks.batchnorm import fold_batchnorm
from ..networks.fx_lock import FX
from ..networks.preprocess import Preprocess
from ..networks.pooling import pool_auto
from ..progress import Cancelled, Progress, ShouldStop

log = logging.getLogger(__name__)

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


class _PooledLayers:
    """What both extractors share: the device, the precision, and the pooled vectors they return."""

    nodes: list[str]
    device: str
    precision: str
    memory_format: Any

    def _autocast(self) -> Any:
        import torch

        if self.precision == "bf16":
            return torch.autocast(device_type=self.device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _to_device(self, batch: Any) -> Any:
        return batch.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    @staticmethod
    def _to_numpy(pooled: dict[str, Any]) -> dict[str, np.ndarray]:
        # a non-finite value is stored as a finite one (nan as 0): it would poison every metric
        return {n: np.nan_to_num(t.float().cpu().numpy(), copy=False) for n, t in pooled.items()}


def _memory_format(device: str) -> Any:
    """channels_last lets oneDNN/cuDNN run convolutions without layout conversions."""
    import torch

    return torch.channels_last if device in ("cpu", "cuda") else torch.contiguous_format


class FeatureExtractor(_PooledLayers):
    """Captures many FX nodes of a model in one forward pass and pools each to vectors.

    Args:
        model: a torchvision model in eval mode.
        nodes: FX node names to capture.
        model_name: the model's name (for layout inference).
        pooling: map pooling (avg, max, avgmax).
        token_pooling: token pooling (cls, mean).
        device: resolved device (`cpu`, `cuda`, `mps`).
        precision: resolved precision (`fp32`, `bf16`).
        fold_bn: fold eval-mode BatchNorms into their convolutions (batchnorm.py; 16 % faster for
            MobileNetV2 in bf16; the same features within rounding).
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
        fold_bn: bool = True,
    ) -> None:
        from torchvision.models.feature_extraction import create_feature_extractor

        if not nodes:
            raise ValueError("no layers chosen; give at least one FX node name")
        self.nodes = list(nodes)
        self.model_name = model_name
        self.pooling = pooling
        self.token_pooling = token_pooling
        self.device = device
        self.precision = precision
        with FX.exclusive():  # tracing patches torch.nn.Module.__call__ process-wide (fx_lock.py)
            fx = create_feature_extractor(model, return_nodes={n: n for n in self.nodes}).eval()
        self.folded = fold_batchnorm(fx) if fold_bn else 0
        self.memory_format = _memory_format(device)
        self.fx = fx.to(device=device, memory_format=self.memory_format)

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        """Run one batch (N, 3, H, W) and return {node: (N, D) float32 array}."""
        import torch

        batch = self._to_device(batch)
        with FX.shared(), torch.inference_mode(), self._autocast():
            out = self.fx(batch)
            pooled = {
                n: pool_auto(out[n], model=self.model_name, pooling=self.pooling, token_pooling=self.token_pooling)
                for n in self.nodes
            }
        return self._to_numpy(pooled)


class _AllCaptured(Exception):  # not an error: ends a forward pass early
    """Raised by the last hook of a pass: every chosen layer is pooled, the rest of the model need not run."""


class HookExtractor(_PooledLayers):
    """Captures many modules of a model in one forward pass with forward hooks, pooling each output
    as it is made (no full activation is kept), and stops the pass once the deepest one is pooled.

    For models that FX cannot trace as torchvision's can (timm, Hugging Face, exported programs):
    a layer is a module (networks/module_layers.py lists those that run once per pass).

    Args:
        model: the model in eval mode, called with the batch.
        nodes: names of modules under `sources.hooked_layers_root(model)`.
        model_name, pooling, token_pooling, device, precision: as for FeatureExtractor.
    """

    def __init__(self, model: Any, nodes: Sequence[str], *, model_name: str, pooling: str = "avg",
                 token_pooling: str = "cls", device: str = "cpu", precision: str = "fp32") -> None:  # fmt: skip
        from ..networks.sources import hooked_layers_root

        if not nodes:
            raise ValueError("no layers chosen; give at least one module name")
        self.nodes, self.model_name = list(nodes), model_name
        self.pooling, self.token_pooling = pooling, token_pooling
        self.device, self.precision = device, precision
        self.memory_format = _memory_format(device)
        self.model = model.to(device=device, memory_format=self.memory_format)
        modules = dict(hooked_layers_root(self.model).named_modules())
        missing = [n for n in self.nodes if n not in modules]
        if missing:
            raise ValueError(f"{model_name} has no module {missing[0]!r}")
        self._pooled: dict[str, Any] = {}
        for n in self.nodes:
            modules[n].register_forward_hook(self._hook(n))

    def _hook(self, name: str) -> Callable[..., None]:
        from ..networks.module_layers import first_tensor

        def capture(module: Any, args: Any, output: Any) -> None:
            self._pooled[name] = pool_auto(first_tensor(output), model=self.model_name, pooling=self.pooling,
                                           token_pooling=self.token_pooling)  # fmt: skip
            if len(self._pooled) == len(self.nodes):
                raise _AllCaptured

        return capture

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        """Run one batch (N, 3, H, W) and return {module name: (N, D) float32 array}."""
        import torch

        self._pooled = {}
        with FX.shared(), torch.inference_mode(), self._autocast():
            try:
                self.model(self._to_device(batch))
            except _AllCaptured:
                pass
        if len(self._pooled) < len(self.nodes):
            missed = [n for n in self.nodes if n not in self._pooled]
            raise RuntimeError(f"{self.model_name}: the modules {', '.join(missed[:3])} did not run in the forward pass")
        return self._to_numpy({n: self._pooled[n] for n in self.nodes})


def build_extractor(spec: Any, weights: Any, nodes: Sequence[str], *, device: str, precision: str,
                    fold_bn: bool) -> FeatureExtractor | HookExtractor:  # fmt: skip
    """The extractor of `spec.model`'s chosen layers, its model built with `weights`: FX for
    torchvision's models, forward hooks for every other source (networks/sources.py)."""
    from ..networks.sources import source_of

    src = source_of(spec.model)
    model = src.build(spec.model, weights)
    common = dict(model_name=spec.model, pooling=spec.pooling, token_pooling=spec.token_pooling, device=device, precision=precision)
    if src.traced:
        return FeatureExtractor(model, nodes, fold_bn=fold_bn, **common)
    return HookExtractor(model, nodes, **common)


DECODE_NICE = 10


def _lower_priority() -> None:
    """Run this background decode thread below the thread that drives the model: when cores are
    scarce it fills that thread's idle gaps instead of pre-empting it. (With the model on the CPU an
    OpenMP region waits for its slowest thread: 400 images took 3.2 s at equal priority and 2.4-2.6 s
    niced, and decoding between batches instead was no slower, so the CPU now does that.)"""
    with contextlib.suppress(AttributeError, OSError, PermissionError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), DECODE_NICE)
    _one_omp_thread()


def _one_omp_thread() -> None:
    """Give the calling thread's tensor ops one OpenMP thread. Without that, libgomp gives every
    thread that starts a parallel region a team of its own (one thread per core), which spins
    beside the model's team."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="openmp")


def spans(n: int, batch_size: int, chunk: int | None = None) -> list[tuple[int, int]]:
    """Batch index ranges over n items; with `chunk`, no batch crosses a multiple of it."""
    step = chunk or n or 1
    return [(s, min(s + batch_size, c + step, n)) for c in range(0, n, step) for s in range(c, min(c + step, n), batch_size)]


class BatchDecoder:
    """Decodes and preprocesses batches for the model: ahead of it in a thread, or between its batches.

    With `background` (for a GPU) a thread decodes a few batches ahead while the device computes;
    it starts at construction, so decoding also overlaps whatever the caller does next (building the
    model). On the CPU the model's threads already use every core, so decoding beside them only
    slows both: there each batch is decoded when asked for, by `workers` threads, between forward
    passes (docs/benchmarks.md, "Measured"). Iterate to get (start, stop, batch); close() (or `with`) stops.
    This is the only full decode of an image: one that fails here is replaced by a blank and
    recorded in `unreadable`, and the caller leaves it out.

    Args:
        items: images to decode.
        transform: the weights' preprocessing (PIL image -> tensor).
        spans: (start, stop) index ranges of the batches, in order.
        max_pixels: pixel-bomb limit for decoding.
        workers: decoding threads.
        background: decode ahead in a thread (GPU) or on demand (CPU).
        depth: decoded batches held ready in the background (each batch x 3 x H x W float32).
        also: more models' preprocessing: each image is decoded once and preprocessed for every
            one, and a batch is then a list (this transform's batch first, then one per `also`).
    """

    def __init__(
        self,
        items: Sequence[ImageItem],
        transform: Any,
        spans: Sequence[tuple[int, int]],
        *,
        max_pixels: int = 64_000_000,
        workers: int = 1,
        background: bool = True,
        depth: int = 2,
        also: Sequence[Any] = (),
    ) -> None:
        self.ranges = list(spans)
        self._items, self._pre = items, Preprocess(transform)
        # models with the same preprocessing share its tensors: each distinct one is run once per image
        pres, self._which = [self._pre], [0]
        for t in also:
            pre = Preprocess(t)
            same = next((i for i, q in enumerate(pres) if pre.same_as(q)), None)
            if same is None:
                pres.append(pre)
                same = len(pres) - 1
            self._which.append(same)
        self._also = pres[1:]
        self._many = bool(also)
        self._max_pixels, self._workers = max_pixels, workers
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = None
        self._inline: Iterator | None = None  # the on-demand decoder, while iterated
        self.unreadable: dict[int, str] = {}  # index in items -> why it could not be decoded (a blank stood in)
        if background:
            self._thread = threading.Thread(target=self._produce, name="explorer-decode", daemon=True)
            self._thread.start()

    def _prep(self, index: int) -> Any:
        if self._many:
            tensors, reason = self._pre.decode_for(self._also, self._items[index].read_bytes, self._max_pixels)
            if reason is not None:
                self.unreadable[index] = reason
            return tensors
        tensor, reason = self._pre.decode(self._items[index].read_bytes, self._max_pixels)
        if reason is not None:
            self.unreadable[index] = reason
        return tensor

    def _stack(self, prepped: Iterator[Any]) -> Any:
        if not self._many:
            return self._pre.batch(prepped)
        rows = list(prepped)  # per image: a tensor per distinct preprocessing, or None (unreadable)
        distinct = [pre.batch(None if r is None else r[j] for r in rows) for j, pre in enumerate((self._pre, *self._also))]
        return [distinct[j] for j in self._which]  # one batch per model, shared where their preprocessing is

    def _put(self, got: Any) -> bool:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._q.put(got, timeout=0.1)
                return True
        return False

    def _batches(self, lower_priority: bool) -> Iterator[tuple[int, int, Any]]:
        workers = self._workers
        pool = ThreadPoolExecutor(workers, initializer=_lower_priority if lower_priority else _one_omp_thread) if workers > 1 else None
        try:
            for s, e in self.ranges:
                if self._stop.is_set():
                    return
                yield s, e, self._stack(pool.map(self._prep, range(s, e)) if pool else map(self._prep, range(s, e)))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def _produce(self) -> None:
        _lower_priority()  # this thread decodes (with workers > 1: stacks and normalises) batches
        try:
            for got in self._batches(lower_priority=True):
                if not self._put(got):
                    return
        except BaseException as exc:  # handed to the consumer, which re-raises it
            self._put(exc)
        self._put(None)

    def __iter__(self) -> Iterator[tuple[int, int, Any]]:
        if self._thread is None:
            self._inline = self._batches(lower_priority=False)
            try:
                yield from self._inline
            finally:
                self.close()
            return
        try:
            while (got := self._q.get()) is not None:
                if isinstance(got, BaseException):
                    raise got
                yield got
        finally:
            self.close()

    def close(self) -> None:
        """Stop decoding: shut the decode threads down (a background thread drops what it was doing)."""
        self._stop.set()
        if self._inline is not None:  # not left to garbage collection: its pool threads stop now
            self._inline.close()
        if self._thread is not None:
            self._thread.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def run_batches(
    extractor: FeatureExtractor,
    batches: BatchDecoder,
    *,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    offset: int = 0,
    total: int | None = None,
) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """Yield (start, stop, {node: features}) for each decoded batch.

    Args:
        extractor: the FeatureExtractor.
        batches: the decoded batches.
        progress: called with (done, total) after each batch.
        should_stop: polled between batches; True raises Cancelled.
        offset: images done before these (for progress).
        total: images in the whole job (for progress; default offset + what these batches hold).

    Raises:
        Cancelled: when should_stop() returned True.
    """
    total = offset + sum(e - s for s, e in batches.ranges) if total is None else total
    done = offset
    for s, e, batch in batches:
        if should_stop is not None and should_stop():
            raise Cancelled("extraction cancelled")
        feats = extractor(batch)
        yield s, e, feats
        done += e - s
        if progress is not None:
            progress(done, total)

