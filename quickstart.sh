#!/usr/bin/env bash
# Quick start: install everything (ffmpeg, Chromium, Python packages), then curate example footage.
# Uses ../shared/footage when it is beside the checkout, otherwise writes small synthetic example videos.
set -euo pipefail
cd "$(dirname "$0")"
bash .ci/install
# .ci/install falls back to .venv on a system Python that refuses pip installs (PEP 668).
[ -x .venv/bin/python ] && [ -z "${PYTHON:-}" ] && . .venv/bin/activate
FOOTAGE=../shared/footage
if [ ! -f "$FOOTAGE/README.md" ]; then
  python3 examples/make_footage.py runs/example_footage
  FOOTAGE=runs/example_footage
fi
rushes curate "$FOOTAGE" --out runs/quickstart
rushes inspect runs/quickstart --html runs/quickstart/report.html
echo "manifests in runs/quickstart/{videos,clips}; report: runs/quickstart/report.html"
