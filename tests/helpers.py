"""Helpers several test modules share (fixtures are in conftest.py)."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "explorer" / "ui" / "page.py"  # the script each visitor's session runs


def new_page(default_timeout: float = 300, **query: str) -> Any:
    """A fresh AppTest of the dashboard's page with these link parameters, not yet run."""
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(PAGE), default_timeout=default_timeout)
    for k, v in query.items():
        at.query_params[k] = v
    return at


def run_page(**query: str) -> Any:
    """The dashboard's page with these link parameters (60 images, PCA unless they say otherwise),
    run once, the picker's catalog complete as a server has it moments after starting."""
    from explorer.ui import cached

    cached.start_catalog().result()
    at = new_page()
    for k, v in {"max_images": "60", "projection": "pca", **query}.items():
        at.query_params[k] = v
    at.run()
    assert not at.exception, at.exception
    return at


def wait_for_job(at: Any, timeout: float = 600) -> None:
    """Wait until the page's analysis job is done (or taken by the page already)."""
    from explorer.ui import runtime

    queue = runtime.current().queue
    sid = at.session_state["session_id"]
    t0 = time.time()
    while time.time() - t0 < timeout:
        job = queue.job_of(sid)
        if job is None:  # the page took its result already (the queue forgets a taken job)
            return
        if not job.active:
            assert job.state == "done", job.error
            return
        time.sleep(0.5)
    raise AssertionError("the analysis did not finish")


def finish(at: Any) -> None:
    """Wait for the page's analysis, then rerun the page until it shows the result."""
    wait_for_job(at)
    at.run()
    at.run()
    assert not at.exception, at.exception


class Tiny(nn.Module):
    """conv 1x1 (ch0 = R+G+B, ch1 = R-B) -> ReLU -> global avg pool -> fc (ch0 - ch1)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        self.relu = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, -1.0]]).view(2, 3, 1, 1))
            self.fc.weight.copy_(torch.tensor([[1.0, -1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.relu(self.conv(x))), 1))


# a network of your own, as a builder file (`package.module:build`)
BUILDER = textwrap.dedent("""
    import torch.nn as nn

    def build():
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
            nn.Conv2d(8, 4, 3, stride=2, padding=1), nn.ReLU(),   # a 4-channel bottleneck
            nn.Conv2d(4, 16, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3),
        )
""")


def save_hf(folder: Path, kind: str) -> Path:
    """A tiny Hugging Face model of `kind` with its image processor, saved as save_pretrained writes them."""
    import transformers as tr

    torch.manual_seed(3)
    small = dict(hidden_size=32, num_hidden_layers=6, num_attention_heads=2, intermediate_size=64, image_size=56)
    if kind == "dinov2":
        model, proc = (
            tr.Dinov2Model(tr.Dinov2Config(**small, patch_size=14)),
            tr.BitImageProcessor(
                size={"shortest_edge": 64}, crop_size={"height": 56, "width": 56}, do_center_crop=True, resample=3
            ),
        )
    elif kind == "vit":
        model, proc = (
            tr.ViTModel(tr.ViTConfig(**small, patch_size=14)),
            tr.ViTImageProcessor(size={"height": 56, "width": 56}),
        )
    elif kind == "clip":
        vision = dict(small, patch_size=14)
        text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
        model = tr.CLIPModel(tr.CLIPConfig(text_config=text, vision_config=vision, projection_dim=16))
        proc = tr.CLIPImageProcessor(size={"shortest_edge": 56}, crop_size={"height": 56, "width": 56})
    elif kind == "convnext":
        model = tr.ConvNextModel(tr.ConvNextConfig(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 2, 1], image_size=64))
        proc = tr.ConvNextImageProcessor(size={"shortest_edge": 64})
    else:  # swin
        model = tr.SwinModel(
            tr.SwinConfig(
                image_size=64, patch_size=4, embed_dim=12, depths=[1, 1, 2, 1], num_heads=[1, 1, 2, 2], window_size=2
            )
        )
        proc = tr.ViTImageProcessor(size={"height": 64, "width": 64})
    model.save_pretrained(folder)
    proc.save_pretrained(folder)
    return folder


def digit_folders(root: Path, known: range, unknown: range, gallery_per_class: int, queries_per_class: int) -> None:
    """scikit-learn's digits as PNG folders (ImageNet has no digit class): root/gallery/D for the
    known digits, root/queries/D for known and unknown ones, disjoint images."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    for digit in [*known, *unknown]:
        rows = rng.permutation(np.flatnonzero(d.target == digit))
        parts = [("queries", rows[gallery_per_class : gallery_per_class + queries_per_class])]
        if digit in known:
            parts.append(("gallery", rows[:gallery_per_class]))
        for part, idx in parts:
            folder = root / part / str(digit)
            folder.mkdir(parents=True, exist_ok=True)
            for i in idx:
                img = Image.fromarray(np.clip(255 - d.images[i] * 16, 0, 255).astype(np.uint8), "L")
                img.save(folder / f"digit_{i:04d}.png")
