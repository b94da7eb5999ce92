#!/usr/bin/env bash
# Set up (first time only) and start the dashboard on the bundled sample: http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# glibc malloc settings that double CPU throughput (README.md, "Measured").
export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=536870912 MALLOC_ARENA_MAX=2
export NUMBA_THREADING_LAYER=omp
# torch, torchvision, sklearn and plotly are imported before the server starts (explorer/ui/serve.py)
exec .venv/bin/python -m explorer.ui.serve "$@"
