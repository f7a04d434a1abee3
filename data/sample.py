"""A frozen synthetic stand-in for a small industrial defect dataset.

Top-down photos of bottle mouths (in the spirit of MVTec AD "bottle"): a dark
opening, a bright shiny glass lip with specular highlights, a darker glass
shoulder and a dark background. About 40% of the images are defect-free; the
rest carry 1-3 instances of ``broken_large``, ``broken_small`` or
``contamination``.

Why it looks the way it does: the dataset is for checking that labelling and
training work on defects that a fixed grey-level threshold cannot find. Every
defect shares its grey levels with normal parts of the bottle (dark chips with
the opening and background, bright fracture edges with the highlights, stains
with the glass), while still contrasting with its immediate surroundings.
``best_threshold_iou`` measures that and ``generate`` reports it.

Frozen: images depend only on ``(seed, index)`` and the code below. Any change
to what is drawn, or to the order in which random numbers are drawn, must bump
``GENERATOR_VERSION``.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from data.coco import ground_truth_annotation, ground_truth_to_coco, image_to_coco, write_ground_truth
from data.errors import InputError
from data.geometry import mask_to_box

GENERATOR_VERSION = "1.0.0"
CLASSES = ("broken_large", "broken_small", "contamination")

SIZE = 900
GOOD_FRACTION = 0.4
_DESCRIPTION = "Defect Studio synthetic bottles"
# Fixed encoder settings: same pixels, same bytes.
# Huffman-only: sensor noise leaves nothing for LZ matching to find, so this is
# both the fastest and the smallest choice.
_PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY]
# cv2's RGB -> grey weights, used wherever "grey level" is meant.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

# Canonical radii (pixels at scale 1) of the bottle seen from above.
_LIP_IN = 116.0  # opening -> lip
_LIP_OUT = 211.0  # lip -> shoulder (through the groove under the lip)
_BODY = 384.0  # shoulder -> background
# Radial grey profile, (canonical radius, grey 0..1) pairs.
_PROFILE = np.array(
    [
        (0, 0.05),  # dark opening ...
        (50, 0.06),
        (75, 0.10),  # ... with a faint ring: the bottom seen through the neck
        (92, 0.07),
        (105, 0.12),
        (114, 0.22),  # inner neck wall, lit
        (118, 0.55),
        (121, 0.80),  # inner edge of the lip
        (127, 0.62),
        (150, 0.70),
        (167, 0.82),  # top of the rounded lip
        (190, 0.66),
        (202, 0.58),
        (207, 0.30),  # shadow groove under the lip
        (213, 0.34),
        (222, 0.48),  # shoulder, fading outwards
        (260, 0.44),
        (330, 0.36),
        (372, 0.30),
        (381, 0.42),  # bright outer edge of the bottle
        (387, 0.20),
        (395, 0.10),  # background
        (2000, 0.10),
    ],
    dtype=np.float32,
)
_PROFILE_R, _PROFILE_V = _PROFILE[:, 0].copy(), _PROFILE[:, 1].copy()
# Amber-green glass, normalised so that tinting keeps the grey level.
_GLASS_TINT = np.array([1.02, 1.00, 0.78], dtype=np.float32)
_GLASS_TINT /= float(_LUMA @ _GLASS_TINT)
_BROWN = np.array([1.25, 0.95, 0.62], dtype=np.float32)
_BROWN /= float(_LUMA @ _BROWN)


@dataclass(frozen=True)
class SampleReport:
    out_dir: Path
    n_images: int
    n_good: int
    n_instances: int
    instances_per_class: dict[str, int]
    best_threshold_iou: float
    best_threshold: int
    best_threshold_direction: str
    version: str


@dataclass
class _Scene:
    """One image being drawn: float RGB in 0..1 plus the bottle's pose."""

    img: np.ndarray  # (H, W, 3) float32
    rho: np.ndarray  # (H, W) canonical radius (image radius / scale)
    cx: float
    cy: float
    scale: float
    taken: np.ndarray  # (H, W) bool, pixels already altered by a defect


