#!/usr/bin/env bash
# The main job: set up, then run the whole DVC pipeline and show every strategy's metrics.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source scripts/setup.sh
start=$(date +%s)
dvc repro "$@"
echo
# Every strategy side by side (the report's table; `dvc metrics show` lists every raw number).
cat data/report/results.md
echo "camprompt: pipeline finished in $(( $(date +%s) - start )) s; report in data/report/"
