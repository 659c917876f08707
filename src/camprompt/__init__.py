"""camprompt: prompt-free segmentation — Grad-CAM saliency -> point prompts -> Segment Anything.

Submodules are imported lazily by their users (``from camprompt.gradcam import GradCAM``) so that
importing the package never pulls in torch, onnxruntime or zarr by itself.
"""

__version__ = "0.1.0"