# --------------------------------------------------------------------- helpers
@lru_cache(maxsize=1)
def _grid() -> tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    return xs, ys


def _smooth_noise(rng: np.random.Generator, cells: tuple[int, int], size: tuple[int, int]) -> np.ndarray:
    """Unit-ish random field: a coarse grid of normals upsampled cubically (``size`` is (h, w))."""
    coarse = rng.standard_normal(cells).astype(np.float32)
    return cv2.resize(coarse, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)


def _window(cx: float, cy: float, half: float) -> tuple[slice, slice]:
    x0, x1 = max(0, int(cx - half)), min(SIZE, int(cx + half) + 1)
    y0, y1 = max(0, int(cy - half)), min(SIZE, int(cy + half) + 1)
    return slice(y0, y1), slice(x0, x1)


def _largest_component(mask: np.ndarray) -> np.ndarray:
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask.astype(bool)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


def _touches_taken(sc: _Scene, win: tuple[slice, slice], mask: np.ndarray) -> bool:
    """Whether a candidate comes within a few pixels of an earlier defect.

    Instances must not overlap (each mask is exactly what its defect altered) and
    keep a margin so the camera blur does not merge them.
    """
    taken = sc.taken[win]
    if not taken.any():
        return False
    near = cv2.dilate(taken.astype(np.uint8), np.ones((9, 9), np.uint8)).astype(bool)
    return bool((near & mask).any())


def _paste(sc: _Scene, win: tuple[slice, slice], mask: np.ndarray, rgb: np.ndarray) -> np.ndarray:
    """Write ``rgb`` (window-sized) into the mask's pixels; returns the full-frame mask."""
    region = sc.img[win]
    region[mask] = rgb[mask]
    full = np.zeros((SIZE, SIZE), dtype=bool)
    full[win] = mask
    sc.taken |= full
    return full


# ---------------------------------------------------------------- clean bottle
def _base_scene(rng: np.random.Generator) -> _Scene:
    # Parts are photographed the same way but not pixel-aligned.
    cx = SIZE / 2 + rng.uniform(-15, 15)
    cy = SIZE / 2 + rng.uniform(-15, 15)
    scale = rng.uniform(0.96, 1.04)
    angle = rng.uniform(0, 2 * math.pi)
    xs, ys = _grid()
    dx, dy = xs - cx, ys - cy
    r = np.sqrt(dx * dx + dy * dy)
    rho = r / scale
    inv_r = 1.0 / np.maximum(r, 1.0)

    grey = np.interp(rho, _PROFILE_R, _PROFILE_V).astype(np.float32)
    grey *= 1 + _mould_marks(rng, rho, dx, dy, inv_r, angle)
    glass = np.interp(rho, [_LIP_IN - 4, _LIP_IN + 4, _BODY - 2, _BODY + 8], [0, 1, 1, 0]).astype(np.float32)
    # Subtle glass texture: slow mottling plus a fine grain, on the glass only.
    texture = 0.035 * _smooth_noise(rng, (24, 24), (SIZE, SIZE))
    texture += 0.025 * _smooth_noise(rng, (300, 300), (SIZE, SIZE))
    grey *= 1 + glass * texture

    tint = _GLASS_TINT * rng.uniform(0.97, 1.03, 3).astype(np.float32)
    img = grey[..., None] * (1 + glass[..., None] * (tint - 1))
    img += _highlights(rng, rho, dx, dy, inv_r)[..., None]
    np.clip(img, 0, 1, out=img)
    return _Scene(img=img, rho=rho, cx=cx, cy=cy, scale=scale, taken=np.zeros((SIZE, SIZE), dtype=bool))


