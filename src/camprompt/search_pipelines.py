"""The two pipelines that find their prompts by searching for the object region.

* :class:`ForegroundPointsPipeline` -- foreground points only: :mod:`camprompt.search` proposes
  candidate regions from the classifier's Grad-CAM and the image and verifies them with the
  classifier; :mod:`camprompt.placement` puts points deep inside the winner.
* :class:`ForegroundBackgroundPipeline` -- the same foreground points plus background points surely
  outside the object.

Each defines its own ``__call__(images)``: Grad-CAM, the object region it points at, the points, and
SAM's mask, its outline refined by colour (:mod:`camprompt.edges`, ``edge_rounds``). The search
module is imported only when a search runs, so placing points from stored regions (the ``points@S``
stage) needs neither it nor torch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np

from camprompt.colour import mask_solidity
from camprompt.conventions import FG_LABEL, check_rgb_batch, point_pixels
from camprompt.data import check_normalized, denormalize
from camprompt.edges import refine_edges
from camprompt.metrics import iou_batch
from camprompt.pipelines import CamSamPipeline, SamLike
from camprompt.placement import PlacementConfig, RegionChoice, background_points, foreground_points, pack_points
from camprompt.placement import region_box

if TYPE_CHECKING:  # torch and the search are imported where they run
    from torch import Tensor, nn

    from camprompt.search import RegionSearch, SearchConfig

__all__ = ["ForegroundPointsPipeline", "ForegroundBackgroundPipeline"]


class ForegroundPointsPipeline(CamSamPipeline):
    """Foreground points from the classifier's Grad-CAM and the image (no background points).

    ``search``: the :class:`~camprompt.search.SearchConfig` that finds the object region (default:
    its defaults; its ``use_sam`` lets SAM propose candidate regions too -- decoder calls, cheap with
    cached embeddings, an encoder run per image without). ``placement``: the
    :class:`~camprompt.placement.PlacementConfig` that turns the region into points (default: its
    defaults updated with :attr:`default_knobs`). ``judge``: the no-shape judge the search weighs
    (:mod:`camprompt.no_shape`), needed when the search config's ``w_keep_judge`` is not 0.
    """

    #: How the pipeline finds its prompts, in plain words (:attr:`description` adds its mask's last step).
    about = ("Grad-CAM says roughly where the evidence is; colour regions grown from its peaks and from a "
             "grid, plus SAM's own proposals, are the candidate objects. The classifier's class should "
             "collapse when the object is painted over, and the region's silhouette shown alone should read "
             "as that class to the classifier and as a shape to a copy of it trained to also answer 'no "
             "shape'; one foreground point goes to the deepest pixel of the winner's own colour, as far from "
             "every edge as possible; SAM answers it with and without the winner's bounding box, and the mask "
             "is chosen from both answers.")

    #: Placement knobs this pipeline needs other than PlacementConfig's defaults, applied when omitted.
    default_knobs: Mapping[str, Any] = MappingProxyType({})

    def __init__(self, predictor: SamLike | None, classifier: nn.Module | None, *, cam: Mapping[str, Any] | None = None,
                 search: SearchConfig | None = None, placement: PlacementConfig | None = None, batch_size: int = 32,
                 judge: nn.Module | None = None, progress: bool = False) -> None:
        super().__init__(predictor, classifier, cam=cam, progress=progress)
        self.search_config = search  # None: SearchConfig's defaults, made when the first search runs
        self.judge = judge
        self.placement_config = placement or self.placement_from({})
        self._check_placement()
        self.batch_size = int(batch_size)

    def __call__(self, images: Tensor) -> Tensor:
        """bool (B,H,W) masks for normalised images (B,3,H,W): Grad-CAM, the object region it points at,
        foreground points deep inside that region, and SAM's mask for them."""
        images = check_normalized(images)
        uint8, _, choices = self.locate(images)
        fg = [self.foreground_points(image, choice) for image, choice in zip(uint8, choices)]
        return self.segment(images, *pack_points(fg), regions=np.stack([c.region for c in choices]))

    @property
    def description(self) -> str:
        """:attr:`about`, and the mask's last step when this pipeline refines it."""
        refined = " The mask's outline pixels then go to the side whose colour they carry."
        return self.about + (refined if self.placement_config.edge_rounds else "")

    @classmethod
    def placement_from(cls, params: Mapping[str, Any]) -> PlacementConfig:
        """``PlacementConfig.from_params`` of strategy ``params`` over this pipeline's :attr:`default_knobs`."""
        return PlacementConfig.from_params({**cls.default_knobs, **params})

    def _check_placement(self) -> None:
        if self.placement_config.n_bg != 0:
            raise ValueError(f"{type(self).__name__} places foreground points only; set n_bg: 0 "
                             f"(got {self.placement_config.n_bg})")

    @property
    def region_search(self) -> RegionSearch:
        """The search this pipeline runs (:class:`camprompt.search.RegionSearch`)."""
        from camprompt.search import RegionSearch, SearchConfig

        config = self.search_config or SearchConfig()
        return RegionSearch(config, self.classifier, self._predictor if config.use_sam else None, judge=self.judge,
                            batch_size=self.batch_size, progress=self.progress)

    # -- the object region ------------------------------------------------------------------------
    def locate(self, images: Tensor) -> tuple[np.ndarray, np.ndarray, list[RegionChoice]]:
        """(uint8 images (B,H,W,3), heatmaps (B,H,W), chosen regions): the first half of ``__call__``."""
        uint8 = denormalize(images)
        heatmaps, targets = self.heatmaps(images)
        return uint8, heatmaps, self._search(uint8, images, heatmaps, targets)

    def regions(self, images: Tensor, heatmaps: np.ndarray | None = None,
                targets: Sequence[int] | np.ndarray | None = None) -> list[RegionChoice]:
        """The object region of every image (propose -> verify -> choose; :mod:`camprompt.search`).

        The expensive half of :meth:`points` (classifier probes, SAM proposals), so the DVC pipeline
        runs it once per search config (``regions@C``) and shares it between strategies.
        ``heatmaps``/``targets`` as in :meth:`points`.
        """
        images = check_normalized(images)
        uint8 = denormalize(images)
        return self._search(uint8, images, *self._cams(uint8, images, heatmaps, targets))

    def _search(self, uint8: np.ndarray, images: Tensor | None, heatmaps: np.ndarray,
                targets: np.ndarray | None) -> list[RegionChoice]:
        """:meth:`regions` on checked inputs (``images``/``uint8`` as in :meth:`_cams`)."""
        if targets is None:
            targets = self.predict_classes(self._normalised(uint8, images))
        if targets.shape != (len(uint8),):
            raise ValueError(f"targets must be ({len(uint8)},), got {targets.shape}")
        return self.region_search.regions(uint8, heatmaps, targets)

    # -- points -------------------------------------------------------------------------------
    def foreground_points(self, image: np.ndarray, choice: RegionChoice) -> np.ndarray:
        """(n_fg,2) points (x, y) deep inside the chosen region, on its own colour (its seed if it is empty)."""
        return foreground_points(image, choice, self.placement_config)

    def points(self, images: Tensor, heatmaps: np.ndarray | None = None,
               targets: Sequence[int] | np.ndarray | None = None, regions: np.ndarray | None = None,
               seeds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """coords float32 (B,K,2) (x, y) and labels int64 (B,K) (padding -1) from images alone.

        ``heatmaps`` (B,H,W): precomputed CAMs of this pipeline's configuration (the DVC stage passes
        ``data/heatmaps.zarr``); computed here when None. ``targets``: the classes they explain
        (default: the classifier's prediction, which is what the heatmaps stage explains).
        ``regions`` bool (B,H,W) and ``seeds`` (B,2): precomputed :meth:`regions` (the DVC stage
        passes ``data/regions/C.zarr``); then only the cheap placement runs, with no classifier or
        SAM call. Without them the regions are searched here first.
        """
        images = check_normalized(images)
        return self._points(denormalize(images), images, heatmaps, targets, regions, seeds)

    def points_rgb(self, images: np.ndarray, heatmaps: np.ndarray | None = None,
                   targets: Sequence[int] | np.ndarray | None = None, regions: np.ndarray | None = None,
                   seeds: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`points` for uint8 RGB images (B,H,W,3); with ``heatmaps``, ``regions`` and ``seeds``
        given it runs no model and imports no torch (the ``points@S`` stage)."""
        return self._points(check_rgb_batch(images), None, heatmaps, targets, regions, seeds)

    def _points(self, uint8: np.ndarray, images: Tensor | None, heatmaps: np.ndarray | None,
                targets: Sequence[int] | np.ndarray | None, regions: np.ndarray | None,
                seeds: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`points` and :meth:`points_rgb` on checked images (``uint8``/``images`` as in :meth:`_cams`)."""
        heatmaps, targets = self._cams(uint8, images, heatmaps, targets)
        if regions is None:
            choices = self._search(uint8, images, heatmaps, targets)
        else:
            choices = _given_regions(regions, seeds, heatmaps.shape)
        return self._place(uint8, heatmaps, choices)

    def _place(self, uint8: np.ndarray, heatmaps: np.ndarray, choices: Sequence[RegionChoice]) -> tuple[np.ndarray, np.ndarray]:
        """Packed points of every image from its chosen region (foreground only here)."""
        return pack_points([self.foreground_points(image, choice) for image, choice in zip(uint8, choices)])

    # -- masks --------------------------------------------------------------------------------
    def prompt_box(self, region: np.ndarray) -> np.ndarray | None:
        """The chosen region's bounding box widened by ``box_margin`` px (None: no box, or no region);
        SAM's answers with and without it are pooled for :meth:`select_mask`."""
        margin = self.placement_config.box_margin
        return None if margin is None else region_box(region, margin)

    def select_mask(self, image: np.ndarray, masks: np.ndarray, scores: np.ndarray,
                    coords: np.ndarray, labels: np.ndarray, region: np.ndarray | None = None) -> int:
        """Keep the proposal that honours the prompts and looks like one solid object.

        SAM's predicted IoU alone sometimes prefers a part of the shape or the shape plus a patch of
        background. Among the proposals that honour the most prompts, the score adds the colour
        evidence of :func:`camprompt.colour.mask_solidity` (homogeneity inside, contrast with the
        1-px ring outside) and, when the search's ``region`` is given, ``w_mask_region`` times the
        proposal's IoU with it (the search already weighed the evidence for that region) to SAM's
        predicted IoU.
        """
        agree = np.array([_points_agree(m, coords, labels) for m in masks])
        cfg = self.placement_config
        use_region = region is not None and cfg.w_mask_region > 0 and np.asarray(region).any()
        total = []
        for m, s, a in zip(masks, scores, agree):
            if a < agree.max() or not m.any():
                total.append(-np.inf)
                continue
            score = float(s) + cfg.w_mask_colour * mask_solidity(image, m, cfg.colour_tol)
            if use_region:
                score += cfg.w_mask_region * float(iou_batch(m[None], np.asarray(region, bool)[None])[0])
            total.append(score)
        return int(np.argmax(total)) if np.isfinite(total).any() else int(np.argmax(scores))

    def finish_mask(self, image: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """SAM's kept mask, its outline pixels reassigned by colour ``edge_rounds`` times
        (:func:`camprompt.edges.refine_edges`; 0 = as SAM drew it)."""
        cfg = self.placement_config
        return refine_edges(image, mask, rounds=cfg.edge_rounds, threshold=cfg.edge_threshold) if cfg.edge_rounds else mask


def _given_regions(regions: Any, seeds: Any, shape: tuple[int, ...]) -> list[RegionChoice]:
    """Precomputed regions bool (B,H,W) + fallback seeds (B,2) -> choices, with shape checks."""
    regions = np.asarray(regions)
    if regions.shape != shape or regions.dtype != bool:
        raise ValueError(f"regions must be bool {shape} to match the images, got {regions.dtype} {regions.shape}")
    if seeds is None:
        raise ValueError("precomputed regions need their fallback seeds (B,2) too (RegionChoice.seed)")
    seeds = np.asarray(seeds, np.float64)
    if seeds.shape != (shape[0], 2):
        raise ValueError(f"seeds must be ({shape[0]},2) as (x, y), got {seeds.shape}")
    return [RegionChoice(region=r, seed=s) for r, s in zip(regions, seeds)]


class ForegroundBackgroundPipeline(ForegroundPointsPipeline):
    """Foreground points as :class:`ForegroundPointsPipeline`, plus background points outside the object.

    Background points sit in low-heat pixels at least ``bg_margin`` px from the chosen region and of
    a clearly different colour. If the recipe finds no such pixel (tiny image, region everywhere),
    the documented fallback is the pixel farthest from the foreground points.
    """

    about = ("The same foreground point, plus background points that tell SAM where the object ends: "
             "pixels a few pixels outside the chosen region, where Grad-CAM is cool and the colour clearly "
             "differs from the region's, spread around it.")

    default_knobs = MappingProxyType({"n_bg": 2})

    def __call__(self, images: Tensor) -> Tensor:
        """bool (B,H,W) masks for normalised images (B,3,H,W): Grad-CAM, the object region it points at,
        foreground points inside it and background points around it, and SAM's mask for all of them."""
        images = check_normalized(images)
        uint8, heatmaps, choices = self.locate(images)
        fg = [self.foreground_points(image, choice) for image, choice in zip(uint8, choices)]
        bg = [self.background_points(*found) for found in zip(uint8, heatmaps, choices, fg)]
        return self.segment(images, *pack_points(fg, bg), regions=np.stack([c.region for c in choices]))

    def _check_placement(self) -> None:
        if self.placement_config.n_bg < 1:
            raise ValueError(f"{type(self).__name__} needs n_bg >= 1 (got {self.placement_config.n_bg})")

    def background_points(self, image: np.ndarray, heat: np.ndarray, choice: RegionChoice, fg: np.ndarray) -> np.ndarray:
        """(<=n_bg,2) points (x, y) surely outside the chosen region; the fallback is the pixel farthest
        from the foreground points ``fg`` (also when the region is empty)."""
        cfg = self.placement_config
        region = np.asarray(choice.region, bool)
        if region.any():
            bg = background_points(image, region, cfg.n_bg, heat=heat, margin=cfg.bg_margin,
                                   colour_tol=cfg.colour_tol, max_heat=cfg.bg_max_heat)
            if len(bg):
                return bg
        ys, xs = np.mgrid[0 : image.shape[0], 0 : image.shape[1]]
        far = np.min([np.hypot(xs - x, ys - y) for x, y in fg], axis=0)
        row, col = np.unravel_index(int(np.argmax(far)), far.shape)
        return np.array([[float(col), float(row)]])

    def _place(self, uint8: np.ndarray, heatmaps: np.ndarray, choices: Sequence[RegionChoice]) -> tuple[np.ndarray, np.ndarray]:
        fg = [self.foreground_points(image, choice) for image, choice in zip(uint8, choices)]
        return pack_points(fg, [self.background_points(*found) for found in zip(uint8, heatmaps, choices, fg)])


def _points_agree(mask: np.ndarray, coords: np.ndarray, labels: np.ndarray) -> float:
    """Share of the prompts a mask honours (fg points inside it, bg points outside)."""
    rows, cols, _ = point_pixels(coords, mask.shape)
    inside = mask[rows, cols]
    return float(np.mean(np.where(labels == FG_LABEL, inside, ~inside))) if len(labels) else 1.0
