"""Layer discovery for models read with forward hooks (timm, Hugging Face, own models): every
module that runs once per forward pass and returns a new tensor, in the order the modules finish,
with its output shape and the model's forward cost, from one pass on the meta device."""

from __future__ import annotations

import logging
import warnings
from typing import Any

log = logging.getLogger(__name__)


def first_tensor(output: Any) -> Any:
    """The tensor a module returned: itself, or the first tensor of a tuple, list or model output."""
    import torch

    if isinstance(output, torch.Tensor):
        return output
    values = output.values() if isinstance(output, dict) else output if isinstance(output, (tuple, list)) else ()
    return next((v for v in values if isinstance(v, torch.Tensor)), None)


CLASS_TOKEN_NAMES = ("cls_token", "class_token", "class_embedding")  # timm, torchvision and DINOv2/ViT, CLIP


def has_class_token(model: Any) -> bool:
    """Whether the model prepends a class token to its token sequences (a parameter of that name);
    a Swin, a ConvNeXt or a ViT pooled by averaging has none, and its first token is a patch."""
    return any(name.rsplit(".", 1)[-1] in CLASS_TOKEN_NAMES for name, _ in model.named_parameters())


def probe_shapes(model: Any, root: Any, size: int, device: str) -> tuple[dict[str, tuple[int, ...]], float]:
    """({module name: output shape without the batch}, GFLOPs of one image) from one pass of a batch of 2.

    A module is left out when it runs more than once per pass (a shared activation: which call would
    it be?), returns no tensor, or returns the very tensor a module before it returned (a container
    such as `blocks`, whose output is its last block's; a dropout in eval mode).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    calls: dict[str, int] = {}
    outputs: dict[str, Any] = {}
    seen: dict[int, Any] = {}  # every tensor returned so far, kept alive so that no id is reused

    def hook(name: str) -> Any:
        def record(module: Any, args: Any, output: Any) -> None:
            calls[name] = calls.get(name, 0) + 1
            t = first_tensor(output)
            if t is not None and t.dim() >= 2 and t.shape[0] == 2 and id(t) not in seen and name not in outputs:
                outputs[name] = t
            if t is not None:
                seen[id(t)] = t

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in root.named_modules() if n]
    counter = FlopCounterMode(display=False)
    try:
        with warnings.catch_warnings(), torch.no_grad(), counter:
            warnings.simplefilter("ignore")
            model(torch.zeros(2, 3, size, size, device=device))
    finally:
        for h in handles:
            h.remove()
    shapes = {n: tuple(t.shape[1:]) for n, t in outputs.items() if calls[n] == 1}
    return shapes, counter.get_total_flops() / 2 / 2 / 1e9  # per image, in multiply-adds (as torchvision counts)
