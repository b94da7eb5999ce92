"""What choosing a cut adds after extraction, at scale (not a test): LogME and the compression
curves of 8 layers shaped like a MobileNetV2 analysis (dims 16 to 1,280, 10 classes), against the
stages that run anyway in the same process (each layer's neighbour graph and scores), and the
parameters and GFLOPs up to each layer (meta device). Prints seconds per stage and the peak RSS.

The latency is a fixed cost per model (a warm-up and a few timed passes at batch 1 and 32, 2-5 s
for the models here), cached per model build and machine, not per image: it is not timed here.

Usage: .venv/bin/python bench/bench_cut_scores.py --images 10000 50000 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
DIMS = (16, 32, 64, 64, 96, 160, 320, 1280)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(n: int) -> dict:
    from explorer.analysis.compression import compression_curve
    from explorer.analysis.logme import logme
    from explorer.analysis.neighbors import GRAPH_K, knn_graph
    from explorer.analysis.scores import label_plan, score_layer
    from explorer.config import MetricSpec
    from explorer.networks import layers
    from explorer.networks.cost import cut_costs

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, n)
    names = np.array([f"c{i}" for i in range(10)])[labels]
    spec = MetricSpec()
    times = {"graphs": 0.0, "scores": 0.0, "logme": 0.0, "compression": 0.0}
    plan = label_plan(names, spec.folds)
    for j, d in enumerate(DIMS):
        x = (rng.normal(size=(n, d)) + (j / 8) * np.eye(10, d)[labels] * 3).astype(np.float32)
        t = time.perf_counter()
        graph = knn_graph(x, GRAPH_K)
        times["graphs"] += time.perf_counter() - t
        t = time.perf_counter()
        s = score_layer(x, names, spec, graph)
        times["scores"] += time.perf_counter() - t
        t = time.perf_counter()
        logme(x, plan.y)
        times["logme"] += time.perf_counter() - t
        t = time.perf_counter()
        compression_curve(x, plan.y, plan.folds, rows=plan.rows, c=s.probe_c, random_state=0)
        times["compression"] += time.perf_counter() - t
        del x, graph
    prof = layers.profile("mobilenet_v2")  # compare has the profile (and torch imported) by then
    t = time.perf_counter()
    cut_costs("mobilenet_v2", prof.default)
    times["cost (meta device)"] = time.perf_counter() - t
    base = times["graphs"] + times["scores"]
    added = times["logme"] + times["compression"] + times["cost (meta device)"]
    return {
        "images": n,
        **{k: round(v, 2) for k, v in times.items()},
        "graphs + scores": round(base, 2),
        "added": round(added, 2),
        "added / (graphs + scores)": round(added / base, 3),
        "peak_rss_mb": round(_rss_mb()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, nargs="+", default=[10_000, 50_000, 100_000])
    args = ap.parse_args()
    from explorer.process_setup import configure

    configure()
    for n in args.images:
        print(json.dumps(run(n)), flush=True)


if __name__ == "__main__":
    main()
