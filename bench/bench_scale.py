"""Scale benchmark (not a test): `compare` at several dataset sizes, time per stage and peak RSS,
against the decode + plain-forward floor measured in the same run.

Usage:
    .venv/bin/python bench/scale_dataset.py /work/scale/clothing100k --images 100000   # once
    .venv/bin/python bench/bench_scale.py /work/scale/clothing100k --sizes 10000,50000,100000 \
        --projection pca --out bench/results/scale

Each size runs in a fresh child process with an empty cache, exactly as `python -m explorer compare
--data DATA --max-images N --projection P` does (dataset check, extraction, graphs, scores, CKA,
overlap, projections, files); the parent reads the child's peak RSS from wait4. The floor is a
plain decode + preprocess pass and a plain forward pass of the whole model (same precision, batch,
channels_last) over `--floor-images` images of the same dataset, scaled to N. Writes results.json,
a markdown table (table.md) and a log-log picture of time and memory against N (scale.png).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from serving import cpu_model  # noqa: E402  (bench/serving.py; bench/ is on the path of a script run from it)


def child_compare(
    data: str,
    n: int,
    projection: str,
    out: Path,
    cache_dir: str | None = None,
    models: tuple[str, ...] = ("mobilenet_v2",),
    weights: str = "auto",
) -> dict:
    """One `compare` run in this (fresh) process, every model with its default layers; returns
    seconds per stage (a stage's progress title without its model's name: all models together)."""
    from explorer.process_setup import configure

    configure()
    from explorer import comparison
    from explorer.config import DataSpec, ExtractSpec, Limits, MetricSpec, ProjectionSpec
    from explorer.data.datasets import load_dataset
    from explorer.output import export
    from explorer.store import FeatureCache

    marks: list[tuple[str, float]] = []
    t0 = time.perf_counter()

    labels = sorted(models, key=len, reverse=True)

    def progress(stage: str, done: int, total: int) -> None:
        name = stage.split(" (")[0]
        for label in labels:  # "LogME resnet18[random]" -> "LogME"
            name = name.split(f" {label}")[0]
        if not marks or marks[-1][0] != name:
            marks.append((name, time.perf_counter()))

    progress("reading images", 0, 1)
    ds = load_dataset(DataSpec(source=data, max_images=n), limits=Limits(), thumbnails=False)
    with tempfile.TemporaryDirectory(dir=out) as fresh:
        comp = comparison.compare(
            ds,
            [ExtractSpec(model=m, weights=weights) for m in models],
            projection=ProjectionSpec(method=projection),
            metric=MetricSpec(),
            cache=FeatureCache(cache_dir or fresh),
            progress=progress,
            similarity_nulls=None,  # as the command line: every pair against its null up to 16 layers
        )
        progress("writing files", 0, 1)
        export.write_all(comp, out / f"out{n}")
        end = time.perf_counter()
    stages: dict[str, float] = {}
    for (name, t), (_, t_next) in zip(marks, marks[1:] + [("end", end)]):
        stages[name] = stages.get(name, 0.0) + t_next - t
    recall = {k: s.knn_recall for k, s in comp.scores.items()}
    return {
        "n": len(ds),
        "total_s": end - t0,
        "stages": stages,
        "graph_recall": recall,
        "precision": comp.runs[0].precision,
        "layers": sum(len(r.features) for r in comp.runs),
        "probe_train": int(comp.metrics["probe_train"].max()),
    }


def child_floor(
    data: str, n: int, batch: int = 32, models: tuple[str, ...] = ("mobilenet_v2",), weights: str = "auto"
) -> dict:
    """Decode + preprocess once, then a plain forward pass of each model, over n images of the
    dataset (the models share one preprocessing here, as the sweep's do: 224-pixel crops)."""
    from explorer.process_setup import configure

    configure()
    import torch

    from explorer.config import DataSpec, Limits
    from explorer.data.datasets import load_dataset
    from explorer.data.images import load_rgb

    try:
        from explorer.extraction.device import resolve_precision
    except ImportError:  # a tree from before extractor.py was split (--before an older commit)
        from explorer.extraction.extractor import resolve_precision  # type: ignore[attr-defined,no-redef]
    from explorer.networks import registry

    ds = load_dataset(DataSpec(source=data, max_images=n), limits=Limits(), thumbnails=False)
    built = []
    for name in models:
        w = registry.resolve_weights(name, weights)
        built.append(registry.build_model(name, w).eval().to(memory_format=torch.channels_last))
        if len(built) == 1:
            tf = registry.transforms(name, w.tv_weights)
    precision = resolve_precision("auto", "cpu")
    decode = forward = 0.0
    for s in range(0, len(ds), batch):
        t = time.perf_counter()
        x = torch.stack([tf(load_rgb(it.read_bytes(), max_pixels=10**8)) for it in ds.items[s : s + batch]])
        t2 = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            for model in built:
                model(x.contiguous(memory_format=torch.channels_last))
        decode += t2 - t
        forward += time.perf_counter() - t2
    return {"n": len(ds), "decode_s": decode, "forward_s": forward, "precision": precision}


def run_child(args: list[str]) -> tuple[dict, float]:
    """Run this script as a child; returns its JSON answer and its peak RSS in GB."""
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise RuntimeError(f"child {args} failed with status {status}")
    return json.loads(out.strip().splitlines()[-1]), usage.ru_maxrss / 1024**2


def picture(results: list[dict], floor_rate: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ns = [r["n"] for r in results]
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4))
    a.loglog(ns, [r["total_s"] for r in results], "o-", label="compare, whole run")
    a.loglog(
        ns,
        [r["stages"].get("loading", 0) + r["stages"].get("extracting", 0) for r in results],
        "s-",
        label="extraction",
    )
    a.loglog(ns, [r["after_extraction_s"] for r in results], "^-", label="after extraction")
    a.loglog(ns, [n / floor_rate for n in ns], "k--", label="decode + forward floor")
    lo = ns[0]
    a.loglog(ns, [results[0]["total_s"] * n / lo for n in ns], ":", color="grey", label="linear in N")
    a.set_xlabel("images")
    a.set_ylabel("seconds")
    a.legend(fontsize=8)
    b.loglog(ns, [r["peak_rss_gb"] for r in results], "o-", label="peak RSS")
    b.loglog(ns, [results[0]["peak_rss_gb"] * n / lo for n in ns], ":", color="grey", label="linear in N")
    b.axhline(6, color="red", lw=0.8, label="6 GB budget")
    b.set_xlabel("images")
    b.set_ylabel("GB")
    b.legend(fontsize=8)
    fig.suptitle("compare, MobileNetV2, 8 default layers, " + results[0]["projection"])
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("data")
    p.add_argument("--sizes", default="10000,50000,100000")
    p.add_argument("--projection", default="pca")
    p.add_argument("--floor-images", type=int, default=2000)
    p.add_argument("--out", default="bench/results/scale")
    p.add_argument(
        "--cache-dir", default=None, help="keep the cache here (default: a fresh one per size, removed after)"
    )
    p.add_argument("--skip-floor", action="store_true", help="no floor pass (e.g. for a projection-only rerun)")
    p.add_argument("--models", default="mobilenet_v2", help="models compared in one run (each with its default layers)")
    p.add_argument("--weights", default="auto", help="the weights of every model (none: random init, as the sweep)")
    p.add_argument("--child", choices=["compare", "floor"], help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    if args.child == "compare":
        models = tuple(args.models.split(","))
        print(json.dumps(child_compare(args.data, args.n, args.projection, out, args.cache_dir, models, args.weights)))
        return
    if args.child == "floor":
        print(json.dumps(child_floor(args.data, args.n, models=tuple(args.models.split(",")), weights=args.weights)))
        return
    if args.skip_floor:
        floor = {"n": 1, "decode_s": float("nan"), "forward_s": float("nan"), "precision": "not measured"}
    else:
        which = ["--models", args.models, "--weights", args.weights]
        floor, _ = run_child([args.data, "--child", "floor", "--n", str(args.floor_images), *which])
    floor_rate = floor["n"] / (floor["decode_s"] + floor["forward_s"])
    print(
        f"floor over {floor['n']} images: decode {floor['decode_s']:.1f}s + forward {floor['forward_s']:.1f}s "
        f"({floor_rate:.1f} img/s, {floor['precision']})",
        flush=True,
    )
    results = []
    for n in map(int, args.sizes.split(",")):
        extra = ["--cache-dir", args.cache_dir] if args.cache_dir else []
        r, rss = run_child(
            [args.data, "--child", "compare", "--n", str(n), "--projection", args.projection, "--out", str(out), *extra]
            + ["--models", args.models, "--weights", args.weights]
        )
        r["peak_rss_gb"] = rss
        r["projection"] = args.projection
        r["after_extraction_s"] = sum(
            v
            for k, v in r["stages"].items()
            if k not in ("reading images", "checking images", "preparing", "loading", "extracting")
        )
        r["floor_s"] = r["n"] / floor_rate
        results.append(r)
        print(json.dumps(r), flush=True)
    cpu = cpu_model()
    meta = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "floor": floor,
    }
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    stages = sorted(
        {k for r in results for k in r["stages"]},
        key=lambda k: min(list(r["stages"]).index(k) for r in results if k in r["stages"]),
    )
    lines = [
        f"{meta['cpu']}, {meta['cores']} cores, {meta['date']}, projection {args.projection}, {results[0]['precision']}, "
        f"models {args.models} ({args.weights} weights), {results[0]['layers']} layers",
        "",
        "| images | "
        + " | ".join(stages)
        + " | whole run | after extraction / extraction | floor | whole / floor | peak RSS |",
        "|---:|" + "---:|" * (len(stages) + 5),
    ]
    for r in results:
        ext = r["stages"].get("loading", 0) + r["stages"].get(
            "extracting", float("nan")
        )  # model build + forward passes
        lines.append(
            f"| {r['n']:,} | "
            + " | ".join(f"{r['stages'].get(k, 0):.1f}" for k in stages)
            + f" | {r['total_s']:.1f} | {r['after_extraction_s'] / ext:.0%} | {r['floor_s']:.1f} | "
            f"{r['total_s'] / r['floor_s']:.2f}x | {r['peak_rss_gb']:.2f} GB |"
        )
        lines.append(  # each stage's share of the whole run
            "| share | " + " | ".join(f"{100 * r['stages'].get(k, 0) / r['total_s']:.0f} %" for k in stages) + " |" * 6
        )
    (out / "table.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    picture(results, floor_rate, out / "scale.png")


if __name__ == "__main__":
    main()
