"""Time `dvc repro` after changing one param, then after changing it back (DVC's run-cache).

The promise measured here: changing one strategy's knob re-runs only that strategy's chain and the
report, quickly. Run it on an up-to-date pipeline (`bash scripts/run.sh` first):

    python benchmarks/bench_rerun.py                                  # strategies.fg_bg.bg_margin +1
    python benchmarks/bench_rerun.py --set strategies.foreground.n_fg=2

Prints the wall time of each `dvc repro` and the stages that ran, each with its own wall time (from
its start to the next stage's, so DVC's bookkeeping after it is included): the first repro with
`--no-run-cache` (the changed stages really run, even for a value tried before), the second after
params.yaml is restored byte for byte (also on Ctrl-C or a failure), where DVC's run-cache puts the
outputs back.
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

from camprompt.artifacts import override_params

PARAMS = Path("params.yaml")


def _repro(*flags: str) -> tuple[float, list[str]]:
    """Run `dvc repro`, streaming its output to time each stage (start of one to start of the next)."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", *flags], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    events: list[tuple[float, str]] = []  # (seconds since start, stage) for each stage DVC begins
    tail: list[str] = []
    for line in proc.stdout:  # type: ignore[union-attr]
        tail = (tail + [line])[-60:]
        ran = re.search(r"Running stage '([^']+)'", line)
        restored = re.search(r"Stage '([^']+)' is cached - skipping run", line)
        if ran or restored:
            name = ran.group(1) if ran else f"{restored.group(1)} (from run-cache)"  # type: ignore[union-attr]
            events.append((time.perf_counter() - start, name))
    seconds = time.perf_counter() - start
    if proc.wait() != 0:
        raise SystemExit("dvc repro failed:\n" + "".join(tail))
    ends = [t for t, _ in events[1:]] + [seconds]
    stages = [f"{name} {end - t:.1f} s" for (t, name), end in zip(events, ends)]
    if events:
        stages.insert(0, f"[DVC before the first stage {events[0][0]:.1f} s]")
    return seconds, stages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", default=None, help="KEY=VALUE (dotted key); default: strategies.fg_bg.bg_margin + 1")
    args = ap.parse_args()
    status = subprocess.run([sys.executable, "-m", "dvc", "status", "-q"], env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    if status.returncode != 0:
        raise SystemExit("the pipeline is not up to date: run `dvc repro` (or bash scripts/run.sh) first")
    original = PARAMS.read_bytes()
    params = yaml.safe_load(original)
    assignment = args.set or f"strategies.fg_bg.bg_margin={float(params['strategies']['fg_bg']['bg_margin']) + 1.0}"
    key, value = assignment.partition("=")[::2]
    try:
        override_params(params, [assignment])
    except ValueError as exc:
        raise SystemExit(f"--set {exc}") from None
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
