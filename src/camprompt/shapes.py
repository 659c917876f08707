"""The shapes of the benchmark and the rules that paint them onto a background.

Five classes -- circle, square, triangle, star, diamond -- each a solid colour with an exact
binary mask. The rules, and why each exists:

* Shapes are rasterised on pixel centres with no anti-aliasing, so the mask is *exactly* the set of
  pixels painted with the fill colour -- no ambiguous edge pixels in the segmentation ground truth.
* A shape spans ``min_shape_size``..``max_shape_size`` pixels (its bounding box), is axis-aligned
  (a diamond is a square turned 45 degrees; triangle and star point up; another author's proportions
  and turns are :class:`Outline`'s knobs) and may sit anywhere as long
  as at least ``min_inside`` of its area lies inside the frame (partly cut shapes are realistic, but a
  sliver would make the label unknowable).
* **Minimum-contrast rule.** The fill colour must stand out from the background it covers: the 10th
  percentile, over the covered background pixels, of the Euclidean RGB distance (0..441) between the
  fill colour and the pixel must be at least ``min_contrast`` (default 60). So at least 90% of the
  shape differs clearly from what it hides; a plain mean-colour rule would let a shape vanish into
  half of a two-tone background. In addition the fill colour never occurs anywhere in the image's
  background, so ``(image == colour).all(-1)`` recovers the mask exactly. Colours are drawn uniformly
  at random; when 64 draws fail, the eight corners of the RGB cube are tried, then a new placement.
* Splits never share a background image: one seeded permutation of the source is cut into disjoint
  consecutive ranges, one per split.
* Everything is derived from ``numpy.random.default_rng([seed, split, index])``, so the same params
  give byte-identical files, and the whole dataset is written into a temporary directory that is
  renamed into place only when complete (``camprompt.artifacts.atomic_path``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np
from matplotlib.path import Path as PolygonPath

__all__ = ["CLASSES", "CONTRAST_PERCENTILE", "CONTRAST_STATS", "RASTERISERS", "Outline", "ShapeRules", "render_shape",
           "render_coverage", "colour_contrast", "compose_image", "varied_rules"]

CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star", "diamond")
CONTRAST_PERCENTILE = 10.0
CONTRAST_STATS = ("p10", "mean")        # the statistic the contrast rule bounds (see ShapeRules)
RASTERISERS = ("centre", "antialias")   # how a shape becomes pixels (see ShapeRules)
_SUPERSAMPLE = 4                        # antialias: sub-pixels per pixel side
_COLOUR_DRAWS = 64
_PLACEMENT_TRIES = 200
_CUBE_CORNERS = np.array([[r, g, b] for r in (0, 255) for g in (0, 255) for b in (0, 255)], dtype=np.uint8)


@dataclass(frozen=True)
class Outline:
    """How one shape's outline is proportioned and turned; the defaults are this benchmark's.

    Another author plausibly draws the same five classes with other proportions -- an equilateral
    triangle (``triangle_height`` 0.866), a regular pentagram (``star_inner`` 0.382), a diamond
    narrower than a turned square (``diamond_width`` 0.7) -- or turns them a little (``angle``,
    degrees, clockwise on screen, about the centre). A circle is the same under all of them.
    """

    triangle_height: float = 1.0   # the triangle's height over its width
    star_inner: float = 0.45       # the star's inner over outer radius (0.45 keeps the arms visible at 10 px)
    diamond_width: float = 1.0     # the diamond's width over its height
    angle: float = 0.0

    def __post_init__(self) -> None:
        for name in ("triangle_height", "diamond_width"):
            if not (np.isfinite(getattr(self, name)) and 0.25 <= getattr(self, name) <= 4):
                raise ValueError(f"{name} is a ratio in 0.25..4, got {getattr(self, name)!r}")
        if not (np.isfinite(self.star_inner) and 0 < self.star_inner < 1):
            raise ValueError(f"star_inner is the inner over the outer radius, in (0, 1), got {self.star_inner!r}")
        if not np.isfinite(self.angle):
            raise ValueError(f"angle must be a finite number of degrees, got {self.angle!r}")


_OURS = Outline()


def _polygon(cls: str, cx: float, cy: float, size: float, outline: Outline) -> np.ndarray | None:
    """Vertices (x, y) of the class's outline, bounding box ``size`` wide before any turn; None for a circle."""
    h = size / 2.0
    if cls == "circle":
        return None
    if cls == "square":
        verts = np.array([[-h, -h], [h, -h], [h, h], [-h, h]])
    elif cls == "diamond":
        w = outline.diamond_width * h
        verts = np.array([[0.0, -h], [w, 0.0], [0.0, h], [-w, 0.0]])
    elif cls == "triangle":  # apex up, ``triangle_height`` times as tall as wide
        t = outline.triangle_height * h
        verts = np.array([[0.0, -t], [h, t], [-h, t]])
    else:  # star: five points, one straight up
        angles = -np.pi / 2 + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, h, outline.star_inner * h)
        verts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    if outline.angle:
        a = np.deg2rad(outline.angle)
        verts = verts @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])
    return verts + [cx, cy]


