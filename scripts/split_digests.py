"""Print a digest of every split as load_split reads it: images, masks, labels and names.

A change to the readers (camprompt.data, camprompt.files) proves it moves nothing for the files
on disk when this prints the same lines before and after it, e.g. with PYTHONPATH set to an older
checkout's src/:

    python scripts/split_digests.py > after.txt
    PYTHONPATH=../old/src python scripts/split_digests.py > before.txt && diff before.txt after.txt

Roots: params data.root and every data/variants/* folder (or the folders given as arguments).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from camprompt.artifacts import load_params
from camprompt.data import SPLITS, load_split


def digest(root: Path, split: str) -> str:
    arrays = load_split(root, split)
    h = hashlib.sha256()
    for array in (arrays.images, arrays.masks, arrays.labels):
        h.update(str((array.dtype, array.shape)).encode())
        h.update(array.tobytes())
    h.update("\n".join(arrays.names).encode())
    return f"{root} {split} {len(arrays)} {h.hexdigest()[:16]}"


def main(argv: list[str]) -> None:
    roots = [Path(a) for a in argv] or [Path(load_params()["data"]["root"]), *sorted(Path("data/variants").glob("*"))]
    for root in roots:
        for split in SPLITS:
            if (root / "images" / split).is_dir():
                print(digest(root, split), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
