#!/usr/bin/env bash
# Create .venv with the pinned torch/torchvision pair and the project's requirements (MobileNetV2's
# pretrained weights ship in explorer/bundled_weights). Idempotent: a second run only checks.
# Usage: bash scripts/setup.sh [--dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.explorer-setup
want="$(cat requirements.txt requirements-dev.txt 2>/dev/null | sha256sum | cut -c1-16)${1:-}"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -r requirements.txt
# the package itself, editable: `import explorer` from any folder (a notebook in examples/), and its command
.venv/bin/python -m pip install -q --no-deps -e .
if [ "${1:-}" = "--dev" ]; then
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
echo "$want" > "$stamp"
