"""Extraction overhead for the hooked sources (not a test): a timm ViT and a Hugging Face DINOv2-small,
random init, on the same images, in one run.

Usage:
    .venv/bin/python bench/scale_dataset.py /work/scale/clothing2k --images 2000   # once
    .venv/bin/python bench/bench_model_sources.py /work/scale/clothing2k --images 2000

For each model, over the same decoded batches, batch by batch in turn (so that drift in this
machine's speed hits both alike):
- plain: the model's own forward pass, `model(x)`;
- hooked: our HookExtractor on the model's default layers (hooks that pool each output as it is
  made, to numpy) — what an extraction runs per batch.
Then the whole extraction (`extract_features` in a fresh cache: decode, preprocess, build, hooks,
write), against decode + the plain forward pass. The same precision (fp32 here: no native bf16 on
an AMD CPU; `auto` otherwise), batch size and channels_last as the extractor. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from serving import cpu_model  # noqa: E402

warnings.simplefilter("ignore")
TIMM_VIT = "timm:vit_small_patch16_224.augreg_in21k"


def dinov2_small_folder(root: Path) -> Path:
    """DINOv2-small's architecture (facebook/dinov2-small's config) and image processor, saved as
    save_pretrained writes them, with random weights: the hub is not reachable here."""
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    folder = root / "dinov2-small"
    config = Dinov2Config(
        hidden_size=384,
        num_hidden_layers=12,
        num_attention_heads=6,
        intermediate_size=1536,
        patch_size=14,
        image_size=518,
        layerscale_value=1.0,
    )
    Dinov2Model(config).save_pretrained(folder)
    BitImageProcessor(
        size={"shortest_edge": 256},
        crop_size={"height": 224, "width": 224},
        do_center_crop=True,
        resample=3,
        image_mean=[0.485, 0.456, 0.406],
        image_std=[0.229, 0.224, 0.225],
    ).save_pretrained(folder)
    return folder


def measure(model: str, ds: object, precision: str, batch_size: int, cache_dir: Path) -> dict:
    import torch

    from explorer.config import ExtractSpec
    from explorer.data.images import load_rgb
    from explorer.extraction.device import memory_format as _memory_format
    from explorer.extraction.device import resolve_precision
    from explorer.extraction.extractor import HookExtractor
    from explorer.extraction.layer_features import extract_features
    from explorer.networks import layers, sources
    from explorer.networks.preprocess import Preprocess
    from explorer.store import FeatureCache

    precision = resolve_precision(precision, "cpu")
    src = sources.source_of(model)
    w = src.resolve_weights(model, "none")
    pre = Preprocess(src.transform(model, w))
    nodes = list(layers.profile(model).default)
    items = ds.items  # type: ignore[attr-defined]
    t = time.perf_counter()
    x = pre.batch(pre.image(load_rgb(it.read_bytes(), max_pixels=10**8)) for it in items)
    decode_s = time.perf_counter() - t
    plain_model = src.build(model, w).to(memory_format=_memory_format("cpu"))
    hooked = HookExtractor(src.build(model, w), nodes, model_name=model, device="cpu", precision=precision)
    autocast = (
        torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else torch.autocast("cpu", enabled=False)
    )

    def plain(b: torch.Tensor) -> None:
        with torch.inference_mode(), autocast:
            plain_model(b.contiguous(memory_format=_memory_format("cpu")))

    plain(x[:batch_size]), hooked(x[:batch_size])  # warm-up: oneDNN picks its kernels
    plain_s = hooked_s = 0.0
    for s in range(0, len(x), batch_size):
        b = x[s : s + batch_size]
        t = time.perf_counter()
        plain(b)
        t1 = time.perf_counter()
        hooked(b)
        plain_s, hooked_s = plain_s + t1 - t, hooked_s + time.perf_counter() - t1
    del x, hooked  # the plain model goes with its closure, at the return
    spec = ExtractSpec(model=model, weights="none", precision=precision, device="cpu", batch_size=batch_size)
    t = time.perf_counter()
    extract_features(ds, spec, cache=FeatureCache(cache_dir / model.replace("/", "_").replace(":", "_")))  # type: ignore[arg-type]
    whole_s = time.perf_counter() - t
    return {
        "model": model,
        "images": len(items),
        "layers": len(nodes),
        "precision": precision,
        "decode_s": decode_s,
        "plain_forward_s": plain_s,
        "hooked_forward_s": hooked_s,
        "hooked_over_plain": hooked_s / plain_s,
        "extraction_s": whole_s,
        "extraction_over_decode_plus_plain": whole_s / (decode_s + plain_s),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data", help="an image folder (bench/scale_dataset.py makes one)")
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--out", default=None, help="write results.json here")
    args = ap.parse_args()
    from explorer.process_setup import configure

    configure()
    from explorer.config import DataSpec
    from explorer.data.datasets import load_dataset

    ds = load_dataset(DataSpec(source=args.data, max_images=args.images), thumbnails=False)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = [TIMM_VIT, f"hf:{dinov2_small_folder(Path(tmp))}"]
        for model in models:
            rows.append(measure(model, ds, args.precision, args.batch_size, Path(tmp) / "cache"))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n{cpu_model()}, {len(ds)} images, batch {args.batch_size}\n")
    print("| model | layers | plain forward | hooked forward | ratio | whole extraction | decode + plain | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        name = "hf:DINOv2-small (random)" if r["model"].startswith("hf:") else f"{r['model']} (random)"
        print(
            f"| {name} | {r['layers']} | {r['plain_forward_s']:.1f} s | {r['hooked_forward_s']:.1f} s | "
            f"{r['hooked_over_plain']:.2f}x | {r['extraction_s']:.1f} s | {r['decode_s'] + r['plain_forward_s']:.1f} s | "
            f"{r['extraction_over_decode_plus_plain']:.2f}x |"
        )
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "results.json").write_text(json.dumps({"cpu": cpu_model(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
