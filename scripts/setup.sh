#!/usr/bin/env bash
# Create .venv with the pinned torch/torchvision pair and the project's requirements (MobileNetV2's
# pretrained weights ship in explorer/bundled_weights). Idempotent: a second run only checks.
# Usage: bash scripts/setup.sh [--dev] [--no-package]
#   --no-package: the requirements only, not the package itself (the Dockerfile's layer of packages,
#   built before the source is copied: it needs requirements*.txt and this script, nothing else)
# Files it reads: requirements.txt, requirements-dev.txt, and for the package pyproject.toml and
# explorer/ (tests/test_house.py checks that the Dockerfile copies them before it runs this).
set -euo pipefail
cd "$(dirname "$0")/.."
dev="" package=1
for arg in "$@"; do
  case "$arg" in
    --dev) dev="--dev" ;;
    --no-package) package=0 ;;
    *) echo "setup.sh: unknown option $arg (--dev, --no-package)" >&2; exit 2 ;;
  esac
done
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.explorer-setup
want="$(cat requirements.txt requirements-dev.txt 2>/dev/null | sha256sum | cut -c1-16)$dev"
root="$PWD"
# whether the package is installed from this folder (imported from elsewhere, so not found by its cwd)
installed() { (cd / && "$root/.venv/bin/python" -c "import explorer, sys; sys.exit(0 if explorer.__file__.startswith('$root/') else 1)") >/dev/null 2>&1; }
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  if [ "$package" = 0 ] || installed; then
    exit 0
  fi
  # the package itself, editable, after the requirements were installed without it (the Dockerfile)
  .venv/bin/python -m pip install -q --no-deps -e .
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -r requirements.txt
# the package itself, editable: `import explorer` from any folder (a notebook in examples/), and its command
if [ "$package" = 1 ]; then
  .venv/bin/python -m pip install -q --no-deps -e .
fi
if [ -n "$dev" ]; then
  .venv/bin/python -m pip install -q -r requirements-dev.txt
  missing=""
  command -v chromium >/dev/null 2>&1 || missing="chromium"  # the browser tests
  command -v node >/dev/null 2>&1 || missing="$missing nodejs"  # the projection view's JavaScript tests (tests/ui/js)
  if [ -n "$missing" ]; then
    echo "installing Debian's$missing for the tests" >&2
    if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
  fi
fi
# UMAP's numba code compiled into the machine's cache now, not in the first analysis (18-23 s;
# explorer/analysis/projection.py: compile_umap)
.venv/bin/python -m explorer.analysis.projection || echo "setup.sh: UMAP not compiled ahead (the first analysis will)" >&2
echo "$want" > "$stamp"
