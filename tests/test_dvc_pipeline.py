"""End-to-end DVC round trip on a tiny params file, in a temporary copy of the repository.

Why: the promise of camprompt is that ``dvc repro`` runs the whole DAG, that a second run does
nothing, that changing one strategy's params re-runs exactly that strategy's
``points``/``masks``/``metrics`` stages and the report, and that changing a search config re-runs
its ``regions`` and what reads them -- never the classifier, Grad-CAM or the SAM encoder -- and that
a run interrupted with Ctrl-C leaves no half-written artifact and resumes where it stopped. Only a
real ``dvc repro`` can show that.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=REPO, check=True, capture_output=True, text=True,
    ).stdout
    return [p for p in out.split("\0") if p and (REPO / p).is_file()]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["DVC_NO_ANALYTICS"] = "1"
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "2")
    return env


def _dvc(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "dvc", *args], cwd=repo, env=_env(), capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise AssertionError(f"dvc {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def _ran_stages(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def _tiny_params(params: dict) -> dict:
    params = json.loads(json.dumps(params))  # deep copy
    params["data"].update(backgrounds="procedural", sizes={"train": 40, "val": 10, "test": 10})
    params["train"]["epochs"] = 1
    params["judge"].update(images=12, epochs=1)
    params["eval"]["limit"] = 4
    params["robustness"]["n"] = 3
    # one degraded and one generator variant cover both code paths; every further variant would add
    # two stages to each repro below (and minutes to the suite) without testing anything new
    variants = params["robustness"]["variants"]
    degraded = [k for k, v in variants.items() if "generator" not in v]
    drawn = [k for k, v in variants.items() if "generator" in v]
    params["robustness"]["variants"] = {k: variants[k] for k in degraded[-1:] + drawn[:1]}
    return params


def _bump_one_knob(strategy: dict) -> str:
    """Change one numeric knob of a strategy (the first one found) and return its name."""
    for key, value in strategy.items():
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            strategy[key] = value + 1
            return key
        if isinstance(value, float):
            strategy[key] = round(value * 1.1 + 0.01, 6)
            return key
    raise AssertionError(f"strategy has no numeric knob to change: {strategy}")


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("camprompt") / "repo"
    for rel in _tracked_files():
        dest = repo / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest)
    for leftover in ("dvc.lock",):
        (repo / leftover).unlink(missing_ok=True)
    shutil.rmtree(repo / "metrics", ignore_errors=True)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(_tiny_params(params), sort_keys=False))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "tiny"], cwd=repo, check=True)
    return repo


def test_repro_builds_everything_then_skips(tiny_repo: Path) -> None:
    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    strategies = list(params["strategies"])
    first = _dvc(tiny_repo, "repro")
    ran = _ran_stages(first.stdout)
    expected = {"data", "train", "heatmaps", "train_judge", "decision", "sam_model", "embeddings", "report", "variants",
                "robustness"}
    expected |= {f"regions@{search}" for search in params["searches"]}
    expected |= {f"{stage}@{v}" for v in params["robustness"]["variants"] for stage in ("variant_embeddings", "robust")}
    for name in strategies:
        expected |= {f"points@{name}", f"masks@{name}", f"metrics@{name}"}
    assert expected <= ran, f"stages that did not run: {expected - ran}"

    for name in strategies:
        metrics = json.loads((tiny_repo / "metrics" / f"{name}.json").read_text())
        assert metrics["n_images"] == 4
        assert 0.0 <= metrics["iou_mean"] <= 1.0
    assert (tiny_repo / "data" / "report" / "report.pdf").stat().st_size > 0
    decision = json.loads((tiny_repo / "metrics" / "decision.json").read_text())
    assert decision["test"]["n"] == 4 and 0.0 <= decision["test"]["accuracy"] <= 1.0
    robustness = json.loads((tiny_repo / "metrics" / "robustness.json").read_text())
    assert set(robustness["variants"]) == set(params["robustness"]["variants"])
    for summary in robustness["variants"].values():
        assert summary["n_images"] == 3 and set(summary["strategies"]) == set(params["robustness"]["strategies"])

    second = _dvc(tiny_repo, "repro")
    assert _ran_stages(second.stdout) == set(), second.stdout
    status = _dvc(tiny_repo, "status", "--json")
    assert json.loads(status.stdout or "{}") == {}


# Runs a stage's script like `python stages/x.py ARGS` and writes the files of every camprompt module
# it imported, at exit, to a JSON file.
_RECORDER = """
import atexit, json, runpy, sys
out, script, *args = sys.argv[1:]
def _dump():
    files = {getattr(m, "__file__", None) for name, m in list(sys.modules.items()) if name.split(".")[0] == "camprompt"}
    with open(out, "w") as fh:
        json.dump(sorted(f for f in files if f), fh)
