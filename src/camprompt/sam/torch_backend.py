"""SAM's PyTorch backend: ``segment_anything.SamPredictor`` (Meta's checkpoints) behind camprompt's
predictor contract, with the same embedding reuse."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from camprompt.sam.fetch import SamModelError, download_checkpoint, sha256_file
from camprompt.sam.predictor import DEFAULT_CACHE_SIZE, BaseSamPredictor, Embedding

__all__ = ["TorchSamPredictor"]


class TorchSamPredictor(BaseSamPredictor):
    """``segment_anything.SamPredictor`` behind the same protocol (and the same embedding reuse).

    ``checkpoint`` None downloads Meta's file for ``model_type`` into the cache (online only);
    ``model`` takes an already built ``segment_anything.modeling.Sam`` instead (tests, fine-tunes).
    """

    backend = "torch"

    def __init__(self, model_type: str = "vit_b", checkpoint: str | os.PathLike[str] | None = None, device: str = "auto",
                 *, model: Any = None, cache_size: int = DEFAULT_CACHE_SIZE, embedding_dtype: str = "float32",
                 input_filter: str = "none", filter_threshold: float = 0.0) -> None:
        from segment_anything import SamPredictor, sam_model_registry

        from camprompt.devices import resolve_device

        super().__init__(cache_size, embedding_dtype, input_filter=input_filter, filter_threshold=filter_threshold)
        device = resolve_device(device)
        self.model_type, self.checkpoint = model_type, None
        if model is None:
            if model_type not in sam_model_registry or model_type == "default":
                raise ValueError(f"unknown SAM model type {model_type!r}; choose vit_b, vit_l or vit_h")
            self.checkpoint = Path(checkpoint) if checkpoint is not None else download_checkpoint(model_type)
            if not self.checkpoint.is_file():
                raise SamModelError(f"SAM checkpoint {self.checkpoint} does not exist; set params sam.torch_checkpoint to Meta's .pth file, or null to download it")
            model = sam_model_registry[model_type](checkpoint=str(self.checkpoint))
        self.model = model.to(device).eval()
        self.device = device
        self._sp = SamPredictor(self.model)
        self._info: dict[str, Any] | None = None

    @property
    def model_info(self) -> dict[str, Any]:
        if self._info is None:
            if self.checkpoint is not None:
                digest = sha256_file(self.checkpoint)
                self._info = {"name": f"segment-anything {self.model_type}", "files": {self.checkpoint.name: digest}, "encoder_sha256": digest}
            else:  # an in-memory model: hash its weights
                h = hashlib.sha256()
                for name, tensor in sorted(self.model.state_dict().items()):
                    h.update(name.encode())
                    h.update(tensor.detach().cpu().numpy().tobytes())
                self._info = {"name": f"segment-anything {self.model_type} (in-memory)", "files": {}, "encoder_sha256": h.hexdigest()}
        return self._info

    def _encode(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        tf = self._sp.transform
        batch = torch.stack([torch.as_tensor(tf.apply_image(img), device=self.device).permute(2, 0, 1) for img in images])
        with torch.inference_mode():
            features = self.model.image_encoder(self.model.preprocess(batch.float()))
        return features.float().cpu().numpy()

    def _decode(self, emb: Embedding, coords: np.ndarray | None, labels: np.ndarray | None, box: np.ndarray | None,
                mask_input: np.ndarray | None, multimask: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        import torch

        sp = self._sp
        sp.reset_image()
        sp.features = torch.from_numpy(emb.features[None]).to(self.device)
        sp.original_size, sp.input_size, sp.is_image_set = emb.original_size, emb.input_size, True
        # Label -1 points pass through: SAM's prompt encoder embeds them as "not a point", as in ONNX.
        return sp.predict(point_coords=coords, point_labels=labels, box=box, mask_input=mask_input,
                          multimask_output=multimask, return_logits=True)
