"""The Dockerfile copies every file scripts/setup.sh needs before each step that runs it (its build broke
when setup.sh began to install the package itself, `pip install -e .`, from a step that ran before
pyproject.toml was copied). A fast stand-in for `docker build`: each setup.sh step runs in a folder
holding only what the Dockerfile copied so far, with a stand-in python whose pip fails on a file
that is not there; scripts/check_image.sh builds the real image."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STAND_IN = """#!/usr/bin/env bash
# python as setup.sh calls it: `-m venv DIR`, `-m pip install ...`, `-c CODE` (the package not installed yet)
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0; fi
if [ "$1" = "-c" ]; then exit 1; fi
if [ "$1" = "-m" ] && [ "$2" = "pip" ]; then
  shift 2
  prev=""
  for a in "$@"; do
    if [ "$prev" = "-r" ] && [ ! -f "$a" ]; then echo "pip: no file $a" >&2; exit 1; fi
    if [ "$prev" = "-e" ]; then
      for f in pyproject.toml explorer/__init__.py; do [ -f "$a/$f" ] || { echo "pip: $a is not a Python project (no $f)" >&2; exit 1; }; done
    fi
    prev="$a"
  done
  echo "pip $*" >> "$(dirname "$0")/../pip.log"
  exit 0
fi
echo "unexpected: python $*" >&2; exit 1
"""


def _steps() -> list[tuple[str, list[str]]]:
    """The Dockerfile's COPY and RUN instructions, continuation lines joined: (COPY, [sources..., dest])
    or (RUN, [the command])."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    steps = []
    for line in text.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "COPY":
            args = [a for a in shlex.split(rest) if not a.startswith("--")]
            steps.append(("COPY", args))
        elif word == "RUN":
            steps.append(("RUN", [rest]))
    return steps


def _copy(sources: list[str], dest: str, into: Path) -> None:
    for src in sources:
        if src == ".":
            for item in ROOT.iterdir():
                if item.name in (".git", ".venv", "artifacts", "tests", "bench"):
                    continue
                if item.is_dir():
                    shutil.copytree(item, into / item.name, dirs_exist_ok=True)
                else:
                    shutil.copy2(item, into / item.name)
            continue
        if dest in (".", "./"):
            target = into / Path(src).name
        elif dest.endswith("/"):
            target = into / dest / Path(src).name
        else:
            target = into / dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / src, target)


def test_every_file_setup_sh_reads_is_copied_before_the_step_that_runs_it(tmp_path: Path) -> None:
    app = tmp_path / "app"
    app.mkdir()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    python = bin_dir / "python3"
    python.write_text(STAND_IN)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    ran = 0
    for kind, args in _steps():
        if kind == "COPY":
            _copy(args[:-1], args[-1], app)
        elif "scripts/setup.sh" in args[0]:
            setup_args = args[0].split("scripts/setup.sh", 1)[1].split("&&")[0].split()
            env = {**os.environ, "PYTHON": str(python)}
            got = subprocess.run(
                ["bash", "scripts/setup.sh", *setup_args], cwd=app, env=env, capture_output=True, text=True
            )
            assert got.returncode == 0, f"RUN {args[0][:80]}: {got.stderr.strip()[-500:]}"
            ran += 1
    assert ran >= 2  # the requirements' layer, then the package once the source is in
    log = (app / ".venv" / "pip.log").read_text()
    assert "install -q -r requirements.txt" in log and "install -q --no-deps -e ." in log


def test_the_check_fails_on_the_broken_order(tmp_path: Path) -> None:
    """The stand-in catches the build that broke: setup.sh (which installs the package) run before
    pyproject.toml is copied."""
    app = tmp_path / "app"
    (app / "scripts").mkdir(parents=True)
    for name in ("requirements.txt", "requirements-dev.txt"):
        shutil.copy2(ROOT / name, app / name)
    shutil.copy2(ROOT / "scripts" / "setup.sh", app / "scripts" / "setup.sh")
    python = tmp_path / "python3"
    python.write_text(STAND_IN)
    python.chmod(python.stat().st_mode | stat.S_IEXEC)
    got = subprocess.run(
        ["bash", "scripts/setup.sh"], cwd=app, env={**os.environ, "PYTHON": str(python)}, capture_output=True, text=True
    )
    assert got.returncode != 0 and "not a Python project" in got.stderr
