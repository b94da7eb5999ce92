"""Extraction benchmark (not a test): prints a table to paste into docs/benchmarks.md.

Usage: .venv/bin/python bench/bench_extract.py [--model mobilenet_v2] [--images 400]
Compares, on the bundled clothing sample: decoding alone; a plain forward pass to the deepest
chosen layer; our one-pass multi-layer extraction; one pass per layer; fp32 vs bf16; cold vs cached;
and (in a child process) glibc malloc tuning off.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
warnings.simplefilter("ignore")


def measure(args: argparse.Namespace) -> dict:
    from explorer.process_setup import configure

    configure(malloc=os.environ.get("EXPLORER_MALLOC_TUNE", "1") != "0")
    import torch
    from torchvision.models.feature_extraction import create_feature_extractor

    from explorer import comparison
    from explorer.config import DataSpec, ExtractSpec
    from explorer.data.datasets import load_dataset
    from explorer.data.images import load_rgb
    from explorer.extraction.device import cpu_supports_bf16
    from explorer.extraction.extractor import FeatureExtractor
    from explorer.networks import layers, registry
    from explorer.networks.batchnorm import fold_batchnorm
    from explorer.store import FeatureCache

    ds = load_dataset(DataSpec(source="sample:clothing", max_images=args.images))
    w = registry.resolve_weights(args.model, "auto")
    tf = registry.transforms(args.model, w.tv_weights)
    model = registry.build_model(args.model, w)
    nodes = list(layers.profile(args.model).default)
    n = len(ds)
    out: dict = {"images": n, "layers": len(nodes)}

    t = time.perf_counter()
    batch = torch.stack([tf(load_rgb(it.read_bytes(), max_pixels=10**8)) for it in ds.items])
    out["decode_s"] = time.perf_counter() - t
    bs = 32

    def timed(fn) -> float:
        fn(batch[:bs])  # warm-up (oneDNN picks kernels)
        t0 = time.perf_counter()
        for s in range(0, n, bs):
            fn(batch[s : s + bs])
        return time.perf_counter() - t0

    precisions = ["fp32"] + (["bf16"] if cpu_supports_bf16() else [])
    for prec in precisions:
        ac = torch.autocast("cpu", dtype=torch.bfloat16) if prec == "bf16" else torch.autocast("cpu", enabled=False)
        plain = create_feature_extractor(model, return_nodes=[nodes[-1]]).eval().to(memory_format=torch.channels_last)
        folded = create_feature_extractor(model, return_nodes=[nodes[-1]]).eval()
        fold_batchnorm(folded)
        folded = folded.to(memory_format=torch.channels_last)

        def run_plain(x, plain=plain, ac=ac):
            with torch.inference_mode(), ac:
                return plain(x.contiguous(memory_format=torch.channels_last))

        def run_folded(x, folded=folded, ac=ac):
            with torch.inference_mode(), ac:
                return folded(x.contiguous(memory_format=torch.channels_last))

        ex = FeatureExtractor(model, nodes, model_name=args.model, precision=prec)
        out[f"plain_{prec}_s"] = timed(run_plain)
        out[f"folded_{prec}_s"] = timed(run_folded)
        out[f"multi_{prec}_s"] = timed(ex)
        if prec == precisions[-1]:
            singles = [FeatureExtractor(model, [nd], model_name=args.model, precision=prec) for nd in nodes]
            out[f"per_layer_{prec}_s"] = sum(timed(e) for e in singles)
    best = precisions[-1]
    with tempfile.TemporaryDirectory() as tmp:
        cache = FeatureCache(tmp)
        spec = ExtractSpec(model=args.model, precision=best)
        t = time.perf_counter()
        comparison.extract_features(ds, spec, cache=cache)
        out["cold_extract_s"] = time.perf_counter() - t
        t = time.perf_counter()
        comparison.extract_features(ds, spec, cache=cache)
        out["cached_extract_s"] = time.perf_counter() - t
    out["best"] = best
    return out


def baseline(args: argparse.Namespace) -> dict:
    """The budget's terms in a fresh process: decoding the images the plain way (PIL + the weights'
    transforms, image by image, one Python thread) and one plain forward pass to the deepest default
    layer at the best precision (warm: after one batch), batch 32, channels_last."""
    from explorer.process_setup import configure

    configure()
    import torch
    from torchvision.models.feature_extraction import create_feature_extractor

    from explorer.config import DataSpec
    from explorer.data.datasets import load_dataset
    from explorer.data.images import load_rgb
    from explorer.extraction.device import cpu_supports_bf16
    from explorer.networks import layers, registry
    from explorer.networks.batchnorm import fold_batchnorm

    ds = load_dataset(DataSpec(source="sample:clothing", max_images=args.images), thumbnails=False)
    w = registry.resolve_weights(args.model, "auto")
    tf = registry.transforms(args.model, w.tv_weights)
    t = time.perf_counter()
    batch = torch.stack([tf(load_rgb(it.read_bytes(), max_pixels=10**8)) for it in ds.items])
    decode = time.perf_counter() - t
    model = registry.build_model(args.model, w)
    node = layers.profile(args.model).default[-1]
    bf16 = cpu_supports_bf16()
    ac = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else torch.autocast("cpu", enabled=False)
    out = {"decode_s": decode, "precision": "bf16" if bf16 else "fp32"}
    for key, fold in (("forward_s", False), ("forward_folded_s", True)):
        plain = create_feature_extractor(model, return_nodes=[node]).eval()
        if fold:
            fold_batchnorm(plain)
        plain = plain.to(memory_format=torch.channels_last)
        with torch.inference_mode(), ac:
            plain(batch[:32].contiguous(memory_format=torch.channels_last))
            t = time.perf_counter()
            for s in range(0, len(batch), 32):
                plain(batch[s : s + 32].contiguous(memory_format=torch.channels_last))
            out[key] = time.perf_counter() - t
    return out


def cold_compare(args: argparse.Namespace) -> dict:
    """A cold `compare --projection none` in this fresh process: empty cache, nothing built yet.

    Library imports are timed apart (they are the interpreter's start-up, paid once per process).
    """
    t = time.perf_counter()
    import sklearn.linear_model  # noqa: F401
    import torchvision.models.feature_extraction  # noqa: F401

    from explorer import cli

    imports = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as tmp:
        argv = [
            "compare",
            "--data",
            "sample:clothing",
            "--model",
            args.model,
            "--projection",
            "none",
            "--max-images",
            str(args.images),
            "--cache-dir",
            f"{tmp}/cache",
            "--out",
            f"{tmp}/out",
            "-q",
        ]
        t = time.perf_counter()
        assert cli.main(argv) == 0
        total = time.perf_counter() - t
    return {"imports_s": imports, "compare_s": total}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="mobilenet_v2")
    ap.add_argument("--images", type=int, default=400)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--cold-compare", action="store_true")
    ap.add_argument("--baseline", action="store_true")
    ap.add_argument(
        "--repeats", type=int, default=5, help="cold compares and baselines, interleaved (medians reported)"
    )
    args = ap.parse_args()
    for flag, fn in (("child", measure), ("cold_compare", cold_compare), ("baseline", baseline)):
        if getattr(args, flag):
            print(json.dumps(fn(args)))
            return
    common = ["--model", args.model, "--images", str(args.images)]

    def child(flag: str) -> dict:
        out = subprocess.run([sys.executable, __file__, flag, *common], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    # This machine's speed drifts by tens of percent from minute to minute (shared host), so the
    # budget check interleaves fresh-process runs of both sides and compares medians.
    colds, bases = [], []
    for _ in range(args.repeats):
        colds.append(child("--cold-compare"))
        bases.append(child("--baseline"))
    res = measure(args)
    env = {**os.environ, "EXPLORER_MALLOC_TUNE": "0"}
    from explorer.process_setup import MALLOC_ENV

    for k in MALLOC_ENV:
        env.pop(k, None)
    out = subprocess.run(
        [sys.executable, __file__, "--child", *common], capture_output=True, text=True, env=env, check=True
    )
    plain_malloc = json.loads(out.stdout.strip().splitlines()[-1])
    n, best = res["images"], res["best"]
    rate = lambda s: n / s  # noqa: E731
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; model {args.model}, "
        f"{n} images, {res['layers']} layers, batch 32\n"
    )
    print("| what | img/s | note |\n|---|---:|---|")
    print(f"| decode + preprocess only | {rate(res['decode_s']):.0f} | PIL + weights' transforms, 1 thread |")
    for prec in ("fp32", "bf16"):
        if f"plain_{prec}_s" in res:
            p, m = rate(res[f"plain_{prec}_s"]), rate(res[f"multi_{prec}_s"])
            print(f"| plain forward to deepest layer, {prec} | {p:.0f} | channels_last, tuned malloc |")
            print(
                f"| plain forward, BatchNorm folded, {prec} | {rate(res[f'folded_{prec}_s']):.0f} | as ours folds it |"
            )
            print(
                f"| our extraction ({res['layers']} layers, pooled), {prec} | {m:.0f} | {m / p:.2f}x plain, "
                f"{m / rate(res[f'folded_{prec}_s']):.2f}x plain folded |"
            )
    print(
        f"| one pass per layer, {best} | {rate(res[f'per_layer_{best}_s']):.0f} | {res[f'per_layer_{best}_s'] / res[f'multi_{best}_s']:.1f}x slower than one pass |"
    )
    print(
        f"| cold extraction (decode + model + cache write), {best} | {rate(res['cold_extract_s']):.0f} | "
        f"{res['cold_extract_s']:.2f}s; budget 1.5x decode + forward = {1.5 * res['decode_s'] + res[f'plain_{best}_s']:.2f}s |"
    )
    print(f"| cached (no model) | {rate(res['cached_extract_s']):.0f} | {res['cached_extract_s']:.3f}s |")

    def med(rows: list[dict], k: str) -> float:
        return statistics.median(r[k] for r in rows)

    def runs(rows: list[dict], k: str) -> str:
        return ", ".join(f"{r[k]:.2f}" for r in rows)

    dec, fwd, cc, imp = (
        med(bases, "decode_s"),
        med(bases, "forward_s"),
        med(colds, "compare_s"),
        med(colds, "imports_s"),
    )
    print(
        f"| cold `compare --projection none`, fresh process, empty cache | {rate(cc):.0f} | median {cc:.2f}s "
        f"({runs(colds, 'compare_s')}) after {imp:.1f}s of imports |"
    )
    pm = plain_malloc
    print(
        f"| glibc default malloc: plain fp32 / ours {best} | {rate(pm['plain_fp32_s']):.0f} / {rate(pm[f'multi_{best}_s']):.0f} | "
        f"vs tuned {rate(res['plain_fp32_s']):.0f} / {rate(res[f'multi_{best}_s']):.0f} |"
    )
    print(
        f"\nbudget ({args.repeats} interleaved fresh-process runs of each side, medians): plain decode {dec:.2f}s "
        f"({runs(bases, 'decode_s')}) + plain {bases[0]['precision']} forward {fwd:.2f}s ({runs(bases, 'forward_s')}) "
        f"= {dec + fwd:.2f}s; cold compare {cc:.2f}s = {cc / (dec + fwd):.2f}x (decode + forward); "
        f"limit 1.5x (decode + forward) = {1.5 * (dec + fwd):.2f}s; 1.5x decode + forward = {1.5 * dec + fwd:.2f}s"
    )
    ff = med(bases, "forward_folded_s")
    print(
        f"with the forward pass BatchNorm-folded as ours ({runs(bases, 'forward_folded_s')}): decode + forward = "
        f"{dec + ff:.2f}s; cold compare = {cc / (dec + ff):.2f}x; 1.5x decode + forward = {1.5 * dec + ff:.2f}s"
    )


if __name__ == "__main__":
    main()
