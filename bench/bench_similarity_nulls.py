"""What issue 38 adds to an analysis at scale (not a test): the training-free scorers beside
LogME (regularised H-score and TransRate, one pass over each class's rows) and the similarity
measures against their nulls (CKA, CKNNA, mutual k-NN, RSA and Procrustes of every pair of
layers on a 300-image sample, 50 permutations and 50 resamples each), against the rest of the
analysis after extraction (neighbour graphs, scores, PCA projections, CKA and overlap, LogME,
compression curves), in the same child process, at each N.

The features are bench/synthetic_layers.py's (8 layers, dims 16 to 1,280, memory-mapped). Each N
runs in a fresh child process with an empty result cache; the parent reads its peak RSS from
wait4, and the child reports its own high-water mark after the rest and after the new stages.

Usage: .venv/bin/python bench/bench_similarity_nulls.py --sizes 10000,50000,100000 --classes 10
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

NEW = ("H-score and TransRate", "similarity against nulls")


def child(n: int, classes: int) -> dict:
    from explorer.process_setup import configure

    configure()
    from explorer.analysis import cached_runs as cr
    from explorer.analysis.alignment import inside_null
    from explorer.config import MetricSpec
    from explorer.extraction.given_features import given_dataset, given_run
    from explorer.store import FeatureCache

    rng = np.random.default_rng(0)
    labels = rng.integers(0, classes, n)
    with tempfile.TemporaryDirectory() as tmp:
        run = given_run("synthetic", make_layers(Path(tmp), n, classes, labels, rng))
        dataset = given_dataset(n, [f"c{v}" for v in labels], None)
        cache = FeatureCache(Path(tmp) / "cache")
        spec = MetricSpec()
        times: dict[str, float] = {}
        timed = timer(times)
        rest_of_analysis(dataset, run, spec, cache, timed)
        rest_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
        scored = timed("H-score and TransRate", lambda: cr.scorers_run(dataset, run, spec, cache))
        pairs = timed(
            "similarity against nulls", lambda: cr.alignment_run([run], False, np.asarray(labels), cache, None)
        )
        new_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    inside = sum(inside_null("cka", p.score["cka"], p.null["cka"]) for p in pairs.values())
    return {
        "n": n,
        "classes": classes,
        "times": times,
        "rss_after_rest_gb": rest_rss,
        "rss_after_new_gb": new_rss,
        "pairs": len(pairs),
        "cka_pairs_inside_null": int(inside),
        "h_score_last": scored["l7"]["h_score"] if scored["l7"] else None,
    }


def describe(r: dict, classes: int) -> str:
    n = r["n"]
    rest = sum(v for k, v in r["times"].items() if k not in NEW)
    return (
        f"N={n:,} classes={classes}: rest of the analysis {rest:.1f} s; "
        + ", ".join(f"{k} {r['times'][k]:.1f} s (+{100 * r['times'][k] / rest:.0f} %)" for k in NEW)
        + "; stages: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in r["times"].items() if k not in NEW)
        + f"; peak RSS {r['rss_after_rest_gb']:.2f} GB after the rest, {r['rss_after_new_gb']:.2f} GB after "
        f"the new stages (whole child {r['peak_rss_gb']:.2f} GB); {r['pairs']} pairs, "
        f"{r['cka_pairs_inside_null']} with CKA inside its null"
    )


if __name__ == "__main__":
    bench_main(__file__, __doc__ or "", child, describe)