def render_shape(cls: str, cx: float, cy: float, size: float, width: int, height: int,
                 outline: Outline = _OURS) -> np.ndarray:
    """Crisp boolean mask (height, width) of one shape centred at (cx, cy), spanning ``size`` pixels.

    Pixel (x, y) is inside when its centre is, so there is no anti-aliasing and the mask is exact.
    Coordinates may lie outside the frame (the shape is then clipped). ``outline``: another author's
    proportions and turn (the defaults: ours).
    """
    if cls not in CLASSES:
        raise ValueError(f"unknown shape class {cls!r}; expected one of {CLASSES}")
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    h = size / 2.0
    if cls == "circle":
        return (xs - cx) ** 2 + (ys - cy) ** 2 <= h * h
    # Our upright square and diamond keep their exact comparisons: a polygon test decides the pixels
    # whose centre lies on the outline differently, and the committed datasets must stay pixel-identical.
    if outline == _OURS and cls == "square":
        return (np.abs(xs - cx) <= h) & (np.abs(ys - cy) <= h)
    if outline == _OURS and cls == "diamond":
        return np.abs(xs - cx) + np.abs(ys - cy) <= h
    verts = _polygon(cls, cx, cy, size, outline)
    points = np.stack([xs.ravel(), ys.ravel()], axis=1)
    return PolygonPath(verts).contains_points(points).reshape(height, width)


