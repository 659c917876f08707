"""DVC stage `data`: generate the synthetic shapes benchmark into params `data.root`.

Reads params `seed` and `data`; writes `data/synthetic_shapes/` (layout and rules in
`camprompt.data`) atomically, so an interrupted run leaves the previous dataset intact.
"""

from __future__ import annotations

import time

from camprompt.artifacts import load_params
from camprompt.data import generate_dataset
from camprompt.shapes import ShapeRules


def main() -> None:
    params = load_params()
    data = params["data"]
    start = time.perf_counter()
    meta = generate_dataset(
        data["root"],
        seed=int(params.get("seed", 0)),
        sizes=data["sizes"],
        backgrounds=data.get("backgrounds", "auto"),
        npz=data.get("npz"),
        cifar_root=data.get("cifar_root"),
        width=int(data["width"]),
        height=int(data["height"]),
        rules=ShapeRules.from_params(data),
        train_variety=float(data["train_variety"]),
    )
    counts = {split: sum(c.values()) for split, c in meta["class_counts"].items()}
    print(f"data: {counts} images from {meta['source']['kind']} backgrounds into {data['root']} "
          f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
