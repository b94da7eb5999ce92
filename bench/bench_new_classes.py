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

import resource
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from synthetic_layers import bench_main, make_layers, rest_of_analysis, timer  # noqa: E402


def child(n: int, classes: int) -> dict:
    from explorer.process_setup import configure

    configure()
    from explorer.analysis import cached_runs as cr
    from explorer.config import MetricSpec
    from explorer.extraction.given_features import given_dataset, given_run
    from explorer.store import FeatureCache

    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, n)
    names = [f"c{v}" for v in labels]
    with tempfile.TemporaryDirectory() as tmp:
        run = given_run("synthetic", make_layers(Path(tmp), n, classes, labels, rng))
        dataset = given_dataset(n, names, None)
        cache = FeatureCache(Path(tmp) / "cache")
        spec = MetricSpec()
        times: dict[str, float] = {}
        timed = timer(times)
        scores = rest_of_analysis(dataset, run, spec, cache, timed)
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


def describe(r: dict, classes: int) -> str:
    n = r["n"]
    rest = sum(v for k, v in r["times"].items() if k not in NEW)
    new = sum(r["times"][k] for k in NEW)
    return (
        f"N={n:,} classes={classes}: rest of the analysis {rest:.1f} s, new classes {new:.1f} s "
        f"(+{100 * new / rest:.0f} %): "
        + ", ".join(f"{k} {v:.1f} s" for k, v in r["times"].items())
        + f"; peak RSS {r['rss_after_rest_gb']:.2f} GB after the rest, {r['rss_after_new_gb']:.2f} GB after "
        f"the new stages (whole child {r['peak_rss_gb']:.2f} GB); queries sampled: {r['sampled']}"
    )


if __name__ == "__main__":
    bench_main(__file__, __doc__ or "", child, describe)
