"""Placement: from an object region to SAM's point prompts -- foreground points deep inside it,
background points surely outside it -- and the knobs that steer it.

Placement is cheap and runs per strategy (``points@S``); finding the region is the expensive part
(:mod:`camprompt.search`, ``regions@C``) and is shared. So a placement knob re-runs only its
strategy's points, masks and metrics.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from camprompt.colour import colour_core, colour_distance, median_colour
from camprompt.conventions import BG_LABEL, FG_LABEL, PAD_LABEL, check_rgb_image, knobs_from_params
from camprompt.edges import FILL_SHARE, check_edge_knobs

__all__ = ["PlacementConfig", "PLACEMENT_KNOBS", "RegionChoice", "stack_choices", "interior_points",
           "background_points", "foreground_points", "region_box", "pack_points"]


@dataclass(frozen=True)
class PlacementConfig:
    """Knobs that turn a chosen region into points, pick SAM's mask and refine its outline (params
    ``strategies.<name>``)."""

    n_fg: int = 1                 # foreground points per image (interior maxima of the chosen region)
    n_bg: int = 0                 # background points per image
    colour_tol: float = 40.0      # RGB distance (0..441) that still counts as "the same colour"
    fg_separation: float = 4.0    # min distance between foreground points (px)
    fg_colour_core: bool = True   # foreground points on the region's own colour only (colour_core)
    bg_margin: float = 4.0        # background points at least this far from the region (px)
    bg_max_heat: float = 0.5      # ... in pixels with heat below this
    w_mask_colour: float = 0.5    # mask choice: weight of colour evidence vs SAM's predicted IoU ...
    w_mask_region: float = 0.0    # ... and of the proposal's IoU with the search's region
    box_margin: int | None = None  # also prompt SAM with the region's bounding box widened by this (px); None: no box
    edge_rounds: int = 0          # refine the kept mask's outline by colour this many times (0 = SAM's mask as is) ...
    edge_threshold: float = FILL_SHARE  # ... an outline pixel joins the shape from this fill share (camprompt.edges)

    @classmethod
    def from_params(cls, params: Mapping[str, Any], ignore: Sequence[str] = ()) -> PlacementConfig:
        """Build from a strategy's params; unknown keys raise (a typo must not be silently ignored)."""
        cfg = knobs_from_params(cls, params, "placement", ignore)
        if cfg.n_fg < 1 or cfg.n_bg < 0:
            raise ValueError(f"need n_fg >= 1 and n_bg >= 0; got {cfg.n_fg}, {cfg.n_bg}")
        margin = cfg.box_margin
        if margin is not None and (isinstance(margin, bool) or not isinstance(margin, int) or margin < 0):
            raise ValueError(f"box_margin must be a whole number of pixels >= 0, or null for no box; got {margin!r}")
        check_edge_knobs(cfg.edge_rounds, cfg.edge_threshold)
        return cfg


PLACEMENT_KNOBS = frozenset(f.name for f in fields(PlacementConfig))


@dataclass
class RegionChoice:
    """The object region chosen for one image (by :mod:`camprompt.search`), before any point is placed."""

    region: np.ndarray                 # bool (H,W); empty when no plausible candidate was found
    seed: np.ndarray                   # (2,) x, y: the heatmap's strongest point, the fallback fg point
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0))  # every candidate's score
    features: list[dict[str, float]] = field(default_factory=list)