def _mould_marks(rng, rho, dx, dy, inv_r, angle) -> np.ndarray:
    """Relative brightness changes fixed to the bottle, so its rotation is visible.

    An uneven lip (brighter on one side, three-lobed) and a faint mould seam
    running straight across the shoulder.
    """
    cos_b = (dx * math.cos(angle) + dy * math.sin(angle)) * inv_r
    lip = np.interp(rho, [_LIP_IN, _LIP_IN + 6, _LIP_OUT - 8, _LIP_OUT], [0, 1, 1, 0]).astype(np.float32)
    # cos(3a) = 4cos^3(a) - 3cos(a), written out: float32 ** 3 is a slow pow().
    wobble = 0.04 * cos_b + 0.03 * (4 * cos_b * cos_b * cos_b - 3 * cos_b)
    seam_dist = -dx * math.sin(angle) + dy * math.cos(angle)
    shoulder = np.interp(rho, [222, 235, 355, 370], [0, 1, 1, 0]).astype(np.float32)
    seam = rng.uniform(0.06, 0.1) * np.exp(-(seam_dist**2) / (2 * 1.3**2)) * shoulder
    return lip * wobble + seam


def _highlights(rng, rho, dx, dy, inv_r) -> np.ndarray:
    """Specular reflections of a light at the upper left (fixed to the camera, not the bottle)."""
    beta = -0.75 * math.pi + rng.normal(0, 0.08)
    cos_d = (dx * math.cos(beta) + dy * math.sin(beta)) * inv_r  # cos(angle to the light)
    amp = rng.uniform(0.8, 1.2, 4)

    def lobe(center: float, width: float, towards: float, kappa: float) -> np.ndarray:
        # Gaussian across the ring times a von Mises bump along it.
        return np.exp(-0.5 * ((rho - center) / width) ** 2 + kappa * (towards * cos_d - 1))

    h = 0.50 * amp[0] * lobe(166, 9, 1, 40)  # main glint on top of the lip
    h += 0.28 * amp[1] * lobe(166, 7, -1, 70)  # weaker one on the far side
    h += 0.30 * amp[2] * lobe(121, 2.5, -1, 4)  # lit inner edge of the opening
    h += 0.22 * amp[3] * lobe(300, 28, 1, 150)  # glint on the shoulder
    return h.astype(np.float32)


# --------------------------------------------------------------------- defects
def _draw_chip(rng: np.random.Generator, sc: _Scene, large: bool) -> np.ndarray | None:
    """A bite out of the lip at its outer (mostly) or inner edge; None if it does not fit.

    The bite exposes a dark, mottled fracture surface with conchoidal ripples,
    bordered by a bright jagged fracture edge where it meets the intact glass.
    """
    s = sc.scale
    outer = rng.random() < 0.65
    # Aim at the bright part of the lip, not at the shadow groove next to it.
    edge = (_LIP_OUT - 9 if outer else _LIP_IN + 3) * s
    into_lip = -1.0 if outer else 1.0
    theta = rng.uniform(0, 2 * math.pi)
    radial = np.array([math.cos(theta), math.sin(theta)])
    tangent = np.array([-radial[1], radial[0]])
    lip_area = math.pi * (_LIP_OUT**2 - _LIP_IN**2) * s * s
    if large:
        # About half of the bite lies on the lip: aim at an area.
        target, measure = rng.uniform(0.02, 0.06) * lip_area, _area
    else:
        # Small chips are sized by how far they reach across, 15-40 px.
        target, measure = rng.uniform(15, 40), _extent
    r0 = math.sqrt(2 * target / math.pi) if large else target / 2
    shift = rng.uniform(-0.2, 0.25)  # centre moves into the lip by this many radii
    elong = rng.uniform(1.0, 1.5) if large else rng.uniform(1.0, 1.25)  # chips run along the rim
    shape = _jagged_outline(rng, n=56 if large else 28, jag=0.12 if large else 0.08)

    for _ in range(3):  # rescale once or twice to hit the target size
        centre = np.array([sc.cx, sc.cy]) + radial * (edge + into_lip * shift * r0)
        pts = centre + np.outer(shape[:, 0] * r0 * elong, tangent) + np.outer(shape[:, 1] * r0 / elong, radial)
        win = _window(centre[0], centre[1], 2.0 * r0 * elong + 6)
        bite = _fill_polygon(pts, win)
        rho = sc.rho[win]
        mask = _largest_component(bite & (rho >= _LIP_IN) & (rho <= _LIP_OUT))
        size = measure(mask)
        if size == 0 or abs(size / target - 1) < 0.1:
            break
        r0 *= math.sqrt(target / size) if large else target / size
    # A chip is a bite out of the rim, so it must reach the edge it was aimed at.
    at_edge = rho > _LIP_OUT - 4 if outer else rho < _LIP_IN + 2.5
    if mask.sum() < 30 or not (mask & at_edge).any() or _touches_taken(sc, win, mask):
        return None
    return _paste(sc, win, mask, _chip_pixels(rng, bite, r0, large))


