"""DVC stage `data`: generate the synthetic shapes benchmark into params `data.root`.

Reads params `seed` and `data`; writes `data/synthetic_shapes/` (layout and rules in
`camprompt.data`) atomically, so an interrupted run leaves the previous dataset intact.
"""

from __future__ import annotations

import time

from camprompt.artifacts import load_params
from camprompt.data import generate_from_params


def main() -> None:
    params = load_params()
    data = params["data"]
    start = time.perf_counter()
    meta = generate_from_params(data["root"], data, seed=int(params.get("seed", 0)))
    counts = {split: sum(c.values()) for split, c in meta["class_counts"].items()}
    print(f"data: {counts} images from {meta['source']['kind']} backgrounds into {data['root']} "
          f"in {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
