"""Synthetic features shaped like an 8-layer MobileNetV2 analysis, for the analysis benchmarks:
dims 16 to 1,280, the class signal growing with depth, memory-mapped from .npy files as the
feature store serves them (every analysis stage's cost depends on N, D and the classes only), and
the stages every analysis runs after extraction, timed one by one."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

DIMS = (16, 32, 64, 64, 96, 160, 320, 1280)


def make_layers(folder: Path, n: int, classes: int, labels: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    """{layer: (n, d) float32 memory map} under `folder`, written in blocks."""
    layers = {}
    for j, d in enumerate(DIMS):
        path = folder / f"l{j}.npy"
        centres = np.random.default_rng(j).normal(size=(classes, d)).astype(np.float32)
        out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, d))
        for a in range(0, n, 16384):
            b = min(a + 16384, n)
            out[a:b] = rng.normal(size=(b - a, d)).astype(np.float32) + (j + 1) / 8 * 1.5 * centres[labels[a:b]]
        out.flush()
        del out
        layers[f"l{j}"] = np.load(path, mmap_mode="r")
    return layers


def timer(times: dict[str, float]) -> Callable[[str, Callable[[], Any]], Any]:
    """timed(name, fn): runs fn, adds its seconds to `times` under name, returns its result."""

    def timed(name: str, fn: Callable[[], Any]) -> Any:
        t = time.perf_counter()
        got = fn()
        times[name] = time.perf_counter() - t
        return got

    return timed


def rest_of_analysis(dataset: Any, run: Any, spec: Any, cache: Any, timed: Callable) -> dict:
    """The stages every analysis runs after extraction (neighbour graphs, scores, PCA projections,
    CKA and overlap, LogME, compression curves), timed; returns the scores."""
    from explorer.analysis import cached_runs as cr
    from explorer.config import ProjectionSpec

    graphs = timed("neighbour graphs", lambda: cr.graph_run(run, cache))
    scores = timed("scores", lambda: cr.score_run(dataset, run, spec, cache, graphs))
    timed("projections (PCA)", lambda: cr.project_run(run, ProjectionSpec(method="pca"), cache, graphs))
    timed("CKA and overlap", lambda: cr.similarity_run([run], False, graphs, cache, None))
    timed("LogME", lambda: cr.logme_run(dataset, run, spec, cache))
    timed("compression curves", lambda: cr.compression_run(dataset, run, spec, cache, scores))
    return scores


def run_children(script: str, sizes: list[int], classes: int) -> Iterator[dict]:
    """Run `script --child N --classes C` for each N in a fresh process; yield the JSON its last
    line prints, with the child's peak RSS from wait4 (`peak_rss_gb`)."""
    for n in sizes:
        proc = subprocess.Popen(
            [sys.executable, script, "--child", str(n), "--classes", str(classes)], stdout=subprocess.PIPE, text=True
        )
        out = proc.stdout.read()  # type: ignore[union-attr]
        _, status, usage = os.wait4(proc.pid, 0)
        if status:
            raise SystemExit(f"the child for {n} failed ({status})")
        r = json.loads(out.strip().splitlines()[-1])
        r["peak_rss_gb"] = usage.ru_maxrss / 1024**2
        yield r


def bench_main(script: str, doc: str, child: Callable[[int, int], dict], describe: Callable[[dict, int], str]) -> None:
    """The command line of an analysis benchmark: --sizes, --classes, --out; each N in a child
    process (`child(n, classes)`), a line per N (`describe(result, classes)`)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--sizes", default="10000,50000,100000")
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--out", default=None, help="a JSON file for the results")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.classes)))
        return
    results = []
    for r in run_children(script, [int(s) for s in args.sizes.split(",")], args.classes):
        results.append(r)
        print(describe(r, args.classes), flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
