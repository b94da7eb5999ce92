"""Reading the same images from each dataset layout: a folder of class folders, parquet shards (the
Hugging Face hub's layout), WebDataset shards and a save_to_disk folder (not a test).

For each size N the first N images of FOLDER (a scale dataset, bench/scale_dataset.py) are laid out
once under WORK in each layout (the folder as hard links; the others written with pyarrow, tarfile
and `datasets`). Then, each layout in a fresh process, in turns (folder, parquet, wds, arrow, and
again), it measures:

- `load`: listing and checking the dataset as `compare` does (every image's bytes read and hashed,
  its header checked; no thumbnails);
- `decode`: one pass of the extraction's decoder over every image (read, decode, resize and crop
  for MobileNetV2, in batches of 64 on the decode thread), without the model: what a layout can
  change;
- the process's peak RSS after loading, and at the end (VmHWM: its own, not the parent's);
- with `--ray`, the parquet and WebDataset layouts also listed on a local Ray instance (Ray Data's
  readers hashing on its workers: cluster_listing.py), timed from the instance being up, with the
  driver's peak RSS.

Usage: .venv/bin/python bench/bench_formats.py /work/scale/clothing50k --work /work/scale/formats \
    --images 10000 100000 --decode-up-to 10000 --ray --out docs/bench_formats.json
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tarfile
import time
from pathlib import Path

LAYOUTS = ("folder", "parquet", "wds", "arrow")
ROW_GROUP = 100  # images per parquet row group (what `datasets` writes for image columns)
SHARD = 1000  # images per WebDataset shard


def _images(folder: Path, n: int) -> list[Path]:
    """The first n images, taken round-robin over the classes (each class's files sorted)."""
    by_class = [sorted(d.glob("*.jpg")) for d in sorted(p for p in folder.iterdir() if p.is_dir())]
    out: list[Path] = []
    i = 0
    while len(out) < n:
        for files in by_class:
            if i < len(files) and len(out) < n:
                out.append(files[i])
        i += 1
    return out


def _rows(paths: list[str]):  # noqa: ANN202  (a generator function, as datasets.Dataset.from_generator wants)
    for p in paths:
        yield {"image": {"bytes": Path(p).read_bytes(), "path": Path(p).name}, "label": Path(p).parent.name}


def build(folder: Path, work: Path, n: int) -> dict[str, str]:
    """Each layout of the first n images under work/<layout>_<n> (kept: built once)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = _images(folder, n)
    out = {k: str(work / f"{k}_{n}") for k in LAYOUTS}
    if not Path(out["folder"]).exists():
        for f in files:
            dest = Path(out["folder"]) / f.parent.name / f.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.link(f, dest)
    if not Path(out["parquet"]).exists():
        Path(out["parquet"]).mkdir(parents=True)
        per_file = 10 * ROW_GROUP * 10
        for s in range(0, n, per_file):
            part = files[s : s + per_file]
            table = pa.table(
                {
                    "image": [{"bytes": f.read_bytes(), "path": f.name} for f in part],
                    "label": [f.parent.name for f in part],
                }
            )
            pq.write_table(table, Path(out["parquet"]) / f"train-{s // per_file:05d}.parquet", row_group_size=ROW_GROUP)
    if not Path(out["wds"]).exists():
        Path(out["wds"]).mkdir(parents=True)
        for s in range(0, n, SHARD):
            with tarfile.open(Path(out["wds"]) / f"train-{s // SHARD:05d}.tar", "w") as tf:
                for i, f in enumerate(files[s : s + SHARD], start=s):
                    tf.add(f, arcname=f"{i:07d}.jpg")
                    info = tarfile.TarInfo(f"{i:07d}.cls")
                    label = f.parent.name.encode()
                    info.size = len(label)
                    tf.addfile(info, io.BytesIO(label))
    if not Path(out["arrow"]).exists():
        import datasets

        features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("string")})
        made = datasets.Dataset.from_generator(
            _rows, features=features, gen_kwargs={"paths": [str(f) for f in files]}, cache_dir=str(work / "hf-cache")
        )
        made.save_to_disk(out["arrow"], max_shard_size="500MB")
    return out


MEASURE = """
import json, sys, time


def hwm_mb():  # this process's own peak RSS (ru_maxrss would carry the parent's peak across exec)
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) / 1024


