"""The dashboard's analysis after extraction, with and without a first view: seconds from the
start of `comparison.analyse` to the first view (the callback the dashboard draws the first panels
from) and to the whole result, each run a fresh process with an empty cache, as a user's first Run.

    .venv/bin/python bench/bench_first_view_rest.py --data /tmp/scale2k --images 2000 --against REV

`--against REV` also times a worktree of that revision, alternating with this checkout, in the same
run; `--runs` repeats each; every checkout is also timed once without a first view (the CLI's
analysis, the floor for the whole result). Build the data with bench/scale_dataset.py."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = """
import json, sys, tempfile, time
sys.path.insert(0, sys.argv[1])
from explorer import api, comparison

marks = {}
analyse = comparison.analyse

def timed(*args, **kwargs):
    marks["start"] = time.perf_counter()
    if sys.argv[4] == "1":
        kwargs["first_view"] = lambda c: marks.setdefault("first", time.perf_counter())
    result = analyse(*args, **kwargs)
    marks["whole"] = time.perf_counter()
    return result

comparison.analyse = timed
with tempfile.TemporaryDirectory() as cache:
    t0 = time.perf_counter()
    api.compare(sys.argv[2], projection="umap", cache_dir=cache, progress=False, max_images=int(sys.argv[3]))
print(json.dumps({
    "extraction_s": marks["start"] - t0,
    "first_view_s": marks["first"] - marks["start"] if "first" in marks else None,
    "whole_s": marks["whole"] - marks["start"],
}))
"""


def timed(tree: Path, data: str, images: int, first_view: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree), data, str(images), "1" if first_view else "0"],
        cwd=tempfile.gettempdir(),  # the tree given, not this checkout, is imported
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a folder of class folders")
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--against", help="also time a worktree of this git revision, in the same run")
    p.add_argument("--runs", type=int, default=2)
    args = p.parse_args()
    trees = {"this checkout": ROOT}
    with tempfile.TemporaryDirectory() as tmp:
        if args.against:
            other = Path(tmp) / "against"
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "add", "-q", "--detach", str(other), args.against], check=True
            )
            trees[args.against] = other
        try:
            rows: dict[str, list[dict]] = {name: [] for name in trees}
            for _ in range(args.runs):
                for name, tree in trees.items():
                    rows[name].append(timed(tree, args.data, args.images, True))
                    print(name, rows[name][-1], flush=True)
            alone = {name: timed(tree, args.data, args.images, False) for name, tree in trees.items()}
        finally:
            if args.against:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(other)], check=False)
    print(f"\n{args.images} images of {args.data}, mobilenet_v2 (8 layers), UMAP; seconds after extraction\n")
    print("| | " + " | ".join(trees) + " |")
    print("|---|" + "---:|" * len(trees))
    for label, key in (("first view", "first_view_s"), ("whole result, with a first view", "whole_s")):
        print(f"| {label} | " + " | ".join(" / ".join(f"{r[key]:.1f}" for r in rows[n]) for n in trees) + " |")
    print("| whole result, no first view | " + " | ".join(f"{alone[n]['whole_s']:.1f}" for n in trees) + " |")


if __name__ == "__main__":
    main()
