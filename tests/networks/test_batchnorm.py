"""BatchNorm folding keeps every chosen layer's features (fp32, to rounding) and the model intact."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torchvision import models as tvm

from explorer.extraction.extractor import FeatureExtractor
from explorer.networks import layers


def _model_with_random_bn_stats(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = tvm.get_model(name, weights=None).eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):  # default stats (0, 1) would make folding trivial
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-1, 1)
    return model


@pytest.mark.parametrize(
    ("name", "extra"),
    [
        ("mobilenet_v2", ["features.2.conv.2"]),  # a convolution whose BatchNorm must then stay
        ("resnet18", ["layer1.0.conv1", "layer2.0.bn1"]),
        ("efficientnet_b0", []),  # Conv2dNormActivation blocks the tracer keeps whole
    ],
)
def test_folding_keeps_features(name: str, extra: list[str]) -> None:
    model = _model_with_random_bn_stats(name)
    nodes = list(dict.fromkeys([*layers.profile(name).default, *extra]))
    x = torch.randn(2, 3, 64, 64)
    plain = FeatureExtractor(model, nodes, model_name=name, fold_bn=False)
    want = plain(x)
    folded = FeatureExtractor(model, nodes, model_name=name)
    assert folded.folded > 5
    got = folded(x)
    for n in nodes:
        scale = np.abs(want[n]).max() + 1e-6
        np.testing.assert_allclose(got[n] / scale, want[n] / scale, atol=1e-5, err_msg=n)
    # the model itself is untouched: a later unfolded extractor gives the original features again
    again = FeatureExtractor(model, nodes, model_name=name, fold_bn=False)(x)
    for n in nodes:
        np.testing.assert_array_equal(again[n], want[n])


def test_a_requested_convolution_is_not_folded() -> None:
    model = _model_with_random_bn_stats("resnet18")
    x = torch.randn(2, 3, 64, 64)
    conv_only = FeatureExtractor(model, ["layer1.0.conv1"], model_name="resnet18")
    with_bn = FeatureExtractor(model, ["layer1.0.bn1"], model_name="resnet18")
    assert conv_only.folded == with_bn.folded - 1  # layer1.0's first pair stays apart when its conv is chosen
    ref = FeatureExtractor(model, ["layer1.0.conv1"], model_name="resnet18", fold_bn=False)(x)
    np.testing.assert_allclose(conv_only(x)["layer1.0.conv1"], ref["layer1.0.conv1"], rtol=1e-5, atol=1e-6)