atexit.register(_dump)
sys.argv = [script, *args]
runpy.run_path(script, run_name="__main__")
"""


def _code_free(path: Path) -> bool:
    """A package ``__init__.py`` holding only a docstring, ``__version__`` or ``__all__`` (no logic to depend on)."""
    import ast

    allowed = ("__version__", "__all__")
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue
        if isinstance(node, ast.ImportFrom) and node.module == "__future__":
            continue
        if isinstance(node, ast.Assign) and all(isinstance(t, ast.Name) and t.id in allowed for t in node.targets):
            continue
        return False
    return True


def test_each_stage_imports_exactly_the_modules_dvc_yaml_lists(tiny_repo: Path, tmp_path: Path) -> None:
    """A stage's camprompt deps in dvc.yaml are the modules it really imports: a missing one would not
    re-run it when that module changes, an extra one would re-run it for nothing. Every stage of the
    locked DAG is run once more (in a copy of the tiny repository) with an import recorder."""
    import camprompt

    _dvc(tiny_repo, "repro")
    copy = tmp_path / "copy"
    shutil.copytree(tiny_repo, copy, symlinks=True)
    package = Path(camprompt.__file__).resolve().parent
    locked = yaml.safe_load((tiny_repo / "dvc.lock").read_text())["stages"]
    assert len(locked) >= 10
    # The entries of one `foreach` share one script and one list of code deps, so one entry per such
    # group stands for all of them (each stage run costs seconds of torch import).
    groups: dict[tuple[str, frozenset[str]], str] = {}
    for stage, entry in locked.items():
        code = frozenset(d["path"] for d in entry["deps"] if d["path"].endswith(".py"))
        groups.setdefault((entry["cmd"].split()[1], code), stage)
    assert len(groups) >= 10
    wrong = []
    for stage in groups.values():
        entry = locked[stage]
        cmd = entry["cmd"].split()
        assert cmd[0] == "python" and cmd[1].startswith("stages/"), entry["cmd"]
        out = tmp_path / f"{stage}.json"
        proc = subprocess.run([sys.executable, "-c", _RECORDER, str(out), *cmd[1:]], cwd=copy, env=_env(),
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"{stage}: {proc.stderr[-2000:]}"
        files = [Path(f).resolve() for f in json.loads(out.read_text())]
        imported = {f"src/camprompt/{f.relative_to(package).as_posix()}" for f in files if not _code_free(f)}
        listed = {d["path"] for d in entry["deps"] if d["path"].startswith("src/camprompt/") and d["path"].endswith(".py")}
        if imported != listed:
            wrong.append(f"{stage}: imported but not in dvc.yaml {sorted(imported - listed)}; "
                         f"in dvc.yaml but never imported {sorted(listed - imported)}")
    assert not wrong, "\n".join(wrong)


def _readme_block(heading: str) -> str:
    """The first ```python block after ``heading`` in the README."""
    text = (REPO / "README.md").read_text()
    found = re.search(rf"^{re.escape(heading)}\n.*?^```python\n(.*?)^```", text, re.S | re.M)
    assert found, f"README has no python block under {heading!r}"
    return found.group(1)


def test_readme_python_api_runs(tiny_repo: Path) -> None:
    """The README's Python API example, verbatim, on the tiny pipeline's artifacts (data, classifier)."""
    _dvc(tiny_repo, "repro")  # a no-op after the test above; builds the artifacts when run alone
    code = _readme_block("## Python API") + "\nprint('shapes', tuple(pred.shape), tuple(sam_iou.shape))\n"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tiny_repo, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "shapes (8, 48, 64) (8,)" in proc.stdout, proc.stdout[-2000:]


def test_changing_one_strategy_reruns_only_its_chain(tiny_repo: Path) -> None:
    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    candidates = [n for n, s in params["strategies"].items() if n != "basic"]
    assert candidates, "params.yaml should define strategies beyond 'basic'"
    name = candidates[-1]
    _bump_one_knob(params["strategies"][name])
    (tiny_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    # its own chain and the report; and the robustness evaluation, which runs every strategy
    allowed = {f"points@{name}", f"masks@{name}", f"metrics@{name}", "report", "robustness"}
    allowed |= {f"robust@{v}" for v in params["robustness"]["variants"]}
    changed = set(json.loads(_dvc(tiny_repo, "status", "--json").stdout or "{}"))
    assert changed <= allowed and f"points@{name}" in changed, changed

    ran = _ran_stages(_dvc(tiny_repo, "repro").stdout)
    assert f"points@{name}" in ran and "report" in ran
    assert ran <= allowed, ran - allowed


def test_changing_a_search_reruns_its_regions_never_the_models(tiny_repo: Path) -> None:
    """A search knob re-runs that search's regions and what reads them, never data/train/heatmaps/SAM."""
    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    search = next(iter(params["searches"]))
    params["searches"][search]["max_candidates"] = int(params["searches"][search].get("max_candidates", 24)) - 1
    (tiny_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    robust = {f"robust@{v}" for v in params["robustness"]["variants"]}
    # the classifier's answer reads the regions of the search params decision.search names
    answer = {"decision"} if (params.get("decision") or {}).get("search", "default") == search else set()
    changed = set(json.loads(_dvc(tiny_repo, "status", "--json").stdout or "{}"))
    assert changed == {f"regions@{search}", "report"} | robust | answer, changed

    ran = _ran_stages(_dvc(tiny_repo, "repro").stdout)
    assert f"regions@{search}" in ran and "report" in ran
    allowed = {f"regions@{search}", "report", "robustness"} | robust | answer | {
        f"{stage}@{name}" for name in params["strategies"] for stage in ("points", "masks", "metrics")}
    assert ran <= allowed, ran - allowed


def _running(command: str) -> bool:
    """Whether a process whose command line contains ``command`` runs (Linux /proc)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if command in cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                return True
        except OSError:  # the process ended while we looked
            continue
    return False


@pytest.mark.skipif(not Path("/proc/self/cmdline").exists() or os.name != "posix", reason="needs Linux /proc and signals")
def test_interrupted_repro_leaves_no_partial_artifact_and_resumes(tiny_repo: Path) -> None:
    """Ctrl-C while ``masks@S`` runs: no half-written output, and the next repro starts at ``masks@S``."""
    _dvc(tiny_repo, "repro")  # up to date (a no-op after the tests above)
    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    name = next(n for n, strategy in params["strategies"].items() if "search" in strategy)  # one with numeric knobs
    _bump_one_knob(params["strategies"][name])
    (tiny_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    # Its own process group, so the SIGINT reaches DVC and the stage, like Ctrl-C in a terminal; and
    # SIGINT's default action, which a test run started in the background (`cmd &`) would ignore.
    # The test watches for the stage's own process, not for DVC's "Running stage" line: DVC's output
    # into a pipe or file is block-buffered, so that line can arrive after the stage has finished.
    log = tiny_repo.parent / "interrupted_repro.log"
    with log.open("w") as sink:
        proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro"], cwd=tiny_repo, env=_env(), text=True,
                                stdout=sink, stderr=subprocess.STDOUT, start_new_session=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 600
            while proc.poll() is None and time.monotonic() < deadline and not _running(f"stages/masks.py {name}"):
                time.sleep(0.02)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=300)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    out = log.read_text()
    assert f"Running stage 'masks@{name}'" in out, out[-3000:]
    assert proc.returncode != 0, f"the repro was not interrupted:\n{out[-3000:]}"

    folder = tiny_repo / "data" / "strategies" / name
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".")], "a temporary was left behind"
    assert not (folder / "masks.zarr").exists(), "masks.zarr exists although its stage was interrupted"
    pending = set(json.loads(_dvc(tiny_repo, "status", "--json").stdout or "{}"))
    # points@S is done and locked; the robustness stages (which do not read points@S) may or may not
    # have run before the interruption
    robust = {f"robust@{v}" for v in params["robustness"]["variants"]} | {"robustness"}
    must = {f"masks@{name}", f"metrics@{name}", "report"}
    assert must <= pending <= must | robust, pending

    ran = _ran_stages(_dvc(tiny_repo, "repro").stdout)
    assert must <= ran <= pending | {"robustness"}, ran
    assert json.loads((tiny_repo / "metrics" / f"{name}.json").read_text())["n_images"] == 4


def _bench(repo: Path, script: str, *args: str) -> str:
    proc = subprocess.run([sys.executable, f"benchmarks/{script}", *args], cwd=repo, env=_env(), capture_output=True,
                          text=True)
    assert proc.returncode == 0, f"{script} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def test_the_benchmarks_that_choose_knobs_run_on_the_built_dag(tiny_repo: Path, tmp_path: Path) -> None:
    """bench_strategies.py, bench_scoring.py and bench_decision.py, where the knobs are chosen on val, run on the DAG's own
    classifier, judge and SAM model. A benchmark that falls out of step with the library (bench_strategies
    once called evaluate_variant without the judge the searches weigh) fails here, not in a session
    that needs its numbers."""
    _dvc(tiny_repo, "repro")
    params = yaml.safe_load((tiny_repo / "params.yaml").read_text())
    drawn = next(k for k, v in params["robustness"]["variants"].items() if "generator" in v)
    cache, out = tmp_path / "embeddings.npz", tmp_path / "strategies.json"
    _bench(tiny_repo, "bench_strategies.py", "--offset", "3", "--n", "2", "--variants", f"clean,{drawn}",
           "--cache", str(cache), "--json", str(out))
    found = json.loads(out.read_text())["variants"]
    assert list(found) == ["clean", drawn]
    names = params["robustness"].get("strategies") or list(params["strategies"])
    for summary in found.values():
        assert summary["n_images"] == 2 and sorted(summary["strategies"]) == sorted(names)
        assert all(0.0 <= s["iou_mean"] <= 1.0 for s in summary["strategies"].values())
    assert cache.is_file()  # the embeddings persist for the next run

    table = _bench(tiny_repo, "bench_scoring.py", "--variants", "clean", "--offset", "3", "--n", "2",
                   "--cache", str(cache), "--try", "w_agree=0.5")
    rows = [line.split()[0] for line in table.splitlines() if "clean " in line and " / " in line]
    assert rows == ["oracle", "params", "w_agree=0.5"], table

    decided = tmp_path / "decision.json"
    _bench(tiny_repo, "bench_decision.py", "--variants", f"clean,{drawn}", "--offset", "3", "--n", "2",
           "--cache", str(cache), "--weights", "0,0.25", "--json", str(decided))
    accuracy = json.loads(decided.read_text())["accuracy"]
    assert list(accuracy) == ["clean", drawn] and all(sorted(a) == ["0", "0.25"] for a in accuracy.values())
    assert all(0.0 <= v <= 1.0 for a in accuracy.values() for v in a.values())
