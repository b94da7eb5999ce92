"""Folding eval-mode BatchNorm into the convolution before it, in a traced feature extractor."""

from __future__ import annotations

from collections import Counter
from typing import Any


def fold_batchnorm(gm: Any) -> int:
    """Fold every `Conv2d -> BatchNorm2d` pair of a GraphModule into one convolution, in place.

    In eval mode a BatchNorm is an affine map per channel, so it can be merged into the weights of
    the convolution that feeds it (torch.nn.utils.fusion.fuse_conv_bn_eval): one pass over the
    activations instead of two. The BatchNorm's node then yields the folded convolution's output, so
    it can still be a chosen layer. A pair is left alone when the convolution's own output is used
    elsewhere (a chosen layer itself, or another branch), when either module is called more than
    once, or when either is in training mode. Sequential blocks the tracer keeps whole (torchvision's
    Conv2dNormActivation in MobileNet and EfficientNet) are replaced by a folded copy: their inside
    is not a node, so nothing can ask for the convolution's output alone.

    Args:
        gm: a torch.fx.GraphModule (e.g. from create_feature_extractor), in eval mode.

    Returns:
        How many BatchNorms were folded.
    """
    import torch
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    modules = dict(gm.named_modules())
    calls = Counter(n.target for n in gm.graph.nodes if n.op == "call_module")
    folded = 0
    for node in list(gm.graph.nodes):
        block = modules.get(node.target) if node.op == "call_module" else None
        if isinstance(block, nn.Sequential) and calls[node.target] == 1:
            copy, n = _fold_sequential(block)
            if n:
                _replace(gm, node.target, copy)
                folded += n
            continue
        bn = block
        if not isinstance(bn, nn.BatchNorm2d) or len(node.args) != 1:
            continue
        src = node.args[0]
        if not isinstance(src, torch.fx.Node) or src.op != "call_module" or len(src.users) != 1:
            continue
        conv = modules.get(src.target)
        if not _foldable(conv, bn) or calls[src.target] != 1 or calls[node.target] != 1:
            continue
        _replace(gm, src.target, fuse_conv_bn_eval(conv, bn))
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)
        folded += 1
    if folded:
        gm.graph.lint()
        gm.recompile()
    return folded


def _foldable(conv: Any, bn: Any) -> bool:
    from torch import nn

    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(bn, nn.BatchNorm2d)
        and not (conv.training or bn.training)
        and bn.track_running_stats
    )


def _fold_sequential(block: Any) -> tuple[Any, int]:
    """A copy of `block` with each (Conv2d, BatchNorm2d) pair of children folded; the original is
    left alone (the model may serve other extractors). Returns (copy, pairs folded)."""
    import copy

    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    children = list(block.children())
    pairs = [i for i in range(len(children) - 1) if _foldable(children[i], children[i + 1])]
    if not pairs or len(children) != len(block._modules):
        return block, 0
    out = copy.deepcopy(block)
    for i in pairs:
        out[i] = fuse_conv_bn_eval(out[i], out[i + 1])
        out[i + 1] = nn.Identity()
    return out, len(pairs)


def _replace(gm: Any, target: str, module: Any) -> None:
    parent, _, name = target.rpartition(".")
    setattr(gm.get_submodule(parent) if parent else gm, name, module)
