#!/usr/bin/env bash
# The notebook view checked as a user meets it: JupyterLab 4 (its own venv, with anywidget's and
# ipywidgets' frontends), a kernel on the project's .venv, examples/python_api.ipynb run whole in
# Debian's chromium; the widget must draw every panel, highlight a selection set from Python and
# show a hovered image's thumbnail from the kernel, with no cell raising. Not part of the test
# suite (it installs JupyterLab, ~1 min); run it after changing the view or the widget.
# Usage: bash scripts/check_jupyterlab.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --dev
work=$(mktemp -d)
trap 'kill "$lab" 2>/dev/null || true; rm -rf "$work" examples/_jupyterlab_check.ipynb examples/.ipynb_checkpoints' EXIT
python3 -m venv "$work/lab"
"$work/lab/bin/pip" install -q jupyterlab anywidget ipywidgets
.venv/bin/python -m ipykernel install --prefix "$work/lab" --name explorer --display-name explorer >/dev/null
.venv/bin/python - <<'PY'
import json
nb = json.load(open("examples/python_api.ipynb"))
nb["metadata"]["kernelspec"] = {"name": "explorer", "display_name": "explorer", "language": "python"}
json.dump(nb, open("examples/_jupyterlab_check.ipynb", "w"))
PY
EXPLORER_CACHE_DIR="$work/cache" "$work/lab/bin/jupyter" lab --no-browser --port 8899 --IdentityProvider.token='' \
  --ServerApp.password='' --allow-root --ServerApp.root_dir="$PWD" >"$work/lab.log" 2>&1 &
lab=$!
for _ in $(seq 60); do curl -sf -o /dev/null http://localhost:8899/lab && break; sleep 1; done
.venv/bin/python scripts/check_jupyterlab.py http://localhost:8899/lab/tree/examples/_jupyterlab_check.ipynb