from explorer.process_setup import configure
configure()
from explorer.config import DataSpec, Limits
from explorer.data.datasets import load_dataset
from explorer.extraction.decode import BatchDecoder, spans
from explorer.networks import registry
t = time.perf_counter()
if sys.argv[3] == "ray":  # listed on a local Ray instance: read and hashed by Ray Data's readers on its workers
    from explorer.extraction.ray_backend import RayEngine

    engine = RayEngine(num_cpus=int(sys.argv[4]))
    engine.start()
    t = time.perf_counter()  # after the instance is up
    ds = engine.load_dataset(DataSpec(source=sys.argv[1]), limits=Limits())
else:
    ds = load_dataset(DataSpec(source=sys.argv[1]), limits=Limits(), thumbnails=False)
load_s = time.perf_counter() - t
rss_load = hwm_mb()
w = registry.resolve_weights("mobilenet_v2", "auto")
transform = registry.transforms("mobilenet_v2", w.tv_weights)
t = time.perf_counter()
decoded = 0
if sys.argv[2] == "1":
    with BatchDecoder(ds.items, transform, spans(len(ds), 64), max_pixels=Limits().max_pixels) as batches:
        for s, e, batch in batches:
            decoded += e - s
decode_s = time.perf_counter() - t
print(json.dumps({"n": len(ds), "load_s": load_s, "decode_s": decode_s, "decoded": decoded,
                  "rss_after_load_mb": rss_load, "peak_rss_mb": hwm_mb()}))
"""


def measure(source: str, decode: bool = True, engine: str = "local") -> dict:
    env = {**os.environ}
    argv = [sys.executable, "-c", MEASURE, source, "1" if decode else "0", engine, str(os.cpu_count())]
    got = subprocess.run(
        argv, capture_output=True, text=True, env=env, check=False, cwd=Path(__file__).resolve().parents[1]
    )
    if got.returncode != 0:
        raise RuntimeError(got.stderr[-3000:])
    return json.loads(got.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path)
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--images", type=int, nargs="+", default=[10_000])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--decode-up-to", type=int, default=10**9, help="run the decode pass only at sizes up to this")
    ap.add_argument(
        "--ray", action="store_true", help="also list parquet and WebDataset on a local Ray instance (all CPUs)"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    results = []
    for n in args.images:
        t = time.perf_counter()
        paths = build(args.folder, args.work, n)
        print(f"N={n:,}: layouts ready in {time.perf_counter() - t:.0f} s", flush=True)
        for r in range(args.rounds):
            for layout in LAYOUTS:
                got = measure(paths[layout], decode=n <= args.decode_up_to)
                got.update(layout=layout, round=r, images=n, engine="local")
                results.append(got)
                print(
                    f"  {layout:8s} round {r}: load {got['load_s']:6.1f} s  decode {got['decode_s']:6.1f} s  "
                    f"peak RSS {got['peak_rss_mb']:6.0f} MB  ({got['n']:,} images)",
                    flush=True,
                )
                if args.ray and layout in ("parquet", "wds"):
                    got = measure(paths[layout], decode=False, engine="ray")
                    got.update(layout=layout, round=r, images=n, engine="ray")
                    results.append(got)
                    print(
                        f"  {layout:8s} round {r}: listed on Ray in {got['load_s']:6.1f} s, the driver's peak RSS "
                        f"{got['peak_rss_mb']:6.0f} MB",
                        flush=True,
                    )
    if args.out:
        args.out.write_text(
            json.dumps(
                {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(), "results": results},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
