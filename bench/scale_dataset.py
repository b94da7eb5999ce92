"""Make a large image dataset from the bundled clothing sample, for the scale benchmark (not a test).

Each image is an augmented copy of a sample photo (random resized crop, flip, colour changes,
re-encoded as JPEG), so decoding costs what real photos cost; class folders keep the sample's
classes. Copies are written under `<out>/<class>/<class>_<i>.jpg`; an existing file is kept, so an
interrupted run continues.

Usage: .venv/bin/python bench/scale_dataset.py OUT --images 100000
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

SAMPLE = Path(__file__).resolve().parents[1] / "explorer" / "samples" / "clothing"


def augment(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A random resized crop (60-100 % of the area), a flip and brightness/contrast/colour changes."""
    w, h = img.size
    scale = rng.uniform(0.6, 1.0)
    cw, ch = max(8, int(w * np.sqrt(scale))), max(8, int(h * np.sqrt(scale)))
    x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
    out = img.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.BILINEAR)
    if rng.random() < 0.5:
        out = ImageOps.mirror(out)
    for enhancer in (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color):
        out = enhancer(out).enhance(rng.uniform(0.7, 1.3))
    return out


def make(out: Path, n_images: int, seed: int = 0) -> Path:
    """Write `n_images` augmented copies (balanced over the sample's classes) into `out`."""
    sources = sorted(SAMPLE.glob("*/*.jpg"))
    originals = [Image.open(p).convert("RGB") for p in sources]
    for i in range(n_images):
        src = i % len(sources)
        cls = sources[src].parent.name
        path = out / cls / f"{cls}_{i:07d}.jpg"
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng([seed, i])
        augment(originals[src], rng).save(path, format="JPEG", quality=int(rng.integers(80, 95)))
        if (i + 1) % 10000 == 0:
            print(f"{i + 1} images", file=sys.stderr)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--images", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    make(args.out, args.images, args.seed)


if __name__ == "__main__":
    main()
