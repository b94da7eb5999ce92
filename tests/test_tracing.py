"""torch.fx tracing in one thread while torch modules run in others (the dashboard's situation)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from explorer import layers
from explorer.extract import FeatureExtractor, BatchDecoder, run_batches, spans
from explorer.tracing import SharedExclusiveLock

from .test_layers_extract import Tiny


def test_tracing_while_another_thread_runs_a_model() -> None:
    """A visitor lists a new model's layers (a trace) while another visitor's extraction runs."""
    ex = FeatureExtractor(Tiny().eval(), ["relu", "fc"], model_name="tiny")
    x = torch.rand(2, 3, 8, 8)
    want = ex(x)
    errors: list[BaseException] = []
    calls = 0
    stop = threading.Event()

    def forward_loop() -> None:
        nonlocal calls
        try:
            while not stop.is_set():
                got = ex(x)
                np.testing.assert_allclose(got["fc"], want["fc"], rtol=1e-6)
                calls += 1
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=forward_loop)
    t.start()
    try:
        for name in ("resnet18", "squeezenet1_0", "mobilenet_v3_small"):
            layers.profile.cache_clear()
            assert layers.profile(name).nodes
            FeatureExtractor(Tiny().eval(), ["conv"], model_name="tiny")  # a trace of its own
    finally:
        stop.set()
        t.join()
    assert not errors, f"module call during a trace failed: {errors[0]!r}"
    assert calls > 0


def test_shared_exclusive_lock() -> None:
    lock = SharedExclusiveLock()
    inside: list[str] = []
    with lock.shared(), lock.shared():  # shared holders overlap (from one thread here: no waiting writer)
        inside.append("two shared")
    entered = threading.Event()
    release = threading.Event()

    def hold_shared() -> None:
        with lock.shared():
            entered.set()
            release.wait(5)

    t = threading.Thread(target=hold_shared)
    t.start()
    entered.wait(5)
    got_exclusive = threading.Event()

    def take_exclusive() -> None:
        with lock.exclusive():
            got_exclusive.set()

    w = threading.Thread(target=take_exclusive)
    w.start()
    time.sleep(0.1)
    assert not got_exclusive.is_set()  # waits for the shared holder
    release.set()
    assert got_exclusive.wait(5)
    t.join()
    w.join()


class _Item:
    def __init__(self, i: int, fail: bool = False) -> None:
        self.i, self.fail = i, fail

    def read_bytes(self) -> bytes:
        import io

        from PIL import Image

        if self.fail:
            raise OSError(f"item {self.i} unreadable")
        buf = io.BytesIO()
        Image.new("RGB", (8, 8), (self.i, 0, 0)).save(buf, "PNG")
        return buf.getvalue()


def _to_tensor(img):  # noqa: ANN001, ANN202
    return torch.from_numpy(np.asarray(img, dtype=np.float32)).permute(2, 0, 1) / 255


def test_spans_respect_chunk_boundaries() -> None:
    got = spans(600, 32, 256)
    assert got[7] == (224, 256) and got[8] == (256, 288) and got[-1] == (576, 600)
    assert sum(e - s for s, e in got) == 600
    assert spans(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert spans(0, 4) == []


def test_prefetch_order_progress_and_errors() -> None:
    items = [_Item(i) for i in range(10)]
    seen = []
    ex = FeatureExtractor(Tiny().eval(), ["flatten"], model_name="tiny")
    with BatchDecoder(items, _to_tensor, spans(10, 4)) as batches:
        for s, e, feats in run_batches(ex, batches, progress=lambda d, t: seen.append((d, t))):
            assert feats["flatten"].shape == (e - s, 2)
            # channel 0 of the 1x1 conv sums R+G+B: R = i/255 per image, in order
            np.testing.assert_allclose(feats["flatten"][:, 0], np.arange(s, e) / 255, rtol=1e-5)
    assert seen == [(4, 10), (8, 10), (10, 10)]
    bad = [_Item(0), _Item(1, fail=True)]
    with pytest.raises(OSError, match="item 1 unreadable"), BatchDecoder(bad, _to_tensor, spans(2, 1)) as batches:
        list(run_batches(ex, batches))


def test_prefetch_closed_unread_stops_its_thread() -> None:
    before = {t.ident for t in threading.enumerate()}
    p = BatchDecoder([_Item(i) for i in range(64)], _to_tensor, spans(64, 1), depth=1)
    time.sleep(0.05)  # the producer fills its queue and waits
    p.close()
    assert not any(t.name == "explorer-decode" and t.ident not in before for t in threading.enumerate())