def _area(mask: np.ndarray) -> int:
    return int(mask.sum())


def _extent(mask: np.ndarray) -> int:
    """Largest side of the mask's bounding box."""
    x0, y0, x1, y1 = mask_to_box(mask)
    return int(max(x1 - x0, y1 - y0))


def _jagged_outline(rng: np.random.Generator, n: int, jag: float) -> np.ndarray:
    """(n, 2) unit-size irregular closed outline: a lumpy ellipse with a saw-tooth edge."""
    t = np.sort(rng.uniform(0, 2 * math.pi, n))
    lumps = sum(rng.normal(0, 0.18) * np.cos(k * t + rng.uniform(0, 2 * math.pi)) / k for k in (1, 2, 3, 5))
    lumps = np.clip(lumps, -0.5, 0.5)  # keeps the outline inside the drawing window
    teeth = rng.uniform(-jag, jag, n) * np.where(np.arange(n) % 2 == 0, 1.0, -0.6)
    rad = np.exp(lumps) * (1 + teeth)
    return np.stack([rad * np.cos(t), rad * np.sin(t)], axis=1)


def _fill_polygon(pts: np.ndarray, win: tuple[slice, slice]) -> np.ndarray:
    h, w = win[0].stop - win[0].start, win[1].stop - win[1].start
    local = (pts - [win[1].start, win[0].start]) * 16  # 4 fractional bits
    canvas = np.zeros((h, w), dtype=np.uint8)
    cv2.fillPoly(canvas, [np.round(local).astype(np.int32)], 1, lineType=cv2.LINE_8, shift=4)
    return canvas.astype(bool)


