"""The weights' preprocessing split into per-image and per-batch parts gives the same tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms as T
from torchvision.models import get_model_weights

from explorer.models.preprocess import Preprocess


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


def test_other_transforms_run_whole() -> None:
    tf = T.Compose([T.Resize(32), T.CenterCrop(32), T.ToTensor()])
    pre = Preprocess(tf)
    assert not pre.split
    imgs = _images()
    assert torch.equal(pre.batch([pre.image(im) for im in imgs]), torch.stack([tf(im) for im in imgs]))