@dataclass(frozen=True)
class ShapeRules:
    """How a generator paints a shape. The defaults are this benchmark's rules (the docstring above).

    Another author's generator plausibly differs in each knob, so the robustness variants use a
    second set ("foreign"): ``contrast``: ``p10`` bounds the 10th percentile of the RGB distances
    between the fill colour and the covered pixels, ``mean`` only the distance to their mean colour
    (weaker: half the shape may match the background); ``exclusive_colour``: whether the fill colour
    is kept out of the rest of the image; ``rasteriser``: ``centre`` paints the pixels whose centre
    is inside (crisp, exact masks), ``antialias`` blends the colour by each pixel's coverage (4x4
    sub-pixels) and the mask holds the pixels at least half covered; ``triangle_height``,
    ``star_inner`` and ``diamond_width`` proportion the outlines (:class:`Outline`), and each shape is
    turned by an angle drawn uniformly within ``rotation`` degrees either way.
    """

    min_shape_size: float = 10.0
    max_shape_size: float = 20.0
    min_inside: float = 0.8
    min_contrast: float = 60.0
    contrast: str = "p10"
    exclusive_colour: bool = True
    rasteriser: str = "centre"
    triangle_height: float = 1.0
    star_inner: float = 0.45
    diamond_width: float = 1.0
    rotation: float = 0.0

    def __post_init__(self) -> None:
        # Params give 10 or 10.0 alike; the rules hold floats and a bool, so dataset.json records one form.
        for knob in fields(self):
            if knob.type != "float":
                continue
            value = getattr(self, knob.name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"ShapeRules.{knob.name} must be a number, got {value!r}")
            object.__setattr__(self, knob.name, float(value))
        object.__setattr__(self, "exclusive_colour", bool(self.exclusive_colour))
        if not 0 < self.min_shape_size <= self.max_shape_size:
            raise ValueError(f"need 0 < min_shape_size <= max_shape_size, got {self.min_shape_size}, {self.max_shape_size}")
        if not 0 < self.min_inside <= 1:
            raise ValueError(f"min_inside must be in (0, 1], got {self.min_inside}")
        if not (np.isfinite(self.min_contrast) and self.min_contrast >= 0):
            raise ValueError(f"min_contrast must be a number >= 0 (RGB distance, 0..441), got {self.min_contrast}")
        if self.contrast not in CONTRAST_STATS:
            raise ValueError(f"contrast must be one of {CONTRAST_STATS}, got {self.contrast!r}")
        if self.rasteriser not in RASTERISERS:
            raise ValueError(f"rasteriser must be one of {RASTERISERS}, got {self.rasteriser!r}")
        if not (np.isfinite(self.rotation) and 0 <= self.rotation <= 180):
            raise ValueError(f"rotation is the largest turn in degrees, in 0..180, got {self.rotation!r}")
        self.outline()  # the proportions' own checks

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> ShapeRules:
        """The rules a params mapping sets (params.yaml's ``data``): its keys that name a knob; the
        other keys (root, sizes, the frame) belong to the caller, and unset knobs keep our defaults."""
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.name in params})

    def outline(self, angle: float = 0.0) -> Outline:
        """The outline these rules draw, turned by ``angle`` degrees."""
        return Outline(self.triangle_height, self.star_inner, self.diamond_width, angle)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """The contrast and colour rules in words (recorded in ``dataset.json``)."""
        stat = (f"the {CONTRAST_PERCENTILE:g}th percentile over the covered background pixels of the Euclidean RGB "
                "distance (0..441) between the fill colour and the pixel" if self.contrast == "p10" else
                "the Euclidean RGB distance (0..441) between the fill colour and the covered background's mean colour")
        colour = ("; the fill colour never occurs in the image's background" if self.exclusive_colour else
                  "; the fill colour may also occur in the background")
        return f"{stat} is >= min_contrast{colour}"


def varied_rules(rng: np.random.Generator) -> ShapeRules:
    """A random plausible generator: every :class:`ShapeRules` knob drawn from a wide range.

    Training on shapes painted by many rule sets (domain randomisation) keeps the classifier from
    learning one author's conventions -- crisp edges, a strong contrast, an exclusive colour, one
    size range -- that another generator's images do not share. The ranges hold this benchmark's
    rules and widen each knob by what another author plausibly chose.
    """
    low = float(rng.uniform(6.0, 12.0))
    return ShapeRules(
        min_shape_size=low, max_shape_size=float(rng.uniform(max(low, 18.0), 28.0)),
        min_inside=float(rng.uniform(0.5, 0.9)), min_contrast=float(rng.uniform(20.0, 80.0)),
        contrast=CONTRAST_STATS[int(rng.integers(len(CONTRAST_STATS)))], exclusive_colour=bool(rng.integers(2)),
        rasteriser=RASTERISERS[int(rng.integers(len(RASTERISERS)))],
    )


def render_coverage(cls: str, cx: float, cy: float, size: float, width: int, height: int,
                    outline: Outline = _OURS) -> np.ndarray:
    """float (height, width) in 0..1: the share of each pixel the shape covers (4x4 sub-pixel samples)."""
    k = _SUPERSAMPLE
    fine = render_shape(cls, (cx + 0.5) * k - 0.5, (cy + 0.5) * k - 0.5, size * k, width * k, height * k, outline)
    return fine.reshape(height, k, width, k).mean(axis=(1, 3))


