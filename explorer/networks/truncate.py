"""The network up to one layer, as a module of its own that returns the layer's pooled features:
torchvision's `create_feature_extractor` for traced models; for every other source, the model
exported with the layer's output captured, its graph cut after that output (dead code and unused
weights removed) and exported again."""

from __future__ import annotations

import logging
import warnings
from typing import Any

from . import sources
from .fx_lock import FX
from .module_layers import first_tensor
from .pooling import infer_layout, pool

log = logging.getLogger(__name__)

MAX_BATCH = 4096  # the exported program's largest batch (its batch dimension is dynamic up to this)


def _pooled(layout: str, pooling: str, token_pooling: str) -> Any:
    import torch

    class Pool(torch.nn.Module):
        def forward(self, t: Any) -> Any:
            return pool(t, layout=layout, pooling=pooling, token_pooling=token_pooling)

    return Pool()


def batch_dim() -> Any:
    """The exported programs' dynamic batch dimension (1 to MAX_BATCH)."""
    import torch

    return torch.export.Dim("batch", min=1, max=MAX_BATCH)


def _cut_graph(captured: Any, example: Any) -> Any:
    """A module running only what `captured`'s output needs: exported, its graph's dead nodes and
    unused weights removed (eval-mode dropouts count as pure here), exported again."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the capture list is assigned during export: harmless here
        ep = torch.export.export(captured, (example,), dynamic_shapes=({0: batch_dim()},), strict=False)
    gm = ep.module()
    gm.graph.eliminate_dead_code(is_impure_node=lambda n: n.op in ("placeholder", "output"))
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in list(gm.named_parameters()) + list(gm.named_buffers()):
        if name not in used:
            owner, _, attr = name.rpartition(".")
            delattr(gm.get_submodule(owner) if owner else gm, attr)
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def truncated(
    model: str, built: Any, node: str, *, input_size: int, pooling: str = "avg", token_pooling: str = "cls"
) -> Any:
    """The network of `model` up to layer `node`, returning its pooled (B, D) float32 features.

    Args:
        model: the model's name (any source).
        built: the model in eval mode (its source's `build`), on the CPU in float32.
        node: the layer (an FX node for torchvision, a module name otherwise).
        input_size: the square input size of its preprocessing.
        pooling, token_pooling: as the features were pooled.

    Returns:
        An eval-mode module: (B, 3, S, S) normalised float32 images -> (B, D) features.
    """
    import torch

    src = sources.source_of(model)
    example = torch.zeros(2, 3, input_size, input_size)
    if src.traced:
        from torchvision.models.feature_extraction import create_feature_extractor

        with FX.exclusive():
            body = create_feature_extractor(built, return_nodes={node: "out"}).eval()
        with FX.shared(), torch.no_grad():
            shape = tuple(body(example)["out"].shape[1:])
        layout = infer_layout(shape, model)

        class Cut(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.body, self.pool = body, _pooled(layout, pooling, token_pooling)

            def forward(self, x: Any) -> Any:
                return self.pool(self.body(x)["out"])

        return Cut().eval()

    modules = dict(sources.hooked_layers_root(built).named_modules())
    if node not in modules:
        raise ValueError(f"{model} has no module {node!r}; `python -m explorer layers --model {model}` lists them")
    layer = modules[node]

    class Captured(torch.nn.Module):
        """The whole model, returning the layer's pooled output (what follows it is dead code)."""

        def __init__(self) -> None:
            super().__init__()
            self.model, self.layout = built, None
            self._out: list[Any] = []
            layer.register_forward_hook(lambda m, a, out: self._out.append(first_tensor(out)))

        def forward(self, x: Any) -> Any:
            self._out.clear()
            self.model(x)
            t = self._out[0]
            return pool(t, layout=infer_layout(tuple(t.shape[1:]), model), pooling=pooling, token_pooling=token_pooling)

    with torch.no_grad():
        return _cut_graph(Captured().eval(), example)
