#!/usr/bin/env bash
# A sweep of one strategy knob as queued DVC experiments, run by several workers at once.
#
#   bash scripts/sweep_demo.sh [STRATEGY] [KNOB] [VALUE...]      # default: foreground n_fg 1 2
#   JOBS=4 bash scripts/sweep_demo.sh fg_bg bg_margin 2 4 6 8
#   bash scripts/sweep_demo.sh --tiny                             # self-contained demo, see below
#
# Each value becomes one queued experiment (`dvc exp run --queue -S strategies.STRATEGY.KNOB=VALUE`);
# `dvc queue start -j JOBS` runs them in parallel, each in its own temporary copy of the repository
# that checks its unchanged inputs (dataset, classifier, heatmaps, SAM embeddings) out of the shared
# DVC cache, so a variant only re-runs its strategy's points/masks/metrics and the report. The script
# waits for the queue, then prints every experiment's metrics side by side (`dvc exp show`).
#
# Queued experiments start from the last git commit plus the workspace's params change, so run the
# pipeline and commit first (`bash scripts/run.sh && git add -A && git commit`). `--tiny` does that in
# a throw-away copy of this checkout (tiny procedural dataset, 1 epoch, 4 evaluated images), leaving
# this checkout's git history untouched: it proves the queue mechanics in a few minutes.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export DVC_NO_ANALYTICS=1
export PATH="$PWD/.venv/bin:$PATH"

TINY=0
if [ "${1:-}" = "--tiny" ]; then TINY=1; shift; fi
STRATEGY="${1:-foreground}"
KNOB="${2:-n_fg}"
if [ $# -gt 2 ]; then VALUES=("${@:3}"); else VALUES=(1 2); fi
JOBS="${JOBS:-2}"

if [ "$TINY" = 1 ]; then
  work="$(mktemp -d "${TMPDIR:-/tmp}/camprompt-sweep.XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  echo "sweep: tiny demo in $work (this checkout is not modified)"
  git ls-files --cached --others --exclude-standard -z | while IFS= read -r -d '' f; do
    [ -f "$f" ] && mkdir -p "$work/$(dirname "$f")" && cp -p "$f" "$work/$f"
  done
  ln -s "$PWD/.venv" "$work/.venv"
  cd "$work"
  python - <<'EOF'
import yaml
p = yaml.safe_load(open("params.yaml"))
p["data"].update(backgrounds="procedural", sizes={"train": 40, "val": 10, "test": 10})
p["train"]["epochs"] = 1
p["eval"]["limit"] = 4
yaml.safe_dump(p, open("params.yaml", "w"), sort_keys=False)
EOF
  git init -q && git add -A
  git -c user.name=sweep -c user.email=sweep@localhost commit -qm "tiny sweep baseline"
  echo "sweep: baseline dvc repro (tiny)"
  dvc repro -q
  git add -A && git -c user.name=sweep -c user.email=sweep@localhost commit -qm "tiny sweep baseline results"
fi

python - "$STRATEGY" "$KNOB" <<'EOF'
import sys, yaml
strategy, knob = sys.argv[1:]
strategies = yaml.safe_load(open("params.yaml")).get("strategies") or {}
if strategy not in strategies:
    sys.exit(f"sweep: params.yaml has no strategy {strategy!r}; known: {sorted(strategies)}")
EOF

names=()
for value in "${VALUES[@]}"; do
  name="sweep-${STRATEGY}-${KNOB}-${value}"
  name="${name//[^A-Za-z0-9_-]/_}"
  dvc exp run --queue -S "strategies.${STRATEGY}.${KNOB}=${value}" --name "$name"
  names+=("$name")
done
echo "sweep: ${#names[@]} experiments queued; starting $JOBS workers"
start=$(date +%s)
dvc queue start -j "$JOBS"
# Wait for the workers: the queue is done when nothing is queued or running any more. (The status is
# captured first: `grep -q` closing a pipe early would make pipefail end the loop at once.)
while status=$(dvc queue status 2>/dev/null) && grep -Eq '\b(Queued|Running)\b' <<<"$status"; do sleep 5; done
dvc queue status
if dvc queue status | grep -q '\bFailed\b'; then
  for n in "${names[@]}"; do dvc queue logs "$n" 2>/dev/null | tail -20 || true; done
  echo "sweep: an experiment failed (logs above)" >&2
  exit 1
fi
echo "sweep: ${#names[@]} experiments in $(( $(date +%s) - start )) s"
dvc exp show --no-pager --md --only-changed
