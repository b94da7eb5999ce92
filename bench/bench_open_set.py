"""Open-set recognition with an exported embedder on the bundled clothing photos (not a test): a
gallery of 5 photos of each of 5 classes, queries the other photos of those classes and every photo
of the other 5 (strangers the gallery does not hold), through the command line as a user runs it:
`cut --embedding`, then `predict --gallery` at several false-accept rates (1 = no threshold).

Usage: .venv/bin/python bench/bench_open_set.py --layers features.17.conv.3,flatten --far 1,0.1,0.01
"""

from __future__ import annotations

import argparse
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "explorer" / "samples" / "clothing"


def split(root: Path, known: int, per_class: int, seed: int) -> list[str]:
    """root/gallery (per_class photos of `known` classes) and root/queries (the rest); the known classes."""
    classes = sorted(p.name for p in SAMPLE.iterdir() if p.is_dir())
    rng = random.Random(seed)
    chosen = sorted(rng.sample(classes, known))
    for c in classes:
        files = sorted(p for p in (SAMPLE / c).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
        rng.shuffle(files)
        gallery, queries = (files[:per_class], files[per_class:]) if c in chosen else ([], files)
        for part, chosen_files in (("gallery", gallery), ("queries", queries)):
            for f in chosen_files:
                (root / part / c).mkdir(parents=True, exist_ok=True)
                shutil.copy(f, root / part / c / f.name)
    return chosen


def explorer(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "explorer", *args, "-q"], cwd=ROOT, check=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default="features.17.conv.3,flatten")
    ap.add_argument("--far", default="1,0.1,0.01")
    ap.add_argument("--known", type=int, default=5)
    ap.add_argument("--per-class", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        known = split(root, args.known, args.per_class, args.seed)
        print(f"known: {', '.join(known)}; gallery {args.per_class} photos each")
        print(
            "| layer | FAR | known right | known answered unknown | known, wrong class | strangers answered unknown |"
        )
        print("|---|---|---|---|---|---|")
        for layer in args.layers.split(","):
            emb = root / f"emb_{layer}"
            explorer("cut", "--embedding", "--data", str(root / "gallery"), "--layer", layer, "--out", str(emb))
            for far in args.far.split(","):
                out = root / f"p_{layer}_{far}.csv"
                explorer(
                    "predict",
                    "--model",
                    str(emb),
                    "--gallery",
                    str(root / "gallery"),
                    "--data",
                    str(root / "queries"),
                    "--far",
                    far,
                    "--out",
                    str(out),
                )
                t = pd.read_csv(out, dtype={"prediction": str})
                truth = t["path"].str.split("/").str[0]
                k = truth.isin(known)
                said, right = t["prediction"], t["prediction"] == truth
                print(
                    f"| {layer} | {far} | {right[k].mean():.3f} | {(said[k] == 'unknown').mean():.3f} | "
                    f"{((~right) & (said != 'unknown'))[k].mean():.3f} | {(said[~k] == 'unknown').mean():.3f} |"
                )


if __name__ == "__main__":
    main()
