"""DVC stage `decision`: the classifier's answer for every evaluated image, and its accuracy.

Reads params `decision` (`camprompt.decision.Decision`: the views, and how much the no-shape judge's
reading of the found region's outline weighs), `eval`, `data.root`, `data.height`/`data.width` (the
classifier's input size), `train.checkpoint`, `judge.checkpoint`, `searches.<decision.search>` and
`device`; reads the classifier, and when `decision.outline` is not 0 the no-shape judge and the
regions that `regions@<decision.search>` found. Writes the DVC metrics file `metrics/decision.json`
(the split, its size, the answer's accuracy, the views and the outline weight). A decision knob
re-runs this stage, `robust@V` and the report, never a search.
"""

from __future__ import annotations

from camprompt.artifacts import load_params, write_json
from camprompt.data import load_split
from camprompt.decision import Decision, answer
from camprompt.stage_io import load_fitted_classifier, load_judge, load_regions


def main() -> None:
    params = load_params()
    decision = Decision.from_params(params.get("decision"))
    ev = params["eval"]
    split = load_split(params["data"]["root"], ev["split"], ev.get("limit"))
    classifier = load_fitted_classifier(params)
    judge, regions = None, None
    if decision.outline:
        judge, (regions, _) = load_judge(params), load_regions(params, decision.search, split.names)
    decided, _ = answer(classifier, split.images, decision, judge, regions)
    accuracy = float((decided == split.labels).mean()) if len(split.labels) else float("nan")
    write_json("metrics/decision.json", {ev["split"]: {"n": len(split.labels), "accuracy": accuracy},
                                         "views": decision.views.count, "outline": decision.outline,
                                         "search": decision.search})
    print(f"decision: {ev['split']} accuracy {accuracy:.3f} over {decision.views.count} views"
          + (f" and the outline of the regions of {decision.search} (weight {decision.outline:g})" if decision.outline else ""))


if __name__ == "__main__":
    main()
