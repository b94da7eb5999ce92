"""The threaded decode pipeline: images read, decoded and preprocessed in batches, ahead of the model
in a thread or between its batches, each image decoded once for every model that needs it."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Self

import numpy as np

from ..data.items import ImageItem
from ..networks.preprocess import Preprocess
from ..progress import Cancelled, Progress, ShouldStop
from . import threads

log = logging.getLogger(__name__)


def spans(n: int, batch_size: int, chunk: int | None = None) -> list[tuple[int, int]]:
    """Batch index ranges over n items; with `chunk`, no batch crosses a multiple of it."""
    step = chunk or n or 1
    return [
        (s, min(s + batch_size, c + step, n)) for c in range(0, n, step) for s in range(c, min(c + step, n), batch_size)
    ]


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
        distinct = [
            pre.batch(None if r is None else r[j] for r in rows) for j, pre in enumerate((self._pre, *self._also))
        ]
        return [distinct[j] for j in self._which]  # one batch per model, shared where their preprocessing is

    def _put(self, got: Any) -> bool:
        while not self._stop.is_set():
            with contextlib.suppress(queue.Full):
                self._q.put(got, timeout=0.1)
                return True
        return False

    def _batches(self, lower_priority: bool) -> Iterator[tuple[int, int, Any]]:
        workers = self._workers
        pool = (
            ThreadPoolExecutor(
                workers, initializer=threads.lower_priority if lower_priority else threads.one_omp_thread
            )
            if workers > 1
            else None
        )
        try:
            for s, e in self.ranges:
                if self._stop.is_set():
                    return
                yield s, e, self._stack(pool.map(self._prep, range(s, e)) if pool else map(self._prep, range(s, e)))
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def _produce(self) -> None:
        threads.lower_priority()  # this thread decodes (with workers > 1: stacks and normalises) batches
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
    extractor: Callable[[Any], dict[str, np.ndarray]],
    batches: BatchDecoder,
    *,
    progress: Progress | None = None,
    should_stop: ShouldStop | None = None,
    offset: int = 0,
    total: int | None = None,
) -> Iterator[tuple[int, int, dict[str, np.ndarray]]]:
    """Yield (start, stop, {node: features}) for each decoded batch.

    Args:
        extractor: an extractor (extractor.py): a batch -> {node: features}.
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
