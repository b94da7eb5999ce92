"""What cutting a model at a layer costs: the parameters and forward GFLOPs of the network up to
that layer, counted in one pass on the meta device (no memory, no compute)."""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass
from typing import Any

from . import layers as layers_mod
from . import sources
from .fx_lock import FX

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CutCost:
    """The network up to one layer.

    Attributes:
        params: parameters it uses (a module's own parameters count once, when it first runs).
        gflops: one image's forward pass up to the layer's output, in giga multiply-adds (as
            torchvision's weight metadata counts them).
    """

    params: int
    gflops: float


def _gmacs(flops: int) -> float:
    return flops / 2 / 1e9  # FlopCounterMode counts a multiply-add as 2


def _traced_costs(name: str, size: int, device: str) -> dict[str, CutCost]:
    """Every FX node's cumulative cost, in execution order, from an interpreter over the traced graph."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    gm, names = layers_mod.traced_graph(name, size, device)
    counter = FlopCounterMode(display=False)
    seen: set[int] = set()
    params = 0
    out: dict[str, CutCost] = {}

    class Count(torch.fx.Interpreter):
        def run_node(self, n: torch.fx.Node) -> object:
            nonlocal params
            tensors: list[Any] = []
            if n.op == "call_module":
                tensors = list(self.fetch_attr(n.target).parameters())
            elif n.op == "get_attr":
                got = self.fetch_attr(n.target)
                tensors = [got] if isinstance(got, torch.nn.Parameter) else []
            for t in tensors:
                if id(t) not in seen:
                    seen.add(id(t))
                    params += t.numel()
            result = super().run_node(n)
            if n in names:
                out[names[n]] = CutCost(params, _gmacs(counter.get_total_flops()))
            return result

    with FX.shared(), torch.no_grad(), counter:
        Count(gm).run(torch.zeros(1, 3, size, size, device=device))
    return out


def _hooked_costs(name: str, size: int, device: str) -> dict[str, CutCost]:
    """Every module's cumulative cost when it returns, from forward pre-hooks (each module's own
    parameters, counted when it is first entered) and forward hooks (the FLOPs so far)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    src = sources.source_of(name)
    model = src.build(name, src.resolve_weights(name, "none"), device=device)
    counter = FlopCounterMode(display=False)
    seen: set[int] = set()
    params = 0
    out: dict[str, CutCost] = {}

    def enter(module: Any, args: Any) -> None:
        nonlocal params
        for t in module.parameters(recurse=False):
            if id(t) not in seen:
                seen.add(id(t))
                params += t.numel()

    def leave(label: str) -> Any:
        def record(module: Any, args: Any, output: Any) -> None:
            out.setdefault(label, CutCost(params, _gmacs(counter.get_total_flops())))

        return record

    handles = [m.register_forward_pre_hook(enter) for m in model.modules()]
    handles += [m.register_forward_hook(leave(n)) for n, m in sources.hooked_layers_root(model).named_modules() if n]
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, 3, size, size, device=device))
    finally:
        for h in handles:
            h.remove()
    return out


@functools.lru_cache(maxsize=32)
def _all_costs(name: str, size: int, architecture: str) -> dict[str, CutCost]:
    count = _traced_costs if sources.source_of(name).traced else _hooked_costs
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for device in ("meta", "cpu"):
            try:
                return count(name, size, device)
            except (NotImplementedError, RuntimeError) as exc:
                if device == "cpu":
                    raise
                log.debug("meta cost count failed for %s (%s); counting on the CPU", name, exc)
    raise AssertionError("unreachable")


def cut_costs(name: str, nodes: list[str] | tuple[str, ...]) -> dict[str, CutCost]:
    """The cost of cutting model `name` at each of `nodes` (its layer names, networks/layers.py).

    Costs accumulate in execution order: for a layer inside a block of parallel branches, a branch
    that ran before it is counted although the layer does not need it (for block outputs, the
    usual cuts, it does).

    Args:
        name: a model name of any source.
        nodes: layers of that model.

    Returns:
        {node: CutCost}, cached per model and architecture.
    """
    name = sources.canonical(name)
    src = sources.source_of(name)
    costs = _all_costs(name, src.input_size(name), src.architecture(name))
    missing = [n for n in nodes if n not in costs]
    if missing:
        raise ValueError(
            f"model {name!r} has no layer {missing[0]!r} that runs once per pass; "
            f"`python -m explorer layers --model {name}` lists them"
        )
    return {n: costs[n] for n in nodes}
