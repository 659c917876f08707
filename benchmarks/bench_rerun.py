"""Time `dvc repro` after changing one param, then after changing it back (DVC's run-cache).

The promise measured here: changing one strategy's knob re-runs only that strategy's chain and the
report, quickly. Run it on an up-to-date pipeline (`bash scripts/run.sh` first):

    python benchmarks/bench_rerun.py                                  # strategies.fg_bg.bg_margin +1
    python benchmarks/bench_rerun.py --set strategies.foreground.n_fg=2

Prints the stages that ran and the wall time of each `dvc repro`: the first with `--no-run-cache`
(the changed stages really run, even for a value tried before), the second after params.yaml is
restored byte for byte (also on Ctrl-C or a failure), where DVC's run-cache puts the outputs back.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import yaml

PARAMS = Path("params.yaml")


def _repro(*flags: str) -> tuple[float, list[str]]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro", *flags], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"dvc repro failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    ran = re.findall(r"Running stage '([^']+)'", proc.stdout)
    restored = re.findall(r"Stage '([^']+)' is cached - skipping run, checking out outputs", proc.stdout)
    return seconds, ran + [f"{s} (from run-cache)" for s in restored]


def _set(params: dict, dotted: str, value: object) -> None:
    *path, last = dotted.split(".")
    node = params
    for key in path:
        node = node[key]
    if last not in node:
        raise SystemExit(f"params.yaml has no {dotted}")
    node[last] = value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default=None, help="KEY=VALUE (dotted key); default: strategies.fg_bg.bg_margin + 1")
    args = ap.parse_args()
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "-q"], env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    if status.returncode != 0:
        raise SystemExit("the pipeline is not up to date: run `dvc repro` (or bash scripts/run.sh) first")
    original = PARAMS.read_bytes()
    params = yaml.safe_load(original)
    if args.set:
        key, _, raw = args.set.partition("=")
        value = yaml.safe_load(raw)
    else:
        key = "strategies.fg_bg.bg_margin"
        value = float(params["strategies"]["fg_bg"]["bg_margin"]) + 1.0
    _set(params, key, value)
    try:
        PARAMS.write_text(yaml.safe_dump(params, sort_keys=False))
        seconds, ran = _repro("--no-run-cache")  # a real re-run, even for a value tried before
        print(f"{key}={value}: dvc repro {seconds:.1f} s; ran: {', '.join(ran) or 'nothing'}")
    finally:
        PARAMS.write_bytes(original)
    seconds, ran = _repro()
    print(f"back to params.yaml: dvc repro {seconds:.1f} s; ran: {', '.join(ran) or 'nothing'}")


if __name__ == "__main__":
    main()