def stack_choices(choices: Sequence[RegionChoice], shape: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """(regions bool (N,H,W), seeds (N,2)) of a search's ``choices``: what ``regions@C`` stores and the
    pipelines' ``regions=`` and ``seeds=`` take. ``shape`` (H, W) sizes the empty result of no choices."""
    if not choices:
        return np.zeros((0, *shape), bool), np.zeros((0, 2))
    return np.stack([c.region for c in choices]), np.stack([c.seed for c in choices])


def interior_points(mask: np.ndarray, n: int, min_separation: float = 4.0) -> np.ndarray:
    """Up to ``n`` points (x, y) deep inside ``mask``: greedy distance-transform maxima.

    The image frame counts as an edge (a shape cut by the border gets its point away from the cut).
    Ties go to the pixel nearest the region's centre of mass; later points must be at least
    ``min_separation`` px from earlier ones. Empty mask -> ValueError (there is no interior).
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ValueError("cannot place interior points in an empty region")
    depth = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    rows, cols = np.nonzero(mask)
    centre = np.array([cols.mean(), rows.mean()])
    tie = np.hypot(cols - centre[0], rows - centre[1])
    order = np.lexsort((tie, -depth[rows, cols]))
    picked: list[np.ndarray] = []
    for i in order:
        p = np.array([cols[i], rows[i]], dtype=np.float64)
        if all(np.hypot(*(p - q)) >= min_separation for q in picked):
            picked.append(p)
            if len(picked) >= n:
                break
    return np.asarray(picked, dtype=np.float64).reshape(-1, 2)


def background_points(
    image: np.ndarray, mask: np.ndarray, n: int, *, heat: np.ndarray | None = None, margin: float = 4.0,
    colour_tol: float = 40.0, max_heat: float = 0.5,
) -> np.ndarray:
    """Up to ``n`` points (x, y) surely outside the object ``mask``.

    Allowed pixels: at least ``margin`` px from the region, colour farther than ``colour_tol`` from
    the region's median colour (so a part of the object the region missed is never chosen) and heat
    below ``max_heat`` when a heatmap is given. Among them, points are spread around the object:
    the first is the allowed pixel nearest the region, each next one maximises its distance to the
    points already chosen while staying near the object (farthest-point sampling on a ring).
    Fewer than ``n`` (possibly none) when too little is allowed.
    """
    image, mask = check_rgb_image(image), np.asarray(mask, bool)
    if not mask.any() or n < 1:
        return np.zeros((0, 2))
    dist = ndi.distance_transform_edt(~mask)
    allowed = dist >= margin
    allowed &= colour_distance(image, median_colour(image, mask)) > colour_tol
    if heat is not None:
        allowed &= np.asarray(heat) < max_heat
    rows, cols = np.nonzero(allowed)
    if rows.size == 0:
        return np.zeros((0, 2))
    near = dist[rows, cols] <= dist[rows, cols].min() + 2 * margin
    rows, cols = rows[near], cols[near]
    pts = np.stack([cols, rows], axis=1).astype(np.float64)
    picked = [int(np.argmin(dist[rows, cols]))]
    gap = np.hypot(*(pts - pts[picked[0]]).T)
    while len(picked) < n and gap.max() > 0:
        nxt = int(np.argmax(gap))
        picked.append(nxt)
        gap = np.minimum(gap, np.hypot(*(pts - pts[nxt]).T))
    return pts[picked]


def foreground_points(image: np.ndarray, choice: RegionChoice, cfg: PlacementConfig) -> np.ndarray:
    """Up to ``cfg.n_fg`` points (x, y) deep inside the chosen region, on its own colour.

    An empty region (nothing plausible was found) gives the fallback: one point at ``choice.seed``,
    the heatmap's strongest pixel.
    """
    region = np.asarray(choice.region, bool)
    if not region.any():
        return np.reshape(choice.seed, (1, 2)).astype(np.float64)
    core = colour_core(image, region, cfg.colour_tol) if cfg.fg_colour_core else region
    return interior_points(core, cfg.n_fg, cfg.fg_separation)


def region_box(region: np.ndarray, margin: int) -> np.ndarray | None:
    """SAM's box prompt for a region: float32 (4,) x0, y0, x1, y1 of its pixels, widened by ``margin``
    px and clipped to the frame (None for an empty region: there is nothing to bound).

    Why: on a compressed image SAM sometimes answers a point inside a small shape with a mask of the
    background; the region the search chose still bounds the shape, and the box says so.
    """
    rows, cols = np.nonzero(np.asarray(region, bool))
    if rows.size == 0:
        return None
    height, width = np.shape(region)
    return np.array([max(cols.min() - margin, 0), max(rows.min() - margin, 0),
                     min(cols.max() + margin, width - 1), min(rows.max() + margin, height - 1)], np.float32)


def pack_points(fg: Sequence[np.ndarray], bg: Sequence[np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-image fg/bg point lists -> coords float32 (B,K,2), labels int64 (B,K) padded with -1 (no bg: None)."""
    bg = [np.zeros((0, 2))] * len(fg) if bg is None else bg
    if len(fg) != len(bg):
        raise ValueError(f"got {len(fg)} foreground lists but {len(bg)} background lists")
    k = max([len(f) + len(b) for f, b in zip(fg, bg)] + [1])
    coords = np.zeros((len(fg), k, 2), np.float32)
    labels = np.full((len(fg), k), PAD_LABEL, np.int64)
    for i, (f, b) in enumerate(zip(fg, bg)):
        pts = np.concatenate([np.reshape(f, (-1, 2)), np.reshape(b, (-1, 2))])
        coords[i, : len(pts)] = pts
        labels[i, : len(f)] = FG_LABEL
        labels[i, len(f) : len(pts)] = BG_LABEL
    return coords, labels
