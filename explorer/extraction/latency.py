"""The measured latency of a model up to each chosen layer, on this machine: timestamps taken as
each layer's output is made, in a few timed passes of a random batch at batch 1 and batch 32,
through the same extractor the features come from (device, precision, memory format, folded
BatchNorm). Bounded: a warm-up pass, then repeats until a time budget is spent."""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from ..networks.sources import hooked_layers_root
from .backend import FOLD_BATCHNORM
from .extractor import FeatureExtractor, HookExtractor, build_extractor

BATCH_SIZES = (1, 32)
REPEATS = {1: 10, 32: 3}  # most timed passes per batch size ...
BUDGET_S = {1: 0.5, 32: 1.5}  # ... stopping once this much time has gone into them (after one, at least)


class _Clock:
    """Stamps the time each layer's output is made, relative to `start()` (on CUDA, once the GPU is done)."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.t0 = 0.0
        self.marks: dict[str, float] = {}

    def start(self) -> None:
        self._sync()
        self.marks = {}
        self.t0 = time.perf_counter()

    def mark(self, node: str) -> None:
        self._sync()
        self.marks.setdefault(node, time.perf_counter() - self.t0)

    def _sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()


def _install(extractor: FeatureExtractor | HookExtractor, clock: _Clock) -> None:
    """Make the extractor's model call `clock.mark(node)` as each chosen layer's output is made."""
    import torch

    class Stamp(torch.nn.Module):
        def __init__(self, node: str) -> None:
            super().__init__()
            self.node = node

        def forward(self, x: Any) -> Any:
            clock.mark(self.node)
            return x

    if isinstance(extractor, FeatureExtractor):  # a traced graph: a stamp module after each returned node
        gm = extractor.fx
        out_node = next(n for n in gm.graph.nodes if n.op == "output")
        for i, (name, node) in enumerate(out_node.args[0].items()):
            gm.add_submodule(f"_latency_stamp_{i}", Stamp(name))
            with gm.graph.inserting_after(node):
                gm.graph.call_module(f"_latency_stamp_{i}", (node,))
        gm.recompile()
        return

    modules = dict(hooked_layers_root(extractor.model).named_modules())
    for name in extractor.nodes:  # before the capture hook, which ends the pass after the deepest layer
        modules[name].register_forward_hook(lambda m, a, o, name=name: clock.mark(name), prepend=True)


def layer_latency(
    spec: Any, weights: Any, nodes: Sequence[str], *, device: str, precision: str, input_size: int
) -> dict[str, tuple[float, float]]:
    """Milliseconds per image from the start of a forward pass to each layer's output.

    Args:
        spec: the run's ExtractSpec (model, pooling).
        weights: its resolved weights (the values do not change the time; the build does).
        nodes: the layers' nodes (FX nodes or module names), as the extractor takes them.
        device, precision: as the extraction runs.
        input_size: the square input size of the model's preprocessing.

    Returns:
        {node: (ms per image at batch 1, ms per image at batch 32)}, the median over the timed passes.
    """
    import torch

    extractor = build_extractor(spec, weights, nodes, device=device, precision=precision, fold_bn=FOLD_BATCHNORM)
    clock = _Clock(device)
    _install(extractor, clock)
    gen = torch.Generator().manual_seed(0)
    out: dict[str, list[float]] = {n: [] for n in nodes}
    for b in BATCH_SIZES:
        batch = torch.randn(b, 3, input_size, input_size, generator=gen)
        extractor(batch)  # warm-up: kernels chosen, caches filled
        times: dict[str, list[float]] = {n: [] for n in nodes}
        spent, reps = 0.0, 0
        while reps < REPEATS[b] and (reps == 0 or spent < BUDGET_S[b]):
            t = time.perf_counter()
            clock.start()
            extractor(batch)
            for n in nodes:
                times[n].append(clock.marks[n] * 1000 / b)
            spent += time.perf_counter() - t
            reps += 1
        for n in nodes:
            out[n].append(statistics.median(times[n]))
    return {n: (v[0], v[1]) for n, v in out.items()}


def machine() -> str:
    """What the latency was measured on: the device's name and the threads the model runs on."""
    import platform

    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}"
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu or platform.machine()}, {torch.get_num_threads()} threads"
