"""UMAP of 8 layers at scale, features and neighbour graphs ready (not a test): the project's
path (projection_lanes.project_layers, on analysis/lanes.py: PCA to 50 dimensions for wide layers, UMAP from the
layer's kNN graph, a worker process taking every other layer) against plain seeded umap-learn on
the same 50-dimensional input, one layer after another, in the same run. Reports seconds and the
neighbourhood preservation of each layout: the mean share of an image's 15 nearest neighbours in
the layer (cosine) that are among its 15 nearest in the layout, over 2,000 seeded images.

The features are synthetic but shaped like real ones: each layer a smooth function (tanh of a
random map) of a 3-dimensional latent with 10 clusters, plus noise, at MobileNetV2's widths, so
that a layout can keep their neighbourhoods (isotropic noise has none to keep); each is memory-mapped
from a file, as a run's cached features are.

A seeded layout's preservation moves by about 0.01 with the seed (umap-learn's optimiser is
chaotic: a last-digit change in its start gives another layout), so one seed's gap between the two
says little at that scale; `--seeds K` fits both K times more (seeds 1..K, not timed) and reports
each layer's mean and spread over the K+1 seeds, and the gap between the means.

Usage: .venv/bin/python bench/bench_umap_lanes.py --images 50000 [--seeds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
DIMS = (16, 32, 64, 64, 96, 160, 320, 1280)
QUERIES = 2000


def manifold_layers(n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    z = rng.normal(size=(n, 3)) + 3 * rng.normal(size=(10, 3))[rng.integers(0, 10, n)]
    return {
        f"l{j}": (np.tanh(z @ rng.normal(size=(3, d))) + 0.05 * rng.normal(size=(n, d))).astype(np.float32)
        for j, d in enumerate(DIMS)
    }


def preservation(graph, layout: np.ndarray, k: int = 15) -> float:  # type: ignore[no-untyped-def]
    from sklearn.neighbors import NearestNeighbors

    rows = np.random.default_rng(1).choice(len(layout), QUERIES, replace=False)
    near = NearestNeighbors(n_neighbors=k + 1).fit(layout).kneighbors(layout[rows], return_distance=False)[:, 1:]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(graph.indices[rows, :k], near)]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=50000)
    ap.add_argument("--seeds", type=int, default=0, help="more seeds, for the preservation's spread (not timed)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from explorer.process_setup import configure

    configure()
    import umap

    from explorer.analysis.lanes import lanes
    from explorer.analysis.neighbors import knn_graph
    from explorer.analysis.projection import UMAP_PCA_DIMS, _pca, _umap_init
    from explorer.analysis.projection_lanes import project_layers
    from explorer.config import ProjectionSpec

    # each layer memory-mapped from a file, as a run's cached features are (a worker opens the file)
    folder = Path(tempfile.mkdtemp(prefix="umap_lanes_"))
    feats = {}
    for name, x in manifold_layers(args.images).items():
        np.save(folder / f"{name}.npy", x)
        feats[name] = np.load(folder / f"{name}.npy", mmap_mode="r")
    graphs = {name: knn_graph(x, 15) for name, x in feats.items()}
    spec = ProjectionSpec(method="umap", random_state=0)
    project_layers({"warm": (feats["l0"][:2000], None)}, spec)  # this process's numba code compiled, as a run has it
    t = time.perf_counter()
    ours = project_layers({name: (x, graphs[name]) for name, x in feats.items()}, spec)
    ours_s = time.perf_counter() - t
    x50s = {name: _pca(x, UMAP_PCA_DIMS, 0) if x.shape[1] > UMAP_PCA_DIMS else x for name, x in feats.items()}

    def plain(name: str, seed: int) -> np.ndarray:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return umap.UMAP(
                n_neighbors=15, min_dist=0.1, random_state=seed, metric="cosine", init=_umap_init(len(x50s[name]), 2)
            ).fit_transform(x50s[name])

    plain_s, kept = 0.0, {name: ([preservation(graphs[name], ours[name].coords)], []) for name in feats}
    for name in feats:
        t = time.perf_counter()
        layout = plain(name, 0)
        plain_s += time.perf_counter() - t
        kept[name][1].append(preservation(graphs[name], layout))
    print(
        f"N={args.images:,}, 8 layers, lanes={lanes()}, cores={len(os.sched_getaffinity(0))}: "
        f"ours {ours_s:.1f} s, plain seeded umap-learn {plain_s:.1f} s (x{plain_s / ours_s:.2f}); "
        "neighbourhood preservation ours/plain, seed 0: "
        + ", ".join(f"{n} {a[0]:.3f}/{b[0]:.3f}" for n, (a, b) in kept.items())
        + f"; largest gap {max(abs(a[0] - b[0]) for a, b in kept.values()):.3f}",
        flush=True,
    )
    for seed in range(1, args.seeds + 1):
        again = project_layers(
            {name: (x, graphs[name]) for name, x in feats.items()}, ProjectionSpec(method="umap", random_state=seed)
        )
        for name in feats:
            kept[name][0].append(preservation(graphs[name], again[name].coords))
            kept[name][1].append(preservation(graphs[name], plain(name, seed)))
    if args.seeds:
        print(
            f"over seeds 0..{args.seeds}, mean (sd) ours / plain, gap of the means: "
            + "; ".join(
                f"{n} {np.mean(a):.3f} ({np.std(a, ddof=1):.3f}) / {np.mean(b):.3f} ({np.std(b, ddof=1):.3f}),"
                f" {np.mean(a) - np.mean(b):+.3f}"
                for n, (a, b) in kept.items()
            ),
            flush=True,
        )
    shutil.rmtree(folder, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"n": args.images, "ours_s": ours_s, "plain_s": plain_s, "kept": kept}))


if __name__ == "__main__":
    main()
