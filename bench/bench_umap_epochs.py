"""How many UMAP epochs a layout needs (not a test): the neighbourhood preservation of seeded layouts
at several epoch counts, the project's way (from the layer's exact kNN graph, PCA to 50 dimensions
for wide layers, a and b as float32 unless `--curve float64`), against plain seeded umap-learn with
its own schedule (500 epochs up to 10,000 images, 200 beyond) on the same 50-dimensional input,
each over several seeds.

The features are real: MobileNetV2's default layers over N images of a dataset folder (extracted once
into `--cache`), or, with `--synthetic`, bench_umap_lanes.py's manifold layers. Preservation is the
mean share of an image's 15 nearest neighbours in the layer (cosine) kept among its 15 nearest in the
layout, over 2,000 seeded images (bench_umap_lanes.preservation). A seeded layout's preservation moves
by a few thousandths with the seed, so each figure is the mean over `--seeds` seeds, with its spread.

Usage:
    .venv/bin/python bench/bench_umap_epochs.py /tmp/scale10k --images 10000 --epochs 500,400,300
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_umap_lanes import manifold_layers, preservation  # noqa: E402  (bench/ is on the path of a script run from it)


def real_layers(data: str, n: int, cache: str) -> dict[str, np.ndarray]:
    """MobileNetV2's default layers over n images of `data` (a stratified sample), from the feature store."""
    from explorer.config import DataSpec, ExtractSpec, Limits
    from explorer.data.datasets import load_dataset
    from explorer.extraction.layer_features import extract_features
    from explorer.store import FeatureCache

    ds = load_dataset(DataSpec(source=data, max_images=n), limits=Limits(), thumbnails=False)
    run = extract_features(ds, ExtractSpec(model="mobilenet_v2"), cache=FeatureCache(cache))
    return {name: np.asarray(x, dtype=np.float32) for name, x in run.features.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", nargs="?", help="an image folder (omit with --synthetic)")
    ap.add_argument("--images", type=int, default=10000)
    ap.add_argument("--epochs", default="500,400,300", help="the project's epoch counts to try")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--layers", default="", help="indices of the layers to try (default: all)")
    ap.add_argument("--synthetic", action="store_true", help="bench_umap_lanes.py's manifold layers")
    ap.add_argument("--cache", default="/tmp/bench_umap_epochs_cache")
    ap.add_argument(
        "--curve",
        choices=("float32", "float64"),
        default="float32",
        help="the project's fits with a and b as float32 (projection.umap_curve, as the project runs) or float64",
    )
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from explorer.process_setup import configure

    configure()
    from explorer.analysis.neighbors import knn_graph
    from explorer.analysis.projection import UMAP_PCA_DIMS, _pca, _umap_init, _umap_knn, umap_curve, umap_module

    umap = umap_module()
    layers = manifold_layers(args.images) if args.synthetic else real_layers(args.data, args.images, args.cache)
    names = list(layers)
    if args.layers:
        names = [names[int(i)] for i in args.layers.split(",")]
    a, b = umap_curve(0.1)
    curve = {"a": a, "b": b} if args.curve == "float32" else {}
    report = {}
    for name in names:
        x = layers[name]
        graph = knn_graph(x, 15)
        x50 = _pca(x, UMAP_PCA_DIMS, 0) if x.shape[1] > UMAP_PCA_DIMS else x
        fits: dict[str, list[tuple[float, float]]] = {}
        for config in ["plain"] + args.epochs.split(","):
            given = (
                {} if config == "plain" else {"n_epochs": int(config), "precomputed_knn": _umap_knn(graph, 15), **curve}
            )
            for seed in range(args.seeds):
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    layout = umap.UMAP(
                        n_neighbors=15,
                        min_dist=0.1,
                        random_state=seed,
                        metric="cosine",
                        init=_umap_init(len(x), 2),
                        **given,
                    ).fit_transform(x50)
                fits.setdefault(config, []).append((preservation(graph, layout), time.perf_counter() - t))
        plain = float(np.mean([p for p, _ in fits["plain"]]))
        report[name] = {
            c: {
                "mean": float(np.mean([p for p, _ in v])),
                "sd": float(np.std([p for p, _ in v], ddof=1)) if len(v) > 1 else 0.0,
                "gap": float(np.mean([p for p, _ in v])) - plain,
                "seconds": float(np.mean([s for _, s in v])),
            }
            for c, v in fits.items()
        }
        print(
            f"{len(x):,} images, {name} ({x.shape[1]} wide): "
            + "; ".join(
                f"{c} {r['mean']:.4f} ({r['sd']:.4f}) {r['seconds']:.1f} s, gap {r['gap']:+.4f}"
                for c, r in report[name].items()
            ),
            flush=True,
        )
    worst = {c: min(r[c]["gap"] for r in report.values()) for c in args.epochs.split(",")}
    print("largest loss against plain umap-learn: " + ", ".join(f"{c} epochs {g:+.4f}" for c, g in worst.items()))
    if args.out:
        Path(args.out).write_text(json.dumps({"n": args.images, "layers": report}, indent=1))


if __name__ == "__main__":
    main()