def _inside_fraction(cls: str, cx: float, cy: float, size: float, width: int, height: int,
                     outline: Outline) -> tuple[np.ndarray, float]:
    """Mask in the frame and the fraction of the full shape's area that it keeps."""
    pad = int(np.ceil(size * max(1.0, outline.triangle_height, outline.diamond_width))) + 2  # a turned shape's reach
    big = render_shape(cls, cx + pad, cy + pad, size, width + 2 * pad, height + 2 * pad, outline)
    mask = big[pad : pad + height, pad : pad + width]
    total = int(big.sum())
    return mask, (float(mask.sum()) / total if total else 0.0)


def colour_contrast(colour: np.ndarray, covered: np.ndarray, stat: str = "p10") -> float:
    """The contrast rule's statistic between ``colour`` and the covered pixels (K,3) (see :class:`ShapeRules`)."""
    covered = covered.astype(np.float64)
    if stat == "mean":
        return float(np.linalg.norm(covered.mean(axis=0) - colour.astype(np.float64)))
    dist = np.linalg.norm(covered - colour.astype(np.float64), axis=1)
    return float(np.percentile(dist, CONTRAST_PERCENTILE))


def _colour_ok(colour: np.ndarray, covered: np.ndarray, outside: np.ndarray, rules: ShapeRules) -> bool:
    if colour_contrast(colour, covered, rules.contrast) < rules.min_contrast:
        return False
    return not (rules.exclusive_colour and bool((outside == colour).all(axis=1).any()))


def _pick_colour(rng: np.random.Generator, background: np.ndarray, mask: np.ndarray, rules: ShapeRules) -> np.ndarray | None:
    covered, outside = background[mask], background[~mask]
    for colour in rng.integers(0, 256, size=(_COLOUR_DRAWS, 3), dtype=np.uint8):
        if _colour_ok(colour, covered, outside, rules):
            return colour
    for colour in _CUBE_CORNERS:
        if _colour_ok(colour, covered, outside, rules):
            return colour
    return None


def compose_image(rng: np.random.Generator, background: np.ndarray, cls: str,
                  rules: ShapeRules = ShapeRules()) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Paint one random shape of class ``cls`` on ``background`` (H,W,3) by ``rules`` -> (image, mask, info)."""
    height, width = background.shape[:2]
    for _ in range(_PLACEMENT_TRIES):
        size = float(rng.uniform(rules.min_shape_size, rules.max_shape_size))
        cx = float(rng.uniform(-size / 2, width - 1 + size / 2))
        cy = float(rng.uniform(-size / 2, height - 1 + size / 2))
        outline = rules.outline(float(rng.uniform(-rules.rotation, rules.rotation)) if rules.rotation else 0.0)
        mask, inside = _inside_fraction(cls, cx, cy, size, width, height, outline)
        coverage = None
        if rules.rasteriser == "antialias":
            coverage = render_coverage(cls, cx, cy, size, width, height, outline)
            mask = coverage >= 0.5
        if inside < rules.min_inside or not mask.any():
            continue
        colour = _pick_colour(rng, background, mask, rules)
        if colour is None:
            continue
        image = background.copy()
        if coverage is None:
            image[mask] = colour
        else:
            blend = coverage[..., None] * colour.astype(np.float64) + (1 - coverage[..., None]) * background
            image = np.clip(np.round(blend), 0, 255).astype(np.uint8)
        info = {"size": size, "center": [cx, cy], "colour": colour.tolist(), "inside": inside}
        if rules.rotation:
            info["angle"] = outline.angle
        return image, mask, info
    raise RuntimeError(
        f"could not place a {cls} with min_inside={rules.min_inside} and min_contrast={rules.min_contrast} after "
        f"{_PLACEMENT_TRIES} tries; lower data.min_contrast or data.min_inside in params.yaml"
    )