def _chip_pixels(rng: np.random.Generator, bite: np.ndarray, r0: float, large: bool) -> np.ndarray:
    """Window-sized RGB of a chip; only its mask's pixels are used."""
    h, w = bite.shape
    depth = cv2.distanceTransform(bite.astype(np.uint8), cv2.DIST_L2, 3)  # to the bite's outline
    v = rng.uniform(0.12, 0.26) + 0.06 * _smooth_noise(rng, (max(3, h // 10), max(3, w // 10)), (h, w))
    v += 0.03 * np.sin(2 * math.pi * depth / rng.uniform(4, 8) + rng.uniform(0, 2 * math.pi))
    v *= 1 - 0.3 * np.clip(depth / r0, 0, 1)  # deeper into the break is darker
    # Bright fracture edge: broken in places, a few pixels wide where glass remains.
    edge_w = rng.uniform(2.0, 4.0) if large else rng.uniform(1.0, 2.0)
    along = _smooth_noise(rng, (max(3, h // 12), max(3, w // 12)), (h, w))
    edge = (depth <= edge_w) & (along > -0.6)
    v = np.where(edge, rng.uniform(0.70, 0.92) + 0.08 * along, v)
    v = np.clip(v, 0.03, 1.0).astype(np.float32)
    tint = 1 + 0.6 * (_GLASS_TINT - 1)  # a fracture surface is still the same glass
    return v[..., None] * tint


def _draw_stain(rng: np.random.Generator, sc: _Scene) -> np.ndarray | None:
    """A textured, soft-edged stain, often with a cluster of particles around it.

    Darker and browner than the glass under it, or, inside the dark opening, a
    lighter dust; either way the grey levels stay within the bottle's range.
    """
    zone = rng.choice(3, p=[0.45, 0.40, 0.15])  # lip, shoulder, inside the opening
    lo, hi, max_d = [(130, 198, 110), (228, 362, 110), (25, 95, 60)][zone]
    diam = min(math.exp(rng.uniform(math.log(18), math.log(110))), max_d) * sc.scale
    theta = rng.uniform(0, 2 * math.pi)
    rc = rng.uniform(lo, hi) * sc.scale
    cx, cy = sc.cx + rc * math.cos(theta), sc.cy + rc * math.sin(theta)
    win = _window(cx, cy, 0.95 * diam + 8)
    h, w = win[0].stop - win[0].start, win[1].stop - win[1].start
    ys, xs = np.mgrid[win[0], win[1]].astype(np.float32)
    xs -= cx
    ys -= cy

    # Shape: an ellipse roughened by low-frequency noise.
    orient, aspect = rng.uniform(0, math.pi), rng.uniform(0.55, 1.0)
    u = (xs * math.cos(orient) + ys * math.sin(orient)) / (diam / 2)
    v = (-xs * math.sin(orient) + ys * math.cos(orient)) / (diam / 2 * aspect)
    cells = int(rng.integers(4, 8))
    field = 1 - (u * u + v * v) + 0.45 * _smooth_noise(rng, (cells, cells), (h, w))
    core = _largest_component(field > 0.25)
    alpha = 0.30 + 0.55 * np.clip((field - 0.25) / 0.35, 0, 1)  # soft-ish edge, never invisible
    grain = _smooth_noise(rng, (max(3, h // 3), max(3, w // 3)), (h, w))
    alpha = np.clip(alpha * (1 + 0.3 * grain), 0.22, 0.95)

    mask = core.copy()
    if rng.random() < 0.6:
        dots = _particles(rng, (h, w), (cx - win[1].start, cy - win[0].start), diam)
        alpha = np.where(dots & ~core, rng.uniform(0.7, 0.9), alpha)
        mask |= dots
    mask &= sc.rho[win] < _BODY - 4  # contamination sits on the bottle
    if mask.sum() < 30 or _touches_taken(sc, win, mask):
        return None

    under = float((sc.img[win][mask] @ _LUMA).mean())
    if under < 0.25:
        colour = (under + rng.uniform(0.2, 0.3)) * np.array([1.0, 0.96, 0.86], dtype=np.float32)
    else:
        colour = under * rng.uniform(0.45, 0.7) * _BROWN
    # Not one flat colour: mottled brightness and a drift towards rust.
    mottle = 1 + 0.22 * _smooth_noise(rng, (max(3, h // 8), max(3, w // 8)), (h, w))
    rust = np.clip(0.5 + 0.5 * _smooth_noise(rng, (4, 4), (h, w)), 0, 1)[..., None]
    stain = colour * mottle[..., None] * (1 + rust * (np.array([0.15, -0.02, -0.2], dtype=np.float32)))
    a = alpha[..., None].astype(np.float32)
    rgb = sc.img[win] * (1 - a) + stain * a
    return _paste(sc, win, mask, np.clip(rgb, 0, 1).astype(np.float32))


def _particles(rng, shape: tuple[int, int], centre: tuple[float, float], diam: float) -> np.ndarray:
    canvas = np.zeros(shape, dtype=np.uint8)
    n = int(rng.integers(3, 26))
    offsets = rng.normal(0, 0.42 * diam, (n, 2))
    radii = rng.uniform(1.3, 3.2, n) * max(1.0, diam / 60)
    for (ox, oy), rad in zip(offsets, radii, strict=True):
        x, y = centre[0] + ox, centre[1] + oy
        cv2.circle(canvas, (int(round(x * 16)), int(round(y * 16))), int(round(rad * 16)), 1, -1, cv2.LINE_8, 4)
    return canvas.astype(bool)


def _draw_defect(rng: np.random.Generator, sc: _Scene, cls: str) -> np.ndarray | None:
    for _ in range(12):  # placements that overlap an earlier defect are retried
        mask = _draw_stain(rng, sc) if cls == "contamination" else _draw_chip(rng, sc, large=cls == "broken_large")
        if mask is not None:
            return mask
    return None


# ---------------------------------------------------------------------- camera
def _camera(rng: np.random.Generator, img: np.ndarray) -> np.ndarray:
    """Lighting gradient and vignetting, slight blur, sensor noise; float RGB -> uint8."""
    small = 225
    ys, xs = (np.mgrid[0:small, 0:small].astype(np.float32) + 0.5) / small * 2 - 1
    gamma = rng.uniform(0, 2 * math.pi)
    gradient = 1 + rng.uniform(0.04, 0.14) * (xs * math.cos(gamma) + ys * math.sin(gamma))
    vignette = 1 - rng.uniform(0.05, 0.15) * (xs * xs + ys * ys) / 2
    gain = rng.uniform(0.92, 1.06) * gradient * vignette
    img = img * cv2.resize(gain, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR)[..., None]
    img = cv2.GaussianBlur(img, (0, 0), rng.uniform(0.6, 1.1))
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0.008, 0.015))
    return np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ public API
def render_image(rng: np.random.Generator, kind: str) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """kind in {"good", *CLASSES}: one RGB uint8 (900,900,3) image plus [(class_name, bool mask)]."""
    if kind != "good" and kind not in CLASSES:
        raise ValueError(f"kind must be 'good' or one of {CLASSES}, got {kind!r}")
    sc = _base_scene(rng)
    instances: list[tuple[str, np.ndarray]] = []
    if kind != "good":
        n = 1 + int(rng.choice(3, p=[0.7, 0.2, 0.1]))
        kinds = [kind] + [CLASSES[int(rng.integers(len(CLASSES)))] for _ in range(n - 1)]
        for i, cls in enumerate(kinds):
            mask = _draw_defect(rng, sc, cls)
            if mask is None and i == 0:
                raise RuntimeError(f"could not place a {cls} defect")  # the bottle has ample room
            if mask is not None:
                instances.append((cls, mask))
    return _camera(rng, sc.img), instances


def _draw_kind(rng: np.random.Generator) -> str:
    if rng.random() < GOOD_FRACTION:
        return "good"
    return CLASSES[int(rng.integers(len(CLASSES)))]


class _ThresholdStats:
    """Grey-level histograms of all pixels and of defect pixels, summed over a dataset."""

    def __init__(self) -> None:
        self.all = np.zeros(256, dtype=np.int64)
        self.defect = np.zeros(256, dtype=np.int64)

    def add(self, grey: np.ndarray, mask: np.ndarray) -> None:
        grey = np.asarray(grey)
        if grey.ndim == 3:
            grey = cv2.cvtColor(grey, cv2.COLOR_RGB2GRAY)
        mask = np.asarray(mask, dtype=bool)
        if grey.shape != mask.shape:
            raise ValueError(f"image {grey.shape} and mask {mask.shape} differ in shape")
        grey = grey.astype(np.uint8, copy=False)
        self.all += np.bincount(grey.ravel(), minlength=256)
        self.defect += np.bincount(grey[mask], minlength=256)

    def best(self) -> tuple[float, int, str]:
        total = int(self.defect.sum())
        best = (0.0, 0, "below")
        if total == 0:
            return best
        # below t: grey < t, i.e. histogram bins 0..t-1; above t: bins t+1..255.
        inter_below = np.concatenate([[0], np.cumsum(self.defect)[:-1]])
        pred_below = np.concatenate([[0], np.cumsum(self.all)[:-1]])
        inter_above = self.defect.sum() - np.cumsum(self.defect)
        pred_above = self.all.sum() - np.cumsum(self.all)
        for direction, inter, pred in (("below", inter_below, pred_below), ("above", inter_above, pred_above)):
            iou = inter / np.maximum(pred + total - inter, 1)
            t = int(np.argmax(iou))
            if iou[t] > best[0]:
                best = (float(iou[t]), t, direction)
        return best


def best_threshold_iou(images: Iterable[np.ndarray], masks: Iterable[np.ndarray]) -> tuple[float, int, str]:
    """grey images (H,W uint8) and union-of-defect bool masks; dataset-wide best global threshold IoU.

    For every threshold t in 0..255 and direction ("below": grey < t, "above":
    grey > t) the prediction is every pixel on that side; IoU is summed
    intersections over summed unions across all images. Returns
    ``(iou, t, direction)`` for the best one (``(0.0, 0, "below")`` without defects).
    """
    stats = _ThresholdStats()
    for grey, mask in zip(images, masks, strict=True):
        stats.add(grey, mask)
    return stats.best()


def _write_png(path: Path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), _PNG_PARAMS)
    if not ok:
        raise RuntimeError(f"could not encode {path.name}")
    path.write_bytes(buf.tobytes())


def generate(
    out_dir: str | Path,
    n: int = 50,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> SampleReport:
    """Writes out_dir/images/*.png and out_dir/ground_truth.json.

    Image ``i`` depends only on ``(seed, i)``, so a smaller ``n`` gives a prefix
    of a larger one. Everything is written to a temporary folder next to
    ``out_dir`` first and then moved in, so a crash never leaves half a dataset;
    other files already in ``out_dir/images`` are left alone.
    """
    if int(n) != n or n < 0:
        raise InputError(f"n must be a whole number >= 0, got {n!r}")
    if int(seed) != seed or seed < 0:
        raise InputError(f"seed must be a whole number >= 0, got {seed!r}")
    n, seed = int(n), int(seed)
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        (tmp / "images").mkdir()
        coco, stats, counts = _render_all(tmp / "images", n, seed, progress)
        write_ground_truth(tmp / "ground_truth.json", coco)
        (out_dir / "images").mkdir(parents=True, exist_ok=True)
        for image in coco["images"]:
            os.replace(tmp / "images" / image["file_name"], out_dir / "images" / image["file_name"])
        # The GT goes last: once it is in place, every image it lists is too.
        os.replace(tmp / "ground_truth.json", out_dir / "ground_truth.json")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    iou, t, direction = stats.best()
    n_good = n - len({a["image_id"] for a in coco["annotations"]})
    return SampleReport(
        out_dir=out_dir,
        n_images=n,
        n_good=n_good,
        n_instances=len(coco["annotations"]),
        instances_per_class=counts,
        best_threshold_iou=iou,
        best_threshold=t,
        best_threshold_direction=direction,
        version=GENERATOR_VERSION,
    )


def _render_all(
    image_dir: Path, n: int, seed: int, progress: Callable[[int, int], None] | None
) -> tuple[dict, _ThresholdStats, dict[str, int]]:
    coco = ground_truth_to_coco({"description": _DESCRIPTION, "version": GENERATOR_VERSION, "seed": seed}, [], [],
                                CLASSES)
    stats = _ThresholdStats()
    counts = {c: 0 for c in CLASSES}
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        rgb, instances = render_image(rng, _draw_kind(rng))
        name = f"bottle_{i:03d}.png"
        _write_png(image_dir / name, rgb)
        image_id = i + 1
        coco["images"].append(image_to_coco(image_id, name, SIZE, SIZE))
        union = np.zeros((SIZE, SIZE), dtype=bool)
        for cls, mask in instances:
            ann_id = len(coco["annotations"]) + 1
            coco["annotations"].append(ground_truth_annotation(ann_id, image_id, CLASSES.index(cls) + 1, mask))
            counts[cls] += 1
            union |= mask
        stats.add(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), union)
        if progress is not None:
            progress(i + 1, n)
    return coco, stats, counts
