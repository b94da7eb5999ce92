"""What the per-image, per-class-pair and per-selection answers and the error bars cost at scale
(not a test): movers between consecutive layers, where each pair of classes comes apart, where a
selection emerges, and item 4's additions (the probe's label-permutation control at each layer,
the kNN control, the accuracy and step bootstraps, CKA's bootstrap interval), on synthetic features shaped like an 8-layer MobileNetV2 analysis (N images, dims 16 to
1,280, 10 classes, neighbour graphs of 15). Prints seconds and the peak RSS it added.

Usage: .venv/bin/python bench/bench_layer_answers.py --images 100000
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
DIMS = (16, 32, 64, 64, 96, 160, 320, 1280)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100_000)
    args = ap.parse_args()
    from explorer.analysis.class_pairs import class_pairs
    from explorer.analysis.emergence import emergence
    from explorer.analysis.movers import movers
    from explorer.analysis.neighbors import GRAPH_K, KnnGraph

    n, rng = args.images, np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    classes = [f"c{i}" for i in range(10)]
    feats = {
        f"l{j}": (rng.normal(size=(n, d)) + (j / 8) * np.eye(10, d)[labels] * 3).astype(np.float32)
        for j, d in enumerate(DIMS)
    }
    graphs = {
        k: KnnGraph(
            rng.integers(0, n, (n, GRAPH_K)).astype(np.int32), np.zeros((n, GRAPH_K), np.float32), "synthetic", 1.0
        )
        for k in feats
    }
    confusions = [np.bincount(labels * 10 + rng.integers(0, 10, n), minlength=100).reshape(10, 10) for _ in feats]
    import scipy.optimize  # noqa: F401  (the libraries the probe uses, imported as the dashboard and
    import sklearn.model_selection  # noqa: F401  compare have them by the time a selection is asked about: 2-3 s here)

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    movers(graphs, list(feats), [classes[i] for i in labels])
    t_movers = time.perf_counter() - t
    t = time.perf_counter()
    class_pairs(confusions, list(feats), classes)
    t_pairs = time.perf_counter() - t
    selected = np.flatnonzero(labels == 3)
    t = time.perf_counter()
    got = emergence(feats, selected)
    t_emerge = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"N={n:,}, 8 layers: movers {t_movers:.2f} s, class pairs {t_pairs:.3f} s, "
        f"selection emergence {t_emerge:.2f} s ({got.n_used:,} images seen, {got.n_selected:,} selected); "
        f"peak RSS added by the three {max(rss1 - rss0, 0) / 1024:.0f} MB",
        flush=True,
    )
    from explorer.analysis.neighbors import knn_votes
    from explorer.analysis.probe import control
    from explorer.analysis.similarity import cka_interval, layer_similarity
    from explorer.analysis.uncertainty import accuracy_interval, step

    rows = np.arange(n)
    sim = layer_similarity(feats)  # plain CKA, which the analysis computes anyway
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    for x in feats.values():
        control(x, labels, 5, rows=rows, c=1.0)
    t_control = time.perf_counter() - t
    t = time.perf_counter()
    right = []
    for g in graphs.values():
        shuffled = rng.permutation(labels)
        knn_votes(g, shuffled, 5, rows)
        right.append(rng.random(n) < 0.8)
        accuracy_interval(right[-1])
        accuracy_interval(right[-1])
    for a, b in zip(right, right[1:]):
        step(a, b)
    t_boot = time.perf_counter() - t
    t = time.perf_counter()
    cka_interval(feats, sim.cka)
    t_cka = time.perf_counter() - t
    rss2 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        f"error bars and controls: probe control {t_control:.2f} s, kNN control + accuracy and step bootstraps "
        f"{t_boot:.2f} s, CKA interval {t_cka:.2f} s; peak RSS added {max(rss2 - rss1, 0) / 1024:.0f} MB"
    )


if __name__ == "__main__":
    main()
