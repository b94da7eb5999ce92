#!/usr/bin/env bash
# Set up (packages, Debian's chromium) and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
eval "$(.venv/bin/python -m explorer.process_setup)"  # glibc malloc settings (explorer/process_setup.py: MALLOC_ENV)
exec .venv/bin/python -m pytest -q --durations=15 "$@"
