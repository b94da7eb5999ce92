"""The weights' preprocessing split into per-image and per-batch parts gives the same tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.models import get_model_weights

from explorer.networks.preprocess import Preprocess


def _images() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(168, 224), (224, 126), (301, 300), (640, 97)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB") for w, h in sizes]


@pytest.mark.parametrize("model", ["mobilenet_v2", "efficientnet_b3", "inception_v3", "vit_b_16", "convnext_tiny"])
def test_split_equals_the_weights_transform(model: str) -> None:
    tf = get_model_weights(model).DEFAULT.transforms()
    pre = Preprocess(tf)
    assert pre.split
    imgs = _images()
    parts = [pre.image(im) for im in imgs]
    assert all(p.dtype == torch.uint8 for p in parts)  # the per-image part stays small
    got = pre.batch(parts)
    want = torch.stack([tf(im) for im in imgs])
    assert got.dtype == torch.float32 and got.shape == want.shape
    assert torch.equal(got, want)


def _split_and_whole(tf: object) -> tuple[torch.Tensor, torch.Tensor, Preprocess]:
    pre = Preprocess(tf)
    imgs = _images()
    return pre.batch([pre.image(im) for im in imgs]), torch.stack([tf(im) for im in imgs]), pre  # type: ignore[operator]


@pytest.mark.parametrize(
    "tf",
    [
        T.Compose([T.Resize(32), T.CenterCrop(32), T.ToTensor()]),
        T.Compose(
            [
                T.Resize((40, 30), interpolation=T.InterpolationMode.BICUBIC),
                T.ToTensor(),
                T.Normalize([0.5] * 3, [0.25] * 3),
            ]
        ),
    ],
)
def test_a_compose_of_resize_crop_and_normalise_is_split(tf: object) -> None:
    got, want, pre = _split_and_whole(tf)
    assert pre.split
    assert torch.allclose(got, want, atol=1e-6)


def test_other_transforms_run_whole() -> None:
    tf = T.Compose([T.Resize(32), T.CenterCrop(32), T.Grayscale(3), T.ToTensor()])
    got, want, pre = _split_and_whole(tf)
    assert not pre.split
    assert torch.equal(got, want)


@pytest.mark.parametrize("model", ["vit_small_patch16_224.augreg_in21k", "convnext_tiny.fb_in22k", "resnet50.a1_in1k"])
def test_timm_transforms_split_as_timm_runs_them(model: str) -> None:
    from explorer.networks.timm_source import TIMM

    tf = TIMM.transform("timm:" + model, None)  # type: ignore[arg-type]
    got, want, pre = _split_and_whole(tf)
    assert pre.split
    assert torch.allclose(got, want, atol=1e-6)


def _processors() -> list[object]:
    import transformers as tr

    return [
        tr.BitImageProcessor(
            size={"shortest_edge": 256},
            crop_size={"height": 224, "width": 224},
            do_center_crop=True,
            image_mean=[0.485, 0.456, 0.406],
            image_std=[0.229, 0.224, 0.225],
            resample=3,
        ),  # DINOv2
        tr.ViTImageProcessor(),  # ViT, Swin: a fixed 224 x 224
        tr.CLIPImageProcessor(),
        tr.ConvNextImageProcessor(),  # resize to 224 / 0.875 and crop
    ]


def _smooth_images() -> list[Image.Image]:
    """Photo-like images: smooth, so that a crop one pixel to the side changes little."""
    rng = np.random.default_rng(1)
    sizes = [(168, 224), (224, 126), (301, 300), (640, 97)]
    return [
        Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), "RGB").resize((w, h), Image.BICUBIC)
        for w, h in sizes
    ]


@pytest.mark.parametrize("index", range(4))
def test_hf_image_processors_as_transforms_match_the_processor(index: int) -> None:
    from explorer.networks.preprocess import from_image_processor

    processor = _processors()[index]
    tf = from_image_processor(processor)
    pre = Preprocess(tf)
    assert pre.split
    imgs = _smooth_images()
    got = pre.batch([pre.image(im) for im in imgs])
    want = processor(images=imgs, return_tensors="pt")["pixel_values"]  # type: ignore[operator]
    assert got.shape == want.shape
    # the same PIL resampling; where the crop's margin is odd, the processor's crop starts one
    # pixel before torchvision's (floor against round)
    diff = (got - want).abs().flatten(1).mean(1)
    assert diff.max() < 0.02, diff
