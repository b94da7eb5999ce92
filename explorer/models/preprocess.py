"""The weights' preprocessing, applied per image where it must be and per batch where it can be."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from PIL import Image

from ..data.images import BACKGROUND, ImageError, load_rgb
from .fx_lock import FX


class Preprocess:
    """Runs a torchvision weights transform as (per-image part, per-batch part).

    torchvision's classification presets (`ImageClassification`) resize and crop, convert to float
    and normalise. Resize and crop need each PIL image; the last two are elementwise, so they run
    once on the stacked uint8 batch, giving bit-identical tensors (the preset accepts batched tensors
    too). Per image they cost more than half of preprocessing: on 224-px photos 1.2-1.8 ms of 2.5 ms,
    mostly thread start-up of small tensor ops (docs/benchmarks.md, "Measured"). Any other transform runs whole,
    per image.

    Args:
        transform: the weights' `transforms()` object.
    """

    def __init__(self, transform: Any) -> None:
        self.transform = transform
        self.split = _is_preset(transform)

    def image(self, img: Any) -> Any:
        """One PIL image -> a (3, H, W) tensor: uint8 when split, else the transform's output."""
        import torchvision.transforms.functional as F

        t = self.transform
        if not self.split:
            with FX.shared():  # the transform is a torch module (fx_lock.py)
                return t(img)
        img = F.resize(img, t.resize_size, interpolation=t.interpolation, antialias=t.antialias)
        return F.pil_to_tensor(F.center_crop(img, t.crop_size))

    def decode(self, read: Callable[[], bytes], max_pixels: int) -> tuple[Any, str | None]:
        """Read and decode one image into `image`'s tensor: (tensor, None), or (None, the reason)
        when the file cannot be read or decoded; `batch` puts a blank in its place so that the
        batch goes on, and the caller leaves the image out."""
        try:
            return self.image(load_rgb(read(), max_pixels=max_pixels)), None
        except ImageError as exc:
            return None, str(exc)
        except OSError as exc:
            return None, f"unreadable file: {exc}"

    def batch(self, images: Iterable[Any]) -> Any:
        """Tensors from `image` -> the (N, 3, H, W) float batch the transform would have produced."""
        import torch
        import torchvision.transforms.functional as F

        images = list(images)
        if any(t is None for t in images):  # images `decode` could not read: blanks of the others' shape
            good = next((t for t in images if t is not None), None)
            blank = torch.zeros_like(good) if good is not None else self.image(Image.new("RGB", (32, 32), BACKGROUND))
            images = [blank if t is None else t for t in images]
        x = torch.stack(images)
        if not self.split:
            return x
        t = self.transform
        return F.normalize(F.convert_image_dtype(x, torch.float), mean=t.mean, std=t.std, inplace=True)


def _is_preset(transform: Any) -> bool:
    try:
        from torchvision.transforms._presets import ImageClassification
    except ImportError:  # a torchvision without the presets module: run transforms whole
        return False
    return type(transform) is ImageClassification
