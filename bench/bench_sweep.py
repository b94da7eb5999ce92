"""A sweep of several models over one folder of photos (not a test): extraction with every image
decoded once for all the models (extract_sweep), against the models extracted one after another,
against the floor of one decode of every image plus each model's plain forward passes, in one run,
each in a fresh cache. Prints seconds and the ratios.

Usage: .venv/bin/python bench/bench_sweep.py FOLDER [--images 2000]
       (a folder from bench/scale_dataset.py: held-out augmented photos of the bundled sample)
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
MODELS = ("mobilenet_v2", "resnet18", "efficientnet_b0", "regnet_y_400mf", "shufflenet_v2_x1_0", "mnasnet1_0")


def floor(ds, specs) -> dict:  # type: ignore[no-untyped-def]
    """One decode of every image, then each model's forward passes over batches of the decoded,
    preprocessed images (the extractor the engine uses, on tensors made beforehand)."""
    import torch

    from explorer.data.images import load_rgb
    from explorer.extraction.backend import FOLD_BATCHNORM
    from explorer.extraction.device import resolve_precision
    from explorer.extraction.extractor import build_extractor
    from explorer.extraction.layer_features import resolve_names
    from explorer.networks import layers
    from explorer.networks.preprocess import Preprocess
    from explorer.networks.sources import source_of

    t = time.perf_counter()
    images = [load_rgb(it.read_bytes(), max_pixels=64_000_000) for it in ds.items]
    decode = time.perf_counter() - t
    forward = {}
    for spec in specs:
        src = source_of(spec.model)
        w = src.resolve_weights(spec.model, spec.weights)
        pre = Preprocess(src.transform(spec.model, w))
        prof = layers.profile(spec.model)
        nodes = list(resolve_names(prof, prof.default).values())
        ext = build_extractor(
            spec, w, nodes, device="cpu", precision=resolve_precision("auto", "cpu"), fold_bn=FOLD_BATCHNORM
        )
        batches = [
            pre.batch(pre.image(img) for img in images[s : s + spec.batch_size])
            for s in range(0, len(images), spec.batch_size)
        ]
        ext(batches[0])  # warm-up
        t = time.perf_counter()
        with torch.inference_mode():
            for b in batches:
                ext(b)
        forward[spec.model] = time.perf_counter() - t
        del batches, ext
    return {
        "decode": round(decode, 2),
        "forward": {k: round(v, 2) for k, v in forward.items()},
        "floor": round(decode + sum(forward.values()), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder")
    ap.add_argument("--images", type=int, default=2000)
    args = ap.parse_args()
    from explorer.process_setup import configure

    configure()
    from explorer.comparison import run_labels
    from explorer.config import DataSpec, ExtractSpec
    from explorer.data.datasets import load_dataset
    from explorer.extraction.layer_features import extract_features, extract_sweep
    from explorer.store import FeatureCache

    ds = load_dataset(DataSpec(source=args.folder, max_images=args.images), thumbnails=False)
    specs = [ExtractSpec(model=m, weights="none") for m in MODELS]
    out: dict = {"images": len(ds), "models": list(MODELS)}
    out |= floor(ds, specs)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        for i, s in enumerate(specs):
            extract_features(ds, s, cache=FeatureCache(Path(tmp) / f"one{i}"))
        out["one after another"] = round(time.perf_counter() - t, 2)
        t = time.perf_counter()
        extract_sweep(ds, specs, run_labels(specs), cache=FeatureCache(Path(tmp) / "sweep"))
        out["sweep, decoded once"] = round(time.perf_counter() - t, 2)
    out["one after another / floor"] = round(out["one after another"] / out["floor"], 3)
    out["sweep / floor"] = round(out["sweep, decoded once"] / out["floor"], 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
