"""Where and at what precision a model runs: CUDA, MPS or the CPU; bf16 where the hardware has it;
the memory layout convolutions run fastest in."""

from __future__ import annotations

from typing import Any


def resolve_device(device: str = "auto") -> str:
    """`auto` picks CUDA, then MPS, then the CPU; an unavailable explicit choice is an error."""
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA GPU is visible; use --device auto or cpu")
    if device == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ValueError("device='mps' but MPS is not available; use --device auto or cpu")
    return device


def cpu_supports_bf16() -> bool:
    """True when oneDNN has native bf16 kernels here (AVX512-BF16 or AMX)."""
    import torch

    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, device: str) -> str:
    """`auto` means bf16 where the hardware runs it natively (CUDA with bf16, CPUs with AVX512-BF16/AMX)."""
    import torch

    if precision != "auto":
        return precision
    if device == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device == "cpu":
        return "bf16" if cpu_supports_bf16() else "fp32"
    return "fp32"


def memory_format(device: str) -> Any:
    """channels_last lets oneDNN/cuDNN run convolutions without layout conversions."""
    import torch

    return torch.channels_last if device in ("cpu", "cuda") else torch.contiguous_format
