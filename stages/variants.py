"""DVC stage `variants`: the robustness variants' images, one split folder each under `data/variants/`.

Reads params `seed`, `data` and `robustness` (split, n, variants). A degraded variant copies the
first `robustness.n` images of `robustness.split` through a JPEG round trip and/or Gaussian noise;
a `generator` variant draws that many new images by another generator's rules
(`camprompt.robustness.make_variant`). Each folder has the dataset layout plus a `dataset.json`
describing the variant, and is written atomically.
"""

from __future__ import annotations

from pathlib import Path

from camprompt.artifacts import load_params
from camprompt.data import write_split
from camprompt.robustness import VariantSpec, make_variant
from camprompt.stage_io import VARIANT_ROOT, run_stage, variant_names


def main() -> None:
    params = load_params()
    rob = params["robustness"]
    for name in variant_names(params):
        spec = VariantSpec.from_params(name, rob["variants"][name])
        arrays, meta = make_variant(spec, data_root=params["data"]["root"], split=rob["split"], n=int(rob["n"]),
                                    seed=int(params.get("seed", 0)), data_params=params["data"])
        write_split(Path(VARIANT_ROOT) / name, rob["split"], arrays, meta)
        print(f"variants: {name}: {len(arrays)} images ({meta['source']}; jpeg {meta['jpeg']}, noise {meta['noise']})")


if __name__ == "__main__":
    run_stage(main)
