#!/usr/bin/env bash
# Set up (packages, Debian's chromium) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=536870912 MALLOC_ARENA_MAX=2
exec .venv/bin/python -m pytest -q "$@"
