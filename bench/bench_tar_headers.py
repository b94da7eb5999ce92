"""The WebDataset header reader against an earlier commit's, in one process, alternating (not a test).

Writes a shard of N samples (a .jpg and a .cls each, a pax header each, as webdataset's writer
lays them out), checks that both readers list the same members, then times each `--rounds` times.

Usage: .venv/bin/python bench/bench_tar_headers.py [--against 87c52a5] [--samples 50000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _module_at(rev: str, folder: Path) -> object:
    source = subprocess.run(
        ["git", "show", f"{rev}:explorer/data/tar_headers.py"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout
    path = folder / "tar_headers_then.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("tar_headers_then", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules["tar_headers_then"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", default="87c52a5")
    ap.add_argument("--samples", type=int, default=50_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from explorer.data import tar_headers as now

    with tempfile.TemporaryDirectory() as tmp:
        then = _module_at(args.against, Path(tmp))
        shard = Path(tmp) / "shard.tar"
        with tarfile.open(shard, "w", format=tarfile.PAX_FORMAT) as tf:
            for i in range(args.samples):
                for ext, data in (("jpg", b"j" * 3000), ("cls", b"3")):
                    info = tarfile.TarInfo(f"sample{i:06d}.{ext}")
                    info.size, info.mtime = len(data), 1_700_000_000.5  # a float mtime: a pax record per member
                    tf.addfile(info, io.BytesIO(data))

        def fields(members: list) -> list[tuple]:
            return [(m.name, m.kind, m.offset_data, m.size) for m in members]

        assert fields(now.members(str(shard))) == fields(then.members(str(shard)))  # type: ignore[attr-defined]
        times: dict[str, list[float]] = {args.against: [], "this checkout": []}
        for _ in range(args.rounds):
            for name, module in ((args.against, then), ("this checkout", now)):
                t = time.perf_counter()
                module.members(str(shard))  # type: ignore[attr-defined]
                times[name].append(time.perf_counter() - t)
    for name, ts in times.items():
        print(f"{name}: {2 * args.samples:,} members, min {min(ts):.3f} s, median {sorted(ts)[len(ts) // 2]:.3f} s")


if __name__ == "__main__":
    main()
