"""Layer discovery: FX node names, output shapes from a probe pass, dimension profile, default picks."""

from __future__ import annotations

import functools
import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import module_layers, registry, sources
from .fx_lock import FX
from .pooling import infer_layout

log = logging.getLogger(__name__)

MAX_DEFAULT_BLOCKS = 7


@dataclass(frozen=True)
class LayerInfo:
    """One FX node of a model.

    Attributes:
        node: the FX node name (`features.14`), the layer's name everywhere.
        index: position in execution order.
        depth: relative depth in [0, 1].
        shape: output shape without the batch dimension, at the model's input size.
        layout: `nchw`, `nhwc` (Swin), `tokens` (ViT, N x T x C), `vector` or `other`.
        dim: pooled feature dimension with average pooling.
        size: full output size (C x H x W).
        is_block: the output of a block or stage.
        is_bottleneck: narrower than what comes before and after it.
    """

    node: str
    index: int
    depth: float
    shape: tuple[int, ...]
    layout: str
    dim: int
    size: int
    is_block: bool = False
    is_bottleneck: bool = False


@dataclass(frozen=True)
class LayerProfile:
    """Every usable node of a model, in execution order, with the default picks."""

    model: str
    input_size: int
    layers: tuple[LayerInfo, ...]
    default: tuple[str, ...]
    gflops: float | None = None  # one image's forward pass, where the layers were read by hooks
    class_token: bool = True  # token sequences start with a class token (else `cls` pooling means `mean`)

    def __getitem__(self, node: str) -> LayerInfo:
        for info in self.layers:
            if info.node == node:
                return info
        raise KeyError(node)

    @property
    def nodes(self) -> list[str]:
        return [info.node for info in self.layers]

    def resolve(self, nodes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """Node names as given; a module name (`features.3`) means its output node, as in torchvision's
        create_feature_extractor (`features.3.add`)."""
        known = set(self.nodes)
        out = []
        for n in nodes:
            if n not in known:
                inside = [m for m in self.nodes if m.startswith(n + ".")]
                n = inside[-1] if inside else n
            out.append(n)
        self.check(out)
        return tuple(out)

    def check(self, nodes: list[str] | tuple[str, ...]) -> None:
        """Raise a ValueError naming any node the model does not have."""
        known = set(self.nodes)
        bad = [n for n in nodes if n not in known]
        if bad:
            import difflib

            close = difflib.get_close_matches(bad[0], self.nodes, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise ValueError(
                f"model {self.model!r} has no layer {bad[0]!r}; {hint}"
                f"`python -m explorer layers --model {self.model}` lists them"
            )

    def sort(self, nodes: list[str] | tuple[str, ...]) -> tuple[str, ...]:
        """The given nodes in execution order, without repeats."""
        order = {n: i for i, n in enumerate(self.nodes)}
        return tuple(sorted(set(nodes), key=order.__getitem__))


def _pooled_dim(shape: tuple[int, ...], layout: str) -> int:
    if layout in ("vector", "tokens", "nhwc", "other"):
        return int(shape[-1])
    return int(shape[0])


def _block_outputs(nodes: list[str], min_blocks: int = 5) -> list[str]:
    """The last node of each block, at the shallowest module depth that gives `min_blocks` blocks.

    A block is a group of two or more nodes sharing the first `d` parts of their dotted names
    (`features.3.*`, `layer2.1.*`, `encoder.layers.encoder_layer_4.*`, `Mixed_6b.*`).
    """
    best: list[str] = []
    for d in range(1, 5):
        groups: dict[str, list[str]] = {}
        order: list[str] = []
        for n in nodes:
            parts = n.split(".")
            key = (
                ".".join(parts[:d]) if len(parts) >= d else "\0" + n
            )  # a module named as its group is the group's output
            if key not in groups:
                order.append(key)
            groups.setdefault(key, []).append(n)
        blocks = [groups[k][-1] for k in order if len(groups[k]) > 1]
        if len(blocks) >= min_blocks:
            return blocks
        if len(blocks) > len(best):
            best = blocks
    return best


def _stage_outputs(infos: list[LayerInfo]) -> list[str]:
    """Fallback for flat networks (VGG, AlexNet): the last node before each change of map size."""
    maps = [i for i in infos if i.layout in ("nchw", "nhwc")]
    spatial = [i.shape[1:] if i.layout == "nchw" else i.shape[:2] for i in maps]
    return [m.node for j, m in enumerate(maps) if j == len(maps) - 1 or spatial[j + 1] != spatial[j]]


def _bottlenecks(infos: list[LayerInfo]) -> set[str]:
    """Last node of each run of equal width that is narrower than the runs on both sides."""
    maps = [i for i in infos if i.layout in ("nchw", "nhwc", "tokens")]
    runs: list[list[LayerInfo]] = []
    for info in maps:
        if runs and runs[-1][-1].dim == info.dim:
            runs[-1].append(info)
        else:
            runs.append([info])
    marks = set()
    for j in range(1, len(runs) - 1):
        if runs[j][0].dim < runs[j - 1][0].dim and runs[j][0].dim < runs[j + 1][0].dim:
            marks.add(runs[j][-1].node)
    return marks


def _spread(blocks: list[str], k: int) -> list[str]:
    if len(blocks) <= k:
        return list(blocks)
    idx = np.unique(np.round(np.linspace(0, len(blocks) - 1, k)).astype(int))
    return [blocks[i] for i in idx]


@functools.cache
def _regnet_widths_on_the_cpu() -> None:
    """Let RegNets be built on the meta device: their builder computes the block widths with
    tensors and reads them back (`.tolist()`), which a meta tensor cannot do. Those few small
    tensors are made on the CPU (as they are for any CPU build); the model itself stays on meta.
    Installed once; it changes nothing for a build on a real device."""
    import torch
    from torchvision.models import regnet

    original = regnet.BlockParams.from_init_params.__func__  # type: ignore[attr-defined]

    def from_init_params(cls, *args, **kwargs):  # type: ignore[no-untyped-def]
        with torch.device("cpu"):
            return original(cls, *args, **kwargs)

    regnet.BlockParams.from_init_params = classmethod(from_init_params)  # type: ignore[method-assign]


def traced_graph(name: str, size: int, device: str = "meta") -> tuple[Any, dict]:
    """A torchvision model (random weights, for input images of `size`) traced as
    `create_feature_extractor` traces it:
    (GraphModule, {fx.Node: node name}), built on `device` (meta: no memory, no compute).

    Only the trace holds the FX lock exclusively (it patches torch modules process-wide,
    fx_lock.py); building the model, seconds on the CPU for a large RegNet, holds it shared.
    """
    import torch
    from torchvision import models as tvm
    from torchvision.models.feature_extraction import NodePathTracer, _set_default_tracer_kwargs

    builder = tvm.get_model_builder(name)
    if name.startswith("regnet_"):
        _regnet_widths_on_the_cpu()
    kwargs: dict = {"image_size": size} if name.startswith("vit_") else {}
    if name == "maxvit_t":
        kwargs = {"input_size": (size, size)}
    with FX.shared(), torch.device(device), torch.random.fork_rng(devices=[]):
        model = builder(weights=None, **kwargs).eval()
    tracer = NodePathTracer(**_set_default_tracer_kwargs(None))
    with FX.exclusive():
        graph = tracer.trace(model)
    return torch.fx.GraphModule(tracer.root, graph), tracer.node_to_qualname


def _probe_shapes(name: str, size: int) -> dict[str, tuple[int, ...]]:
    """Output shape of every node, from one pass on the meta device (no memory, no compute).

    One eval-mode trace with torchvision's own tracer and defaults gives the node names that
    `create_feature_extractor` accepts; an interpreter records every node's output on the way (one
    trace, not the four of get_graph_node_names + create_feature_extractor). The probe batch is 2,
    so tensors without a batch dimension (Swin's position biases) drop out.
    """
    import torch

    class Record(torch.fx.Interpreter):
        def __init__(self, gm: torch.fx.GraphModule, names: dict) -> None:
            super().__init__(gm)
            self.names, self.outputs = names, {}

        def run_node(self, n: torch.fx.Node) -> object:
            out = super().run_node(n)
            if n in self.names:
                self.outputs[self.names[n]] = out
            return out

    def run(device: str) -> dict:
        gm, names = traced_graph(name, size, device)
        rec = Record(gm, names)
        with FX.shared(), torch.no_grad():
            rec.run(torch.zeros(2, 3, size, size, device=device))
        return rec.outputs

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            out = run("meta")
        except (
            NotImplementedError,
            RuntimeError,
        ) as exc:  # a builder that computes on tensors (RegNet is handled above)
            log.debug("meta probe failed for %s (%s); probing on the CPU", name, exc)
            out = run("cpu")
    return {
        k: tuple(v.shape[1:])
        for k, v in out.items()
        if isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[0] == 2
    }


def _hooked_shapes(name: str, size: int) -> tuple[dict[str, tuple[int, ...]], float, bool]:
    """Shapes of a hooked model's modules (module_layers.py), its GFLOPs and whether it has a class
    token: built with random weights on the meta device where its source can build there, else on
    the CPU."""
    src = sources.source_of(name)
    weights = src.resolve_weights(name, "none")
    for device in ("meta", "cpu"):
        try:
            model = src.build(name, weights, device=device)
            shapes, gflops = module_layers.probe_shapes(model, sources.hooked_layers_root(model), size, device)
            return shapes, gflops, module_layers.has_class_token(model)
        except (NotImplementedError, RuntimeError) as exc:
            if device == "cpu":
                raise
            log.debug("meta probe failed for %s (%s); probing on the CPU", name, exc)
    raise AssertionError("unreachable")


def profile(name: str, input_size: int | None = None) -> LayerProfile:
    """The layer profile of a model.

    Args:
        name: a model name of any source (networks/sources.py).
        input_size: probe input size (default: the crop size of the model's preprocessing).

    Returns:
        A LayerProfile (cached per name, size and architecture: an own model's file or builder
        code that changed is read again).
    """
    name = sources.canonical(name)
    src = sources.source_of(name)
    src.check(name)
    return _profile(name, input_size or src.input_size(name), src.architecture(name))


@functools.lru_cache(maxsize=32)
def _profile(name: str, size: int, architecture: str) -> LayerProfile:
    gflops, class_token = None, True  # torchvision's only token model, its ViT, has a class token
    if sources.source_of(name).traced:
        shapes = _probe_shapes(name, size)
    else:
        shapes, gflops, class_token = _hooked_shapes(name, size)
    names = [n for n in shapes if n != "x"]
    if not names:
        raise ValueError(f"found no layers in {name}: no module returned a tensor with the batch first")
    n = max(len(names) - 1, 1)
    infos = []
    for i, node in enumerate(names):
        shape = shapes[node]
        layout = infer_layout(shape, name)
        infos.append(LayerInfo(node, i, i / n, shape, layout, _pooled_dim(shape, layout), int(np.prod(shape))))
    blocks = [b for b in _block_outputs(names) if infer_layout(shapes[b], name) in ("nchw", "nhwc", "tokens")]
    if len(blocks) < 5:
        blocks = _stage_outputs(infos)
    marks = _bottlenecks(infos)
    block_set = set(blocks)
    infos = [
        LayerInfo(**{**i.__dict__, "is_block": i.node in block_set, "is_bottleneck": i.node in marks}) for i in infos
    ]
    default = _spread(blocks, MAX_DEFAULT_BLOCKS)
    last_map = max((i.index for i in infos if i.layout != "vector"), default=-1)
    final = next((i.node for i in infos if i.index > last_map and i.layout == "vector"), None)
    if final is not None and final != names[-1]:
        default.append(final)
    return LayerProfile(name, size, tuple(infos), tuple(default), gflops, class_token)


def forward_gflops(name: str, pretrained: bool = True) -> float | None:
    """GFLOPs of one image's forward pass: torchvision's weight metadata, or counted on the meta
    device for a hooked model (None when unknown)."""
    src = sources.source_of(name)
    if src.traced:
        return registry.forward_gflops(sources.canonical(name), pretrained)
    return profile(name).gflops
