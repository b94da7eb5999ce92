"""What recognising new classes adds to an analysis at scale (not a test): retrieval and
verification, the few-shot curves and the unseen-class compression curve (and issue 38's
intrinsic dimension, timed with them), against the rest of
the analysis after extraction (neighbour graphs, scores, PCA projections, CKA and overlap, LogME,
compression curves), in the same child process, at each N.

The features are synthetic, shaped like an 8-layer MobileNetV2 analysis (dims 16 to 1,280, the
class signal growing with depth), memory-mapped from .npy files as the feature store serves them:
every stage's cost depends on N, D and the classes only. Each N runs in a fresh child process with
an empty result cache; the parent reads its peak RSS from wait4, and the child reports its own
high-water mark after the rest of the analysis and after the new stages.

Usage: .venv/bin/python bench/bench_new_classes.py --sizes 10000,50000,100000 --classes 10
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
DIMS = (16, 32, 64, 64, 96, 160, 320, 1280)


def child(n: int, classes: int) -> dict:
    from explorer.process_setup import configure

    configure()
    from explorer.analysis import cached_runs as cr
    from explorer.config import MetricSpec, ProjectionSpec
    from explorer.extraction.given_features import given_dataset, given_run
    from explorer.store import FeatureCache

    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, n)
    names = [f"c{v}" for v in labels]
    with tempfile.TemporaryDirectory() as tmp:
        layers = {}
        for j, d in enumerate(DIMS):
            path = Path(tmp) / f"l{j}.npy"
            centres = np.random.default_rng(j).normal(size=(classes, d)).astype(np.float32)
            out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
            for a in range(0, n, 16384):
                b = min(a + 16384, n)
                out[a:b] = rng.normal(size=(b - a, d)).astype(np.float32) + (j + 1) / 8 * 1.5 * centres[labels[a:b]]
            out.flush()
            del out
            layers[f"l{j}"] = np.load(path, mmap_mode="r")
        run = given_run("synthetic", layers)
        dataset = given_dataset(n, names, None)
        cache = FeatureCache(Path(tmp) / "cache")
        spec = MetricSpec()
        times: dict[str, float] = {}

        def timed(name: str, fn):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            got = fn()
            times[name] = time.perf_counter() - t
            return got

        graphs = timed("neighbour graphs", lambda: cr.graph_run(run, cache))
        scores = timed("scores", lambda: cr.score_run(dataset, run, spec, cache, graphs))
        timed("projections (PCA)", lambda: cr.project_run(run, ProjectionSpec(method="pca"), cache, graphs))
        timed("CKA and overlap", lambda: cr.similarity_run([run], False, graphs, cache, None))
        timed("LogME", lambda: cr.logme_run(dataset, run, spec, cache))
        timed("compression curves", lambda: cr.compression_run(dataset, run, spec, cache, scores))
        rest_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        got = timed("retrieval and verification", lambda: cr.retrieval_run(dataset, run, spec, cache))
        timed("few-shot curves", lambda: cr.few_shot_run(dataset, run, spec, cache, scores))
        timed("unseen-class compression", lambda: cr.unseen_run(dataset, run, spec, cache))
        timed("intrinsic dimension", lambda: cr.intrinsic_run(run, cache))
        new_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    last = got["l7"]
    return {
        "n": n,
        "classes": classes,
        "times": times,
        "rss_after_rest_gb": rest_rss,
        "rss_after_new_gb": new_rss,
        "map_at_r_last": last.map_at_r if last else None,
        "sampled": bool(last.sampled) if last else None,
    }


NEW = ("retrieval and verification", "few-shot curves", "unseen-class compression", "intrinsic dimension")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,50000,100000")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--out", default=None, help="a JSON file for the results")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.classes)))
        return
    results = []
    for n in [int(s) for s in args.sizes.split(",")]:
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(n), "--classes", str(args.classes)],
            stdout=subprocess.PIPE,
            text=True,
        )
        out = proc.stdout.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(proc.pid, 0)
        if status:
            raise SystemExit(f"the child for {n} failed ({status})")
        r = json.loads(out.strip().splitlines()[-1])
        r["peak_rss_gb"] = usage.ru_maxrss / 1024**2
        results.append(r)
        rest = sum(v for k, v in r["times"].items() if k not in NEW)
        new = sum(r["times"][k] for k in NEW)
        print(
            f"N={n:,} classes={args.classes}: rest of the analysis {rest:.1f} s, new classes {new:.1f} s "
            f"(+{100 * new / rest:.0f} %): "
            + ", ".join(f"{k} {v:.1f} s" for k, v in r["times"].items())
            + f"; peak RSS {r['rss_after_rest_gb']:.2f} GB after the rest, {r['rss_after_new_gb']:.2f} GB after "
            f"the new stages (whole child {r['peak_rss_gb']:.2f} GB); queries sampled: {r['sampled']}",
            flush=True,
        )
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
