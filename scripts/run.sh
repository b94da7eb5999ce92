#!/usr/bin/env bash
# Set up (first time only) and start the dashboard on the bundled sample: http://localhost:8501
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# glibc malloc settings that double CPU throughput (explorer/process_setup.py: MALLOC_ENV; docs/benchmarks.md)
eval "$(.venv/bin/python -m explorer.process_setup)"
export NUMBA_THREADING_LAYER=omp
# torch, torchvision, sklearn and plotly are imported before the server starts (explorer/ui/serve.py)
exec .venv/bin/python -m explorer.ui.serve "$@"
