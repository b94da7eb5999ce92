"""The weights' preprocessing, applied per image where it must be and per batch where it can be."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from ..data.images import BACKGROUND, ImageError, load_rgb
from .fx_lock import FX


class Preprocess:
    """Runs a model's preprocessing as (per-image part, per-batch part).

    torchvision's classification presets (`ImageClassification`), and a `Compose` of resize, crop,
    to-tensor and normalise (timm's transforms; Hugging Face image processors, from_image_processor)
    resize and crop, convert to float and normalise. Resize and crop need each PIL image; the last two are elementwise, so they run
    once on the stacked uint8 batch, giving bit-identical tensors (the preset accepts batched tensors
    too). Per image they cost more than half of preprocessing: on 224-px photos 1.2-1.8 ms of 2.5 ms,
    mostly thread start-up of small tensor ops (docs/benchmarks.md, "Measured"). Any other transform runs whole,
    per image.

    Args:
        transform: the model's preprocessing (a PIL image -> a float tensor).
    """

    def __init__(self, transform: Any) -> None:
        self.transform = transform
        self.steps = _split_steps(transform)
        self.split = self.steps is not None

    def same_as(self, other: Preprocess) -> bool:
        """Whether the two give the same tensors: the same split steps (an unsplit transform only
        itself)."""
        if self.steps is None or other.steps is None:
            return self.transform is other.transform
        return self.steps == other.steps

    def image(self, img: Any) -> Any:
        """One PIL image -> a (3, H, W) tensor: uint8 when split, else the transform's output."""
        import torchvision.transforms.functional as F

        if self.steps is None:
            with FX.shared():  # the transform is a torch module (fx_lock.py)
                return self.transform(img)
        s = self.steps
        if s.resize_size is not None:
            img = F.resize(img, s.resize_size, interpolation=s.interpolation, antialias=True)
        if s.crop_size is not None:
            img = F.center_crop(img, s.crop_size)
        return F.pil_to_tensor(img)

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

    def decode_for(
        self, others: Sequence[Preprocess], read: Callable[[], bytes], max_pixels: int
    ) -> tuple[list[Any] | None, str | None]:
        """Read and decode one image once, then give it this preprocessing and each of `others`:
        ([tensor per preprocessing], None), or (None, the reason it cannot be read). What a sweep
        of several models whose preprocessing differs decodes once (each resizes the one image)."""
        try:
            img = load_rgb(read(), max_pixels=max_pixels)
        except ImageError as exc:
            return None, str(exc)
        except OSError as exc:
            return None, f"unreadable file: {exc}"
        return [pre.image(img) for pre in (self, *others)], None

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
        if self.steps is None:
            return x
        x = F.convert_image_dtype(x, torch.float)
        return x if self.steps.mean is None else F.normalize(x, mean=self.steps.mean, std=self.steps.std, inplace=True)


@dataclass(frozen=True)
class _Steps:
    """A preprocessing that resizes and crops each image, then converts to [0, 1] and normalises."""

    resize_size: list[int] | None
    interpolation: Any
    crop_size: list[int] | None
    mean: list[float] | None
    std: list[float] | None


def _split_steps(transform: Any) -> _Steps | None:
    """The steps of a transform that Preprocess can split, or None to run it whole per image."""
    try:
        from torchvision import transforms as T
        from torchvision.transforms._presets import ImageClassification
    except ImportError:  # a torchvision without the presets module: run transforms whole
        return None
    if type(transform) is ImageClassification:
        if not transform.antialias:
            return None
        t = transform
        return _Steps(list(t.resize_size), t.interpolation, list(t.crop_size), list(t.mean), list(t.std))
    if not isinstance(transform, T.Compose):
        return None
    resize = crop = norm = None
    to_tensor = False
    for step in transform.transforms:
        kind = type(step).__name__
        if (
            isinstance(step, T.Resize)
            and resize is None
            and crop is None
            and not to_tensor
            and step.max_size is None
            and step.antialias in (True, None)
        ):
            resize = step
        elif isinstance(step, T.CenterCrop) and crop is None and not to_tensor:
            crop = step
        elif kind in ("ToTensor", "MaybeToTensor") and not to_tensor:  # timm's MaybeToTensor: ToTensor for PIL images
            to_tensor = True
        elif isinstance(step, T.Normalize) and to_tensor and norm is None and not step.inplace:
            norm = step
        else:
            return None
    if not to_tensor:
        return None
    size = None if resize is None else [resize.size] if isinstance(resize.size, int) else list(resize.size)
    return _Steps(
        size,
        resize.interpolation if resize else None,
        list(crop.size) if crop else None,
        [float(v) for v in norm.mean] if norm else None,
        [float(v) for v in norm.std] if norm else None,
    )


def from_image_processor(processor: Any) -> Any:
    """A Hugging Face image processor's preprocessing as torchvision transforms (PIL's resampling
    filter, shortest-edge or fixed-size resize, centre crop, rescale to [0, 1], normalise): the
    values it holds, applied by Preprocess per image and per batch. ConvNeXt's processor resizes to
    size / crop_pct and crops below 384 px, as it does itself.

    Raises:
        ValueError: a processor that rescales by another factor than 1/255 (no such vision model is known).
    """
    from torchvision import transforms as T
    from torchvision.transforms import InterpolationMode

    modes = {
        0: InterpolationMode.NEAREST,
        1: InterpolationMode.LANCZOS,
        2: InterpolationMode.BILINEAR,
        3: InterpolationMode.BICUBIC,
        4: InterpolationMode.BOX,
        5: InterpolationMode.HAMMING,
    }
    resample = getattr(processor, "resample", None)
    mode = (
        modes.get(int(getattr(resample, "value", resample)), InterpolationMode.BILINEAR)
        if resample is not None
        else InterpolationMode.BILINEAR
    )
    steps: list[Any] = []
    size = dict(processor.size or {})
    crop_pct = getattr(processor, "crop_pct", None)
    if getattr(processor, "do_resize", True):
        if "shortest_edge" in size:
            edge = int(size["shortest_edge"])
            if crop_pct is not None and edge < 384:  # ConvNeXt's own rule
                steps += [T.Resize(int(edge / crop_pct), interpolation=mode), T.CenterCrop(edge)]
            else:
                steps.append(
                    T.Resize(edge, interpolation=mode)
                    if crop_pct is None
                    else T.Resize((edge, edge), interpolation=mode)
                )
        else:
            steps.append(T.Resize((int(size["height"]), int(size["width"])), interpolation=mode))
    if getattr(processor, "do_center_crop", False) and processor.crop_size:
        steps.append(T.CenterCrop((int(processor.crop_size["height"]), int(processor.crop_size["width"]))))
    if (
        getattr(processor, "do_rescale", True)
        and abs(float(getattr(processor, "rescale_factor", 1 / 255)) - 1 / 255) > 1e-9
    ):
        raise ValueError(f"the image processor rescales by {processor.rescale_factor}, not 1/255")
    steps.append(T.ToTensor())
    if getattr(processor, "do_normalize", True):
        steps.append(T.Normalize([float(v) for v in processor.image_mean], [float(v) for v in processor.image_std]))
    return T.Compose(steps)
