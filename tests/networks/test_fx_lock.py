"""torch.fx tracing in one thread while torch modules run in others (the dashboard's situation)."""

from __future__ import annotations

import threading
import time

import numpy as np
import torch

from explorer.extraction.extractor import FeatureExtractor
from explorer.networks import layers
from explorer.networks.fx_lock import SharedExclusiveLock

from ..helpers import Tiny


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
            layers._profile.cache_clear()
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


def test_listing_a_large_model_holds_the_lock_alone_only_to_trace(monkeypatch) -> None:
    """Listing a RegNet's layers builds and runs it on the CPU (its builder computes on tensors);
    only the trace may keep other visitors' extractions waiting, not the build or the run. Checked by
    what happens inside the exclusive hold, not by how long it lasts."""
    import contextlib

    from torchvision import models as tvm

    from explorer.networks.fx_lock import FX

    events: list[str] = []
    exclusive = threading.local()

    class Recorded:
        shared = staticmethod(FX.shared)

        @staticmethod
        @contextlib.contextmanager
        def exclusive():
            with FX.exclusive():
                exclusive.held = True
                events.append("trace")
                try:
                    yield
                finally:
                    exclusive.held = False

    def noted(what: str, fn):
        def call(*args, **kwargs):
            events.append(f"{what} {'inside' if getattr(exclusive, 'held', False) else 'outside'}")
            return fn(*args, **kwargs)

        return call

    real_builder = tvm.get_model_builder
    monkeypatch.setattr(layers, "FX", Recorded)
    monkeypatch.setattr(tvm, "get_model_builder", lambda name: noted("build", real_builder(name)))
    monkeypatch.setattr(torch.fx.Interpreter, "run", noted("run", torch.fx.Interpreter.run))
    layers._profile.cache_clear()
    try:
        prof = layers.profile("regnet_y_3_2gf")
    finally:
        layers._profile.cache_clear()
    assert len(prof.nodes) > 50
    assert "trace" in events and "build outside" in events and "run outside" in events, events
    assert not [e for e in events if e.endswith("inside")], events
