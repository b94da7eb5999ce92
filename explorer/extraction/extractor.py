"""The two one-pass multi-layer extractors: FX nodes of a traced torchvision model, and forward hooks on
the modules of every other source; each pools every chosen layer as it is made."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..networks.batchnorm import fold_batchnorm
from ..networks.fx_lock import FX
from ..networks.module_layers import first_tensor
from ..networks.pooling import pool_auto
from ..networks.sources import hooked_layers_root, source_of
from .device import memory_format

log = logging.getLogger(__name__)


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
        self.memory_format = memory_format(device)
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
    ) -> None:

        if not nodes:
            raise ValueError("no layers chosen; give at least one module name")
        self.nodes, self.model_name = list(nodes), model_name
        self.pooling, self.token_pooling = pooling, token_pooling
        self.device, self.precision = device, precision
        self.memory_format = memory_format(device)
        self.model = model.to(device=device, memory_format=self.memory_format)
        modules = dict(hooked_layers_root(self.model).named_modules())
        missing = [n for n in self.nodes if n not in modules]
        if missing:
            raise ValueError(f"{model_name} has no module {missing[0]!r}")
        self._pooled: dict[str, Any] = {}
        for n in self.nodes:
            modules[n].register_forward_hook(self._hook(n))

    def _hook(self, name: str) -> Callable[..., None]:

        def capture(module: Any, args: Any, output: Any) -> None:
            self._pooled[name] = pool_auto(
                first_tensor(output), model=self.model_name, pooling=self.pooling, token_pooling=self.token_pooling
            )
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
            raise RuntimeError(
                f"{self.model_name}: the modules {', '.join(missed[:3])} did not run in the forward pass"
            )
        return self._to_numpy({n: self._pooled[n] for n in self.nodes})


def build_extractor(
    spec: Any, weights: Any, nodes: Sequence[str], *, device: str, precision: str, fold_bn: bool
) -> FeatureExtractor | HookExtractor:
    """The extractor of `spec.model`'s chosen layers, its model built with `weights`: FX for
    torchvision's models, forward hooks for every other source (networks/sources.py)."""

    src = source_of(spec.model)
    model = src.build(spec.model, weights)
    common = dict(
        model_name=spec.model,
        pooling=spec.pooling,
        token_pooling=spec.token_pooling,
        device=device,
        precision=precision,
    )
    if src.traced:
        return FeatureExtractor(model, nodes, fold_bn=fold_bn, **common)
    return HookExtractor(model, nodes, **common)
