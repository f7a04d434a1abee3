"""The weight-free segmenter: a defect is a local deviation from the part around it.

No model file, CPU only, milliseconds per click. It is the fallback when no SAM weights are
present (``is_fallback = True``; the UI and the CLI say so).

How a box is segmented (on a crop around the prompt, so large images stay fast):

1. polarity: the defect is darker or brighter than the part around it; the box's median grey
   level against the median of a ring just outside the box decides (a positive click's own
   grey level decides when there is one);
2. a sweep of grey-level thresholds inside the box (quantiles of the box's own levels), each
   mask cleaned (holes filled; the component holding the positive clicks, else the largest);
3. a box drawn around a defect is tight, so only masks whose own bounding box nearly fills it
   are kept (box IoU >= 0.95, relaxed when none does), and clicks must agree (positives in,
   negatives out);
4. among those, the mask that best separates inside from outside wins: mean gradient along its
   boundary (the defect's edge) times the square root of Otsu's between-class variance;
5. the runner-up that differs from the winner in area (a looser or tighter reading) is the
   second candidate.

Measured on the real defects of ``../shared/realdata`` (see ``bench.clicks``), this reaches the
box-prompt accuracy of the best per-defect grey threshold chosen with the answer known, minus a
few points; plain GrabCut from the same boxes scores far lower on these low-contrast parts.

On colour images (channels differ; the real grey photographs never take this path) the first
candidate is GrabCut from the box on the WHOLE image downscaled to ~450 px (its background model
must see every colour outside the box: a crop misses the bottle's dark opening or rim), its edge
then re-decided on a 1-px band at full resolution with the colour models frozen; the threshold
sweep is the second candidate.

Clicks without a box (the first click) on colour images: the same downscaled whole-image GrabCut
from centred windows of growing size; the smallest window whose result does not run into its edge
wins. On grey images: square windows of several sizes around it, each swept
the same way with the extra rule that the mask must not run into the window's edge (a closed
object); the closed masks are ranked by objectness (Fisher contrast against a ring around the
mask times the mean gradient along its edge, divided by a penalty on the fraction of the image
it covers: a defect is a small part of the part; masks over 5% of the image are dropped), up to
three distinct candidates of different sizes. A thin candidate goes before them: the black-hat
(dark) or top-hat (bright) response in a window around the click, Otsu-thresholded, the component
through the click, offered only when it is long and thin (a hair crack or scratch, which the
threshold windows miss or swallow into the texture). Less sure thin readings (a wider one through
the click, or one that passes within a few pixels of it: a hairline is hard to hit) are ranked
with the windows' masks instead.

Later clicks (a previous mask is given): GrabCut in mask mode on a small crop around the
previous mask and the clicks (downscaled to ~112 px so a click stays in tens of ms), initialised
from the previous mask, every click a hard seed whose disc is half its distance to the previous
mask's boundary (the user clicks in the middle of an error, so that disc is all error). The crop
grows (three sizes, up to the whole image) while the result runs into its sides: an object larger
than the crop would otherwise come back as the filled crop. When the result departs far from the previous mask (IoU < 0.5: the colour models flipped), only its
changes near the new click are kept. On grey images the box path's threshold reading is tried
too: in windows growing around the previous mask and the positive clicks, the threshold mask
that obeys every click (positives in, negatives out) and closes inside the window, changing the
previous mask least, competes with GrabCut's result (the better object by the first click's
objectness goes first); when no threshold obeys every click (most later clicks on textured parts)
GrabCut's result stands. A later click is then monotone: a positive click only adds
to the previous mask and a negative one only removes from it (what the user did not click on stays
as it was). Every candidate is finally made to obey every click. Two readings follow that:
a negative click in a lobe that a narrow neck joins to the positive clicks (a first mask leaked
into the part's edge or the backdrop) removes the whole lobe, not only what is near the click;
on grey images a positive click on a thin mask (a crack or scratch covered in part) offers the
thin structure through the click joined to the mask, ranked against the rest by objectness; and
a grey-image click within a couple of pixels of the previous mask's edge (the edge is off there)
offers the change kept to a small disc around the click, ranked the same way.

On colour images the first click's mask is re-cut by the box path from its own bounding box: the
windows locate the object, the tight box segments it.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from annotate.segmenters.base import Prediction, Prompt, Segmenter
from data.geometry import mask_to_box

# Window sides tried around a lone click, smallest first (pixels).
_CLICK_WINDOWS = (24, 48, 96, 192, 384, 768)
# The sweep runs on crops no larger than this (pixels, longer side); the chosen threshold is
# then applied at full resolution.
_SWEEP_SIDE = 160
_N_THRESHOLDS = 28
_BOX_FIT = 0.95
# Mean channel difference above which an image counts as colour (grey photos score 0).
_COLOUR_SPREAD = 4.0
# Refinement (clicks after the first): GrabCut crop margin, longest side, iterations, seed disc size.
# Crops tried in turn (margin as a fraction of the prompt's size, at least this many pixels) until
# the result stops running into the crop's sides.
_REFINE_CROPS = ((0.3, 8), (1.0, 24), (2.5, 64))
_REFINE_SIDE = 112
_REFINE_ITERS = 3
_SEED_FRAC = 0.5
_EDIT_RADIUS = 2.5
_TRUST_IOU = 0.5
# Threshold refinement on grey images: window margins around the previous mask (fraction of its size).
_REFINE_GROW = (0.15, 0.4, 1.0)
# First click: objectness divided by (1 + this * the mask's fraction of the image).
_AREA_PENALTY = 8.0
# First click: masks covering more than this fraction of the image are not proposed at all.
_MAX_CLICK_FRAC = 0.05
# First click, thin candidate: window half-side, morphology kernel, largest mean width (px).
_THIN_WINDOW = 64
_THIN_KERNEL = 9
_THIN_WIDTH = 4.0
# Thin readings that are ranked by objectness instead of going first (and later clicks' joins) may
# be this wide (px); a thin structure this close (px) to the first click, not through it, is one.
_THIN_WIDTH_RANKED = 6.0
_THIN_REACH = 12
# A later positive click on a thin mask: the thin reading through it joins the mask within this (px).
_THIN_JOIN = 3
# A negative click: necks up to this half-width (px) are cut.
_NECK_MAX = 12
# Grey images, a later click this close (px) to the previous mask's edge: the change kept to a disc of
# radius max(_EDGE_RADIUS_MIN, _EDGE_RADIUS * distance) around it is a candidate.
_EDGE_CLICK = 2.5
_EDGE_RADIUS = 3.0
_EDGE_RADIUS_MIN = 4
# A positive click at most this far outside the mask's edge may be on a rim the mask left out;
# the ring's pixels like the clicked one (grey distance within this share of the mask's contrast
# with its surround, at least _RIM_MIN_TOL grey levels) join, unless they add more than
# _RIM_MAX_ADD of the mask.
_RIM_CLICK = 1.5
_RIM_TOL = 0.3
_RIM_MIN_TOL = 4.0
_RIM_MAX_ADD = 0.25
# Box GrabCut on colour images: the whole image downscaled to this longer side, these iterations,
# then a band this wide (full-resolution pixels) along the edge re-decided at full size.
_GC_SIDE = 450
_GC_ITERS = 3
_SNAP_BAND = 1
# First click on colour images: GrabCut from centred windows of these sides (full-size pixels),
# on the image downscaled to _CLICK_GC_SIDE; a result covering more than _OPEN_EDGE of the
# window's edge runs into it (not a closed object: try the next size).
_COLOUR_WINDOWS = (48, 96, 192, 320)
_CLICK_GC_SIDE = 300
_CLICK_GC_ITERS = 2
_OPEN_EDGE = 0.05


@dataclass(frozen=True)
class _Image:
    gray: np.ndarray  # float32 (H, W), lightly smoothed
    bgr: np.ndarray | None  # uint8 (H, W, 3) when the image has colour, else None


def _colour(image: np.ndarray) -> np.ndarray | None:
    """The BGR image when its channels differ (GrabCut's colour models then help), else None."""
    if image.ndim != 3 or image.shape[2] < 3:
        return None
    small = image[::4, ::4, :3].astype(np.int16)
    spread = np.abs(small[..., 0] - small[..., 1]).mean() + np.abs(small[..., 1] - small[..., 2]).mean()
    return np.ascontiguousarray(image[..., 2::-1]) if spread > _COLOUR_SPREAD else None


def _to_gray(image: np.ndarray) -> np.ndarray:
    g = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    # Light smoothing: sensor noise and JPEG blocks are not defects.
    return cv2.GaussianBlur(g.astype(np.float32), (0, 0), 1.0)


def _clip_box(box: np.ndarray, h: int, w: int) -> tuple[int, int, int, int]:
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    x0 = int(np.clip(np.floor(x0), 0, w - 1))
    y0 = int(np.clip(np.floor(y0), 0, h - 1))
    x1 = int(np.clip(np.ceil(x1), x0 + 1, w))
    y1 = int(np.clip(np.ceil(y1), y0 + 1, h))
    return x0, y0, x1, y1


def _fill_all_holes(m: np.ndarray) -> np.ndarray:
    """Fill every hole of ``m`` (background not connected to the crop's border)."""
    h, w = m.shape
    pad = np.zeros((h + 2, w + 2), np.uint8)
    pad[1:-1, 1:-1] = m
    flood = pad.copy()
    ffmask = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(flood, ffmask, (0, 0), 1)
    holes = flood[1:-1, 1:-1] == 0
    return m | holes


def _pick_components(m: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """The components holding positive clicks, else the largest one."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(m.astype(np.uint8), connectivity=8)
    if n <= 2:
        return m
    if len(pos):
        ids = {int(labels[y, x]) for x, y in pos} - {0}
        if ids:
            return np.isin(labels, list(ids))
        return np.zeros_like(m)
    return labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))


@dataclass(frozen=True)
class _Cand:
    polarity: int
    threshold: float
    score: float
    frac: float


def _int_points(pts: np.ndarray, h: int, w: int) -> np.ndarray:
    if len(pts) == 0:
        return np.zeros((0, 2), int)
    p = np.round(pts).astype(int)
    p[:, 0] = np.clip(p[:, 0], 0, w - 1)
    p[:, 1] = np.clip(p[:, 1], 0, h - 1)
    return p


def _threshold_mask(
    crop: np.ndarray, inner: np.ndarray, polarity: int, t: float, pos: np.ndarray
) -> np.ndarray:
    m = ((polarity * crop) > t) & inner
    return _pick_components(_fill_all_holes(m), pos)


def _sweep(
    crop: np.ndarray,
    inner: np.ndarray,
    polarity: int,
    pos: np.ndarray,
    neg: np.ndarray,
    box_fit: float | None,
    closed: bool,
) -> list[tuple[_Cand, float, bool]]:
    """Score every threshold: ``(candidate, box fit, obeys clicks and closure)``."""
    h, w = crop.shape
    gx = cv2.Sobel(crop, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(crop, cv2.CV_32F, 0, 1)
    grad = np.sqrt(gx * gx + gy * gy)
    ix0, iy0, ix1, iy1 = (int(v) for v in mask_to_box(inner))
    # The inner box's own edge is not a defect edge: leave it out of the boundary score.
    interior = np.zeros_like(inner)
    interior[iy0 + 1 : iy1 - 1, ix0 + 1 : ix1 - 1] = True
    vals = polarity * crop[inner]
    n_in = float(inner.sum())
    qs = np.unique(np.quantile(vals, np.linspace(0.02, 0.98, _N_THRESHOLDS)))
    kernel = np.ones((3, 3), np.uint8)
    out = []
    for t in qs:
        m = _threshold_mask(crop, inner, polarity, float(t), pos)
        area = float(m.sum())
        if area == 0 or area == n_in:
            continue
        frac = area / n_in
        mys, mxs = np.nonzero(m)
        bx = (mxs.min(), mys.min(), mxs.max() + 1, mys.max() + 1)
        inter = max(0, min(bx[2], ix1) - max(bx[0], ix0)) * max(0, min(bx[3], iy1) - max(bx[1], iy0))
        union = (bx[2] - bx[0]) * (bx[3] - bx[1]) + (ix1 - ix0) * (iy1 - iy0) - inter
        fit = inter / union if union else 0.0
        edge_px = m & ~cv2.erode(m.astype(np.uint8), kernel).astype(bool) & interior
        edge = float(grad[edge_px].mean()) if edge_px.any() else 0.0
        v_in = polarity * crop[m]
        v_out = polarity * crop[inner & ~m]
        otsu = frac * (1 - frac) * float(v_in.mean() - v_out.mean()) ** 2
        ok = all(m[y, x] for x, y in pos) and not any(m[y, x] for x, y in neg)
        if closed:
            ok = ok and not _touches_window_edge(m, inner, h, w)
        score = edge * float(np.sqrt(max(otsu, 0.0)))
        out.append((_Cand(polarity, float(t), score, frac), fit, ok))
    return out


def _touches_window_edge(m: np.ndarray, inner: np.ndarray, h: int, w: int) -> bool:
    """Whether ``m`` reaches the edge of the window ``inner`` where that edge is not the image's."""
    ys, xs = np.nonzero(inner)
    y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
    return bool(
        (x0 > 0 and m[y0 : y1 + 1, x0].any())
        or (x1 < w - 1 and m[y0 : y1 + 1, x1].any())
        or (y0 > 0 and m[y0, x0 : x1 + 1].any())
        or (y1 < h - 1 and m[y1, x0 : x1 + 1].any())
    )


def _polarity(crop: np.ndarray, inner: np.ndarray, pos: np.ndarray) -> int:
    """+1 when the defect is brighter than its surround, -1 when darker."""
    ring = crop[~inner]
    ref = float(np.median(ring)) if ring.size >= 20 else None
    if len(pos) and ref is not None:
        v = float(np.median([crop[y, x] for x, y in pos]))
        if abs(v - ref) > 2.0:
            return 1 if v > ref else -1
    if ref is None:
        # No surround (the box is the whole image): the minority side of the box's own levels.
        vals = crop[inner]
        med = float(np.median(vals))
        return 1 if (np.percentile(vals, 95) - med) >= (med - np.percentile(vals, 5)) else -1
    return 1 if float(np.median(crop[inner])) >= ref else -1


def _choose(cands: list[tuple[_Cand, float, bool]], box_fit: float | None) -> list[_Cand]:
    """Best candidate first, then a runner-up of clearly different area."""
    if not cands:
        return []
    pool = [c for c in cands if c[2]] or cands
    if box_fit is not None:
        fitting = [c for c in pool if c[1] >= box_fit]
        if not fitting:
            best_fit = max(c[1] for c in pool)
            fitting = [c for c in pool if c[1] >= best_fit - 0.05]
        pool = fitting
    ranked = sorted((c[0] for c in pool), key=lambda c: -c.score)
    best = ranked[0]
    alt = next((c for c in ranked[1:] if abs(c.frac - best.frac) > 0.1), None)
    return [best] + ([alt] if alt is not None else [])


def _downscale(crop: np.ndarray, inner: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    s = _SWEEP_SIDE / max(crop.shape)
    if s >= 1:
        return crop, inner, 1.0
    size = (max(2, round(crop.shape[1] * s)), max(2, round(crop.shape[0] * s)))
    small = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
    small_inner = cv2.resize(inner.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST).astype(bool)
    if not small_inner.any():
        return crop, inner, 1.0
    return small, small_inner, size[0] / crop.shape[1]


def _segment_region(
    gray: np.ndarray,
    box: tuple[int, int, int, int],
    pos: np.ndarray,
    neg: np.ndarray,
    box_fit: float | None,
    closed: bool,
) -> tuple[list[np.ndarray], list[float], bool]:
    """Masks (full size), scores, and whether the best obeys every constraint."""
    h, w = gray.shape
    x0, y0, x1, y1 = box
    m = max(4, int(0.3 * max(x1 - x0, y1 - y0)))
    cx0, cy0, cx1, cy1 = max(0, x0 - m), max(0, y0 - m), min(w, x1 + m), min(h, y1 + m)
    crop = gray[cy0:cy1, cx0:cx1]
    inner = np.zeros(crop.shape, bool)
    inner[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0] = True
    off = np.array([cx0, cy0], np.float32)
    ch, cw = crop.shape
    pos_c = _int_points(pos - off, ch, cw)
    _int_points(neg - off, ch, cw)
    polarity = _polarity(crop, inner, pos_c)
    small, small_inner, s = _downscale(crop, inner)
    sh, sw = small.shape
    cands = _sweep(small, small_inner, polarity, _int_points((pos - off) * s, sh, sw),
                   _int_points((neg - off) * s, sh, sw), box_fit, closed)
    chosen = _choose(cands, box_fit)
    if not chosen:
        return [np.zeros((h, w), bool)], [0.0], False
    ok = any(c[2] for c in cands if c[0] == chosen[0])
    masks = []
    for c in chosen:
        mk = _threshold_mask(crop, inner, c.polarity, c.threshold, pos_c)
        full = np.zeros((h, w), bool)
        full[cy0:cy1, cx0:cx1] = mk
        masks.append(full)
    top = max(c.score for c in chosen) or 1.0
    return masks, [float(c.score / top) for c in chosen], ok


class ClassicalSegmenter(Segmenter):
    """Deviation-from-surround segmentation; see the module docstring."""

    name = "classical"
    device = "cpu"
    is_fallback = True

    def __init__(self, max_images: int = 32) -> None:
        self._lock = threading.Lock()
        self._images: dict[str, _Image] = {}
        self._order: list[str] = []
        self._max = max_images

    def set_image(self, image: np.ndarray, key: str) -> None:
        with self._lock:
            if key in self._images:
                self._touch(key)
                return
        img = _Image(_to_gray(np.asarray(image)), _colour(np.asarray(image)))
        with self._lock:
            self._images[key] = img
            self._touch(key)
            while len(self._order) > self._max:
                self._images.pop(self._order.pop(0), None)

    def is_ready(self, key: str) -> bool:
        with self._lock:
            return key in self._images

    def predict(self, key: str, prompt: Prompt, multimask: bool | None = None) -> Prediction:
        t0 = time.perf_counter()
        with self._lock:
            img = self._images.get(key)
            if img is None:
                raise KeyError(f"image {key!r} was never set on {self.name}")
            self._touch(key)
        # The grey image is immutable: the work runs outside the lock, so sessions do not queue.
        # GrabCut draws from OpenCV's (thread-local) RNG: seed it so a prompt always gives the same mask.
        cv2.setRNGSeed(0)
        masks, scores = segment(img.gray, prompt, img.bgr)
        if multimask is False:
            masks, scores = masks[:1], scores[:1]
        return Prediction(
            masks=np.stack(masks).astype(bool),
            scores=np.asarray(scores, dtype=np.float32),
            low_res=None,
            ms=(time.perf_counter() - t0) * 1000,
        )

    def _touch(self, key: str) -> None:
        if key in self._order:
            self._order.remove(key)
        self._order.append(key)


# ------------------------------------------------------------------ prompts -> masks
def segment(
    gray: np.ndarray, prompt: Prompt, bgr: np.ndarray | None = None
) -> tuple[list[np.ndarray], list[float]]:
    """Candidate masks (full size, best first) and scores for ``prompt`` on a grey image.

    ``bgr``: the colour image when it has colour; a box is then segmented by GrabCut on a crop
    (colour models separate a stain from glass that shares its grey level), with the grey
    threshold sweep as the second candidate.
    """
    h, w = gray.shape
    pts = prompt.points if len(prompt.points) else np.zeros((0, 2), np.float32)
    pos = pts[prompt.labels == 1] if len(pts) else pts
    neg = pts[prompt.labels == 0] if len(pts) else pts
    prev = prompt.prev_mask
    has_prev = prev is not None and prev.shape == (h, w) and bool(prev.any())
    if prompt.box is not None:
        box = _clip_box(prompt.box, h, w)
        masks, scores, _ = _segment_region(gray, box, pos, neg, _BOX_FIT, closed=False)
        if bgr is not None:
            gc = _grabcut_box(bgr, box, pos, neg)
            if gc is not None:
                masks, scores = [gc] + masks[:1], [1.0] + scores[:1]
        return _honour_clicks(masks, scores, pos, neg, prompt)
    if len(pos) == 0:
        base = prev if has_prev else np.zeros((h, w), bool)
        return _honour_clicks([base], [0.0], pos, neg, prompt)
    if has_prev:
        last = int(prompt.labels[-1])
        masks, scores = _refine(gray, bgr, prev, pos, neg, pts[-1])
        if bgr is None:
            masks, scores = _threshold_refine(gray, prev, pos, neg, masks, scores)
        masks = _monotone(masks, prev, last)
        masks, scores = _honour_clicks(masks, scores, pos, neg, prompt)
        if last == 0:
            lobe = _neck_lobe(prev, pos, pts[-1])
            if lobe is not None:
                masks = [_pick_components(m & ~lobe, _int_points(pos, h, w)) for m in masks]
        elif bgr is None:
            joined = _thin_join(gray, prev, pts[-1])
            if joined is not None:
                joined = _honour_clicks([joined], [1.0], pos, neg, prompt)[0][0]
                # Two readings of the click: the one that looks more like an object goes first.
                if masks[0].any() and _objectness(gray, masks[0]) > _objectness(gray, joined):
                    masks, scores = masks[:1] + [joined], [1.0, 0.9]
                else:
                    masks, scores = [joined] + masks[:1], [1.0, 0.9]
        if bgr is None:
            masks, scores = _edge_click(gray, prev, pos, pts[-1], masks, scores)
        if last == 0:
            masks = _in_clicked_piece(prev, masks, pts[-1])
        else:
            rim = _rim_click(gray, prev, pts[-1])
            if rim is not None:
                rim = _honour_clicks([rim], [1.0], pos, neg, prompt)[0][0]
                masks, scores = [rim] + masks[:1], [1.0, 0.9]
        return masks, scores
    elif bgr is not None:
        masks, scores = _colour_first_click(bgr, pos, neg)
        if not masks:
            masks, scores = _segment_points(gray, pos, neg)
    else:
        masks, scores = _segment_points(gray, pos, neg)
    return _honour_clicks(masks, scores, pos, neg, prompt)


def _grabcut_box(
    bgr: np.ndarray, box: tuple[int, int, int, int], pos: np.ndarray, neg: np.ndarray, side: int = 0
) -> np.ndarray | None:
    """GrabCut from the box on the whole image downscaled, then its edge snapped at full size.

    The whole image matters: its background model must hold every colour outside the box
    (a bottle's dark opening, its rim, the backdrop), which a crop around the box misses. The
    downscale keeps it in the low hundreds of ms; the snap re-decides only a thin band along the
    upsampled edge, at full resolution, with the colour models frozen.
    """
    low = _grabcut_low(bgr, box, pos, neg, side or _GC_SIDE, _GC_ITERS)
    if low is None:
        return None
    up, bgd, fgd = low
    mk = _snap(bgr, box, up, bgd, fgd, pos, neg)
    # Holes filled, but every component kept: a contamination is often a cluster of specks.
    return _fill_all_holes(mk) if mk.any() else None


def _grabcut_low(
    bgr: np.ndarray, box: tuple[int, int, int, int], pos: np.ndarray, neg: np.ndarray, side: int, iters: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """GrabCut with the box on the whole image downscaled: (mask upsampled, bgd model, fgd model)."""
    h, w = bgr.shape[:2]
    s = min(1.0, side / max(h, w))
    size = (max(2, round(w * s)), max(2, round(h * s)))
    small = np.ascontiguousarray(cv2.resize(bgr, size, interpolation=cv2.INTER_AREA))
    x0, y0, x1, y1 = box
    sx0, sy0 = int(np.floor(x0 * s)), int(np.floor(y0 * s))
    sx1, sy1 = min(size[0], max(sx0 + 1, int(np.ceil(x1 * s)))), min(size[1], max(sy0 + 1, int(np.ceil(y1 * s))))
    gm = np.zeros((size[1], size[0]), np.uint8)
    gm[sy0:sy1, sx0:sx1] = cv2.GC_PR_FGD
    if gm.all():
        return None  # the box is the whole image: no background sample
    _draw_seeds(gm, pos * s, neg * s, 1)
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(small, gm, None, bgd, fgd, iters, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    fg = ((gm == cv2.GC_FGD) | (gm == cv2.GC_PR_FGD)).astype(np.float32)
    if not fg.any():
        return None
    up = cv2.resize(fg, (w, h), interpolation=cv2.INTER_LINEAR) > 0.5
    up[:y0] = False
    up[y1:] = False
    up[:, :x0] = False
    up[:, x1:] = False
    return up, bgd, fgd


def _colour_first_click(bgr: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    """First click on a colour image: GrabCut from centred boxes of growing size.

    The smallest box whose result is a closed object (it does not run into the box's edge)
    wins: a defect is small and compact, and a box much larger than it lets GrabCut wander.
    """
    h, w = bgr.shape[:2]
    px0, py0 = pos.min(axis=0)
    px1, py1 = pos.max(axis=0) + 1
    found = []
    for side in _COLOUR_WINDOWS:
        half = side / 2
        box = _clip_box(np.array([px0 - half, py0 - half, px1 + half, py1 + half]), h, w)
        low = _grabcut_low(bgr, box, pos, neg, _CLICK_GC_SIDE, _CLICK_GC_ITERS)
        if low is None:
            continue
        up = low[0]
        x0, y0, x1, y1 = box
        edge = np.concatenate([up[y0, x0:x1], up[y1 - 1, x0:x1], up[y0:y1, x0], up[y0:y1, x1 - 1]])
        found.append((box, low, float(edge.mean())))
        if edge.mean() < _OPEN_EDGE:
            break
    if not found:
        return [], []
    closed = [f for f in found if f[2] < _OPEN_EDGE]
    box, (up, bgd, fgd), _ = closed[0] if closed else min(found, key=lambda f: f[2])
    mk = _fill_all_holes(_snap(bgr, box, up, bgd, fgd, pos, neg))
    # The window only located the object; its own bounding box is the tight box the box path is
    # good at (full-resolution GrabCut from a box that fits), so that reading goes first.
    tight = _grabcut_box(bgr, _mask_box(mk, 1, h, w), pos, neg) if mk.any() else None
    if tight is not None and all(tight[y, x] for x, y in _int_points(pos, h, w)):
        return [tight, mk], [1.0, 0.9]
    return [mk, up], [1.0, 0.5]


def _mask_box(m: np.ndarray, pad: int, h: int, w: int) -> tuple[int, int, int, int]:
    """The bounding box of ``m`` grown by ``pad`` pixels, clipped to the image."""
    return _clip_box(mask_to_box(m) + np.array([-pad, -pad, pad, pad]), h, w)


def _snap(
    bgr: np.ndarray, box: tuple[int, int, int, int], up: np.ndarray, bgd: np.ndarray, fgd: np.ndarray,
    pos: np.ndarray, neg: np.ndarray,
) -> np.ndarray:
    """Re-decide a thin band along ``up``'s edge at full resolution with frozen colour models."""
    h, w = up.shape
    x0, y0, x1, y1 = box
    b = _SNAP_BAND
    cx0, cy0, cx1, cy1 = max(0, x0 - b - 2), max(0, y0 - b - 2), min(w, x1 + b + 2), min(h, y1 + b + 2)
    u = up[cy0:cy1, cx0:cx1].astype(np.uint8)
    k = np.ones((2 * b + 1, 2 * b + 1), np.uint8)
    gm = np.where(u > 0, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    gm[cv2.erode(u, k) > 0] = cv2.GC_FGD
    gm[cv2.dilate(u, k) == 0] = cv2.GC_BGD
    inside = np.zeros_like(u)
    inside[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0] = 1
    gm[inside == 0] = cv2.GC_BGD
    off = np.array([cx0, cy0], np.float32)
    _draw_seeds(gm, pos - off, neg - off, 2)
    if not (gm & 1).any():
        return up
    try:
        cv2.grabCut(np.ascontiguousarray(bgr[cy0:cy1, cx0:cx1]), gm, None, bgd.copy(), fgd.copy(), 1,
                    cv2.GC_EVAL_FREEZE_MODEL)
    except cv2.error:
        return up
    out = np.zeros((h, w), bool)
    out[cy0:cy1, cx0:cx1] = (gm == cv2.GC_FGD) | (gm == cv2.GC_PR_FGD)
    return out


def _draw_seeds(gm: np.ndarray, pos: np.ndarray, neg: np.ndarray, r: int) -> None:
    """Clicks as hard GrabCut seeds (discs of radius ``r``) on the label map ``gm``."""
    ch, cw = gm.shape
    for pts, lab in ((pos, cv2.GC_FGD), (neg, cv2.GC_BGD)):
        for x, y in _int_points(np.asarray(pts, np.float32).reshape(-1, 2), ch, cw):
            cv2.circle(gm, (int(x), int(y)), r, int(lab), -1)


def _segment_points(gray: np.ndarray, pos: np.ndarray, neg: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
    """Positive clicks without a box: closed objects in windows of several sizes, ranked by objectness."""
    h, w = gray.shape
    px0, py0 = pos.min(axis=0)
    px1, py1 = pos.max(axis=0) + 1
    found: list[tuple[float, np.ndarray]] = []
    fallback = None
    for side in _CLICK_WINDOWS:
        half = side / 2
        box = _clip_box(np.array([px0 - half, py0 - half, px1 + half, py1 + half]), h, w)
        masks, _, ok = _segment_region(gray, box, pos, neg, None, closed=True)
        # A defect is a small part of the image: a region filling much of it is the part itself,
        # and a huge first mask costs many negative clicks to undo.
        frac = masks[0].sum() / float(h * w)
        if frac > _MAX_CLICK_FRAC:
            continue
        if fallback is None and masks[0].any():
            fallback = masks[0]
        if ok and masks[0].any():
            found.append((_objectness(gray, masks[0]) / (1.0 + _AREA_PENALTY * frac), masks[0]))
        if box == (0, 0, w, h):
            break
    thin = _thin_candidate(gray, pos)
    if thin is None:
        # Less sure thin readings are ranked with the windows' blobs by objectness rather than put
        # first: a wider one through the click (a scratch, or a narrow blob), else a hairline that
        # passes near the click, not through it (a hairline is hard to hit).
        other = _thin_candidate(gray, pos, width=_THIN_WIDTH_RANKED)
        if other is None:
            other = _thin_candidate(gray, pos, reach=_THIN_REACH)
        if other is not None:
            found.append((_objectness(gray, other), other))
    if not found and thin is None:
        m = fallback if fallback is not None else np.zeros((h, w), bool)
        return [m], [0.0]
    found.sort(key=lambda f: -f[0])
    out: list[tuple[float, np.ndarray]] = []
    if thin is not None:
        # A long thin structure through the click is the more specific reading: the windows'
        # blobs around a crack are the texture beside it.
        out.append((max([f[0] for f in found], default=1.0), thin))
    for sc, m in found:
        if all(_iou(m, o) < 0.8 for _, o in out):
            out.append((sc, m))
        if len(out) == 3:
            break
    top = out[0][0] or 1.0
    return [m for _, m in out], [sc / top for sc, _ in out]


def _thin_candidate(
    gray: np.ndarray, pos: np.ndarray, reach: int = 2, width: float = _THIN_WIDTH
) -> np.ndarray | None:
    """A hair-thin crack or scratch through the click: black-hat (or top-hat) response, Otsu.

    Only offered when the component through the click (within ``reach`` px of it) is long and
    thin (at most ``width`` px wide on average); blobs are the windows' job.
    """
    h, w = gray.shape
    x, y = _int_points(pos[:1], h, w)[0]
    box = _clip_box(np.array([x - _THIN_WINDOW, y - _THIN_WINDOW, x + _THIN_WINDOW, y + _THIN_WINDOW]), h, w)
    x0, y0, x1, y1 = box
    crop = gray[y0:y1, x0:x1]
    polarity = 1 if crop[y - y0, x - x0] >= float(np.median(crop)) else -1
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (_THIN_KERNEL, _THIN_KERNEL))
    op = cv2.MORPH_TOPHAT if polarity > 0 else cv2.MORPH_BLACKHAT
    resp = cv2.morphologyEx(crop, op, k)
    r8 = np.clip(resp * (255.0 / max(float(resp.max()), 1e-3)), 0, 255).astype(np.uint8)
    _, bw = cv2.threshold(r8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    m = _near_one_click(bw.astype(bool), x - x0, y - y0, reach)
    if m is None or not _is_thin(m, width):
        return None
    full = np.zeros((h, w), bool)
    full[y0:y1, x0:x1] = m
    return full


def _is_thin(m: np.ndarray, width: float = _THIN_WIDTH) -> bool:
    """Whether ``m`` is long and thin: at least 20 px long, at most ``width`` px wide on average."""
    ys, xs = np.nonzero(m)
    if len(ys) == 0:
        return False
    length = float(np.hypot(xs.max() - xs.min() + 1, ys.max() - ys.min() + 1))
    return length >= 20 and len(ys) / length <= width


def _thin_join(gray: np.ndarray, prev: np.ndarray, click: np.ndarray) -> np.ndarray | None:
    """A positive click on a thin mask: the mask joined with the thin structure through the click.

    Along a crack or scratch the next click lands on the part the mask missed; GrabCut and the
    threshold windows read it as a blob. The thin reading through the click (the first click's thin
    candidate) extends the mask when it touches it; None otherwise (or when the mask is not thin).
    """
    if not _is_thin(prev):
        return None
    thin = _thin_candidate(gray, np.asarray(click, np.float32).reshape(1, 2), width=_THIN_WIDTH_RANKED)
    k = np.ones((2 * _THIN_JOIN + 1, 2 * _THIN_JOIN + 1), np.uint8)
    if thin is None or not (thin & cv2.dilate(prev.astype(np.uint8), k).astype(bool)).any():
        return None
    return prev | thin


def _edge_click(
    gray: np.ndarray, prev: np.ndarray, pos: np.ndarray, click: np.ndarray, masks: list[np.ndarray],
    scores: list[float],
) -> tuple[list[np.ndarray], list[float]]:
    """A click a pixel or two from the previous mask's edge: the edge is off there, not everywhere.

    Such a click sits in a thin error band along the boundary, yet a refinement may move far
    more of the boundary than the band. The change kept to a disc around the click (radius a few
    times the click's distance to the edge) competes with the whole change by objectness.
    """
    h, w = prev.shape
    x, y = _int_points(np.asarray(click, np.float32).reshape(1, 2), h, w)[0]
    d = _boundary_distance(prev, x, y)
    if d > _EDGE_CLICK or not masks[0].any():
        return masks, scores
    local = _keep_near(prev, masks[0], x, y, int(max(_EDGE_RADIUS_MIN, _EDGE_RADIUS * d)))
    if len(pos):
        local = _pick_components(local, _int_points(pos, h, w))
    if not local.any():
        return masks, scores
    if _objectness(gray, local) > _objectness(gray, masks[0]):
        return [local] + masks[:1], [1.0, 0.9]
    return masks[:1] + [local], [1.0, 0.9]


def _neck_lobe(prev: np.ndarray, pos: np.ndarray, click: np.ndarray) -> np.ndarray | None:
    """The lobe of ``prev`` a negative click sits in, when a narrow neck joins it to the positives.

    A first mask often leaks through a narrow gap into the part's edge or the backdrop; the user's
    negative click lands in the leak, and removing only what is near the click leaves the rest of
    it. Opening ``prev`` with growing discs (up to the click's own depth inside it) finds the
    smallest neck that separates the click from every positive click; the lobe beyond it goes,
    however large (the clicks say which side is the object). None when no neck does (the click
    sits in the object itself).
    """
    h, w = prev.shape
    if len(pos) == 0:
        return None
    x, y = _int_points(np.asarray(click, np.float32).reshape(1, 2), h, w)[0]
    if not prev[y, x]:
        return None
    p8 = prev.astype(np.uint8)
    ys, xs = np.nonzero(prev)
    pts = _int_points(pos, h, w)  # a positive click may lie outside the mask (an edited one)
    pad = _NECK_MAX + 2
    y0, y1 = max(0, min(ys.min(), pts[:, 1].min()) - pad), min(h, max(ys.max(), pts[:, 1].max()) + pad + 1)
    x0, x1 = max(0, min(xs.min(), pts[:, 0].min()) - pad), min(w, max(xs.max(), pts[:, 0].max()) + pad + 1)
    pc = p8[y0:y1, x0:x1]
    depth = cv2.distanceTransform(np.pad(pc, 1), cv2.DIST_L2, 3)[1:-1, 1:-1][y - y0, x - x0]
    pts = pts - [x0, y0]
    for r in range(1, min(_NECK_MAX, int(depth)) + 1):
        disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        _, labels = cv2.connectedComponents(cv2.morphologyEx(pc, cv2.MORPH_OPEN, disc), connectivity=8)
        mine = labels[y - y0, x - x0]
        theirs = {int(labels[py, px]) for px, py in pts}
        if mine == 0 or not theirs - {0}:
            return None
        if mine in theirs:
            continue
        grow = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 3, 2 * r + 3))
        lobe = np.zeros((h, w), bool)
        lobe[y0:y1, x0:x1] = cv2.dilate((labels == mine).astype(np.uint8), grow).astype(bool) & pc.astype(bool)
        return lobe
    return None


def _rim_click(gray: np.ndarray, prev: np.ndarray, click: np.ndarray) -> np.ndarray | None:
    """A positive click on the pixel just outside the mask: the mask stops short of a rim there.

    A chip's fracture edge or a stain's halo is a one-pixel border the first mask leaves out, and
    no refinement adds it (it looks like the part around it), so each such click used to add one
    pixel. The click shows what the border looks like: the pixels of the one-pixel ring around
    ``prev`` that look like the clicked one (within ``_RIM_TOL`` of the mask's contrast), connected
    to it along the ring, join the mask. Not when that ring would add more than ``_RIM_MAX_ADD``
    of the mask (a thin scratch's side is not a rim).
    """
    h, w = prev.shape
    x, y = _int_points(np.asarray(click, np.float32).reshape(1, 2), h, w)[0]
    if prev[y, x] or _boundary_distance(prev, x, y) > _RIM_CLICK:
        return None
    # Everything below happens within 5 px of the mask: work on its box (a click stays fast on a
    # 12 MP photo), padded so the widest dilation is not cut off.
    x0, y0, x1, y1 = _mask_box(prev, 6, h, w)
    pc = prev[y0:y1, x0:x1]
    x, y = x - x0, y - y0
    p8 = pc.astype(np.uint8)
    ring = cv2.dilate(p8, np.ones((3, 3), np.uint8)).astype(bool) & ~pc
    around = cv2.dilate(p8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (11, 11))).astype(bool) & ~cv2.dilate(
        p8, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    ).astype(bool)
    g = gray[y0:y1, x0:x1].astype(np.float32)
    inside = float(np.median(g[pc]))
    contrast = abs(inside - float(np.median(g[around]))) if around.any() else 0.0
    tol = max(_RIM_MIN_TOL, _RIM_TOL * contrast)
    if abs(float(g[y, x]) - inside) <= tol:
        return None  # the clicked pixel looks like the object itself: growth, not a rim
    like = ring & (np.abs(g - g[y, x]) <= tol)
    _, labels = cv2.connectedComponents(like.astype(np.uint8), connectivity=8)
    if labels[y, x] == 0:
        return None
    add = labels == labels[y, x]
    if add.sum() > _RIM_MAX_ADD * pc.sum():
        return None
    out = prev.copy()
    out[y0:y1, x0:x1] |= add
    return out


def _in_clicked_piece(prev: np.ndarray, masks: list[np.ndarray], click: np.ndarray) -> list[np.ndarray]:
    """A negative click changes only the piece of ``prev`` it lands in; its other pieces stay.

    A contamination is often a blob with separate specks around it. A refinement keeps only what
    connects to the positive clicks, so a negative click on one speck's halo used to drop every
    speck the user had not clicked on.
    """
    h, w = prev.shape
    x, y = _int_points(np.asarray(click, np.float32).reshape(1, 2), h, w)[0]
    if not prev[y, x]:
        return masks
    _, labels = cv2.connectedComponents(prev.astype(np.uint8), connectivity=8)
    piece = labels == labels[y, x]
    return [(m & piece) | (prev & ~piece) for m in masks]


def _near_one_click(m: np.ndarray, x: int, y: int, r: int) -> np.ndarray | None:
    _, labels = cv2.connectedComponents(m.astype(np.uint8), connectivity=8)
    near = labels[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
    ids = np.unique(near[near > 0])
    return np.isin(labels, ids) if len(ids) else None


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    u = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / u if u else 1.0


def _objectness(gray: np.ndarray, m: np.ndarray) -> float:
    """How much ``m`` looks like an object: its edge is strong and it differs from a ring around it."""
    ys, xs = np.nonzero(m)
    area = len(ys)
    if area == 0:
        return 0.0
    r = int(np.clip(0.3 * np.sqrt(area), 2, 40))
    h, w = m.shape
    y0, y1 = max(0, ys.min() - r - 2), min(h, ys.max() + r + 3)
    x0, x1 = max(0, xs.min() - r - 2), min(w, xs.max() + r + 3)
    g = gray[y0:y1, x0:x1]
    mc = m[y0:y1, x0:x1].astype(np.uint8)
    ring = cv2.dilate(mc, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))).astype(bool) & ~mc.astype(bool)
    if not ring.any():
        return 0.0
    inside = g[mc.astype(bool)]
    out = g[ring]
    fisher = abs(float(inside.mean() - out.mean())) / (float(inside.std() + out.std()) + 1.0)
    edge = mc.astype(bool) & ~cv2.erode(mc, np.ones((3, 3), np.uint8)).astype(bool)
    gx = cv2.Sobel(g, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(g, cv2.CV_32F, 0, 1)
    grad = float(np.sqrt(gx * gx + gy * gy)[edge].mean())
    return fisher * grad


def _refine(
    gray: np.ndarray, bgr: np.ndarray | None, prev: np.ndarray, pos: np.ndarray, neg: np.ndarray,
    last_click: np.ndarray,
) -> tuple[list[np.ndarray], list[float]]:
    """Later clicks: GrabCut on a small crop, initialised from the previous mask, clicks as hard seeds.

    The crop grows while the result runs into its sides (the object is larger than the crop, so
    GrabCut calls the whole crop foreground: a rectangle, never what the user meant).
    """
    h, w = gray.shape
    ys, xs = np.nonzero(prev)
    pts = np.concatenate([pos, neg]) if len(neg) else pos
    x0, y0 = min(xs.min(), pts[:, 0].min()), min(ys.min(), pts[:, 1].min())
    x1, y1 = max(xs.max() + 1, pts[:, 0].max() + 1), max(ys.max() + 1, pts[:, 1].max() + 1)
    size = max(x1 - x0, y1 - y0)
    full = None
    for margin, least in _REFINE_CROPS:
        g = max(margin * size, least)
        crop = _clip_box(np.array([x0 - g, y0 - g, x1 + g, y1 + g]), h, w)
        got = _grabcut_crop(gray, bgr, prev, pos, neg, crop)
        if got is None:
            return [prev], [0.0]
        full, open_edge = got
        if open_edge < _OPEN_EDGE or crop == (0, 0, w, h):
            break
    # A drastic change (GrabCut's colour models flipped) is only trusted near the new click.
    if _iou(full, prev) < _TRUST_IOU:
        full = _local_edit(prev, full, last_click)
    return [full, prev], [1.0, 0.5]


def _grabcut_crop(
    gray: np.ndarray, bgr: np.ndarray | None, prev: np.ndarray, pos: np.ndarray, neg: np.ndarray,
    crop: tuple[int, int, int, int],
) -> tuple[np.ndarray, float] | None:
    """GrabCut in mask mode on ``crop`` (downscaled): the full-size mask and the share of the
    crop's inner sides (those that are not the image's border) it covers. None when GrabCut
    has nothing to work with."""
    h, w = gray.shape
    cx0, cy0, cx1, cy1 = crop
    s = min(1.0, _REFINE_SIDE / max(cx1 - cx0, cy1 - cy0))
    size = (max(2, round((cx1 - cx0) * s)), max(2, round((cy1 - cy0) * s)))
    if bgr is not None:
        img = bgr[cy0:cy1, cx0:cx1]
    else:
        gc = np.clip(gray[cy0:cy1, cx0:cx1], 0, 255).astype(np.uint8)
        img = np.dstack([gc, gc, gc])
    img = np.ascontiguousarray(cv2.resize(img, size, interpolation=cv2.INTER_AREA))
    pc = prev[cy0:cy1, cx0:cx1].astype(np.uint8)
    pm = cv2.resize(pc, size, interpolation=cv2.INTER_NEAREST)
    gm = np.where(pm > 0, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
    # Distance of each click to the previous mask's boundary: the protocol (and a user) clicks in
    # the middle of an error, so a disc that size around it is all error: a safe hard seed.
    d_in = cv2.distanceTransform(np.pad(pc, 1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    d_out = cv2.distanceTransform(np.pad(1 - pc, 1, constant_values=1), cv2.DIST_L2, 3)[1:-1, 1:-1]
    off = np.array([cx0, cy0], np.float32)
    ch, cw = pc.shape
    for pts_, lab in ((pos, cv2.GC_FGD), (neg, cv2.GC_BGD)):
        for x, y in _int_points(pts_ - off, ch, cw):
            d = max(d_in[y, x], d_out[y, x])
            r = max(1, int(_SEED_FRAC * d * s))
            cv2.circle(gm, (int(x * s), int(y * s)), r, int(lab), -1)
    if not ((gm == cv2.GC_FGD) | (gm == cv2.GC_PR_FGD)).any() or not ((gm == cv2.GC_BGD) | (gm == cv2.GC_PR_BGD)).any():
        return None
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    try:
        cv2.grabCut(img, gm, None, bgd, fgd, _REFINE_ITERS, cv2.GC_INIT_WITH_MASK)
    except cv2.error:
        return None
    mk = ((gm == cv2.GC_FGD) | (gm == cv2.GC_PR_FGD)).astype(np.uint8) * 255
    mk = cv2.resize(mk, (cx1 - cx0, cy1 - cy0), interpolation=cv2.INTER_LINEAR) > 127
    mk = _pick_components(_fill_all_holes(mk), _int_points(pos - off, ch, cw))
    sides = [mk[0] if cy0 > 0 else None, mk[-1] if cy1 < h else None,
             mk[:, 0] if cx0 > 0 else None, mk[:, -1] if cx1 < w else None]
    inner_sides = [v for v in sides if v is not None]
    open_edge = float(np.concatenate(inner_sides).mean()) if inner_sides else 0.0
    full = np.zeros((h, w), bool)
    full[cy0:cy1, cx0:cx1] = mk
    return full, open_edge


def _monotone(masks: list[np.ndarray], prev: np.ndarray, last_label: int) -> list[np.ndarray]:
    """A positive click only adds to the previous mask, a negative one only removes from it.

    The user clicks on an error: what they did not click on stays as it was. Without this, a
    refinement whose grey-level models flip re-draws far parts the user had already accepted.
    """
    return [(m | prev) if last_label == 1 else (m & prev) for m in masks]


def _threshold_refine(
    gray: np.ndarray, prev: np.ndarray, pos: np.ndarray, neg: np.ndarray,
    masks: list[np.ndarray], scores: list[float],
) -> tuple[list[np.ndarray], list[float]]:
    """Grey images: the box path's threshold sweep around the previous mask and the clicks.

    A threshold mask that obeys every click (positives in, negatives out) and closes inside the
    window is what the box path would give from a box around the object. It and the GrabCut
    refinement are two readings of the same clicks: the one with the higher objectness (the same
    score the first click ranks by) goes first. Windows grow until such a mask closes.
    """
    h, w = gray.shape
    ys, xs = np.nonzero(prev)
    pts = np.concatenate([pos, neg]) if len(neg) else pos
    x0, y0 = min(xs.min(), pos[:, 0].min()), min(ys.min(), pos[:, 1].min())
    x1, y1 = max(xs.max() + 1, pos[:, 0].max() + 1), max(ys.max() + 1, pos[:, 1].max() + 1)
    del pts
    size = max(x1 - x0, y1 - y0)
    for grow in _REFINE_GROW:
        g = max(grow * size, 6)
        box = _clip_box(np.array([x0 - g, y0 - g, x1 + g, y1 + g]), h, w)
        found = _closest_threshold_mask(gray, box, prev, pos, neg)
        if found is not None:
            # Two readings of the same clicks: the one that looks more like an object goes first.
            if masks[0].any() and _objectness(gray, masks[0]) > _objectness(gray, found):
                return masks[:1] + [found], [1.0, 0.9]
            return [found] + masks[:1], [1.0] + [0.9 * s for s in scores[:1]]
        if box == (0, 0, w, h):
            break
    return masks, scores


def _closest_threshold_mask(
    gray: np.ndarray, box: tuple[int, int, int, int], prev: np.ndarray, pos: np.ndarray, neg: np.ndarray
) -> np.ndarray | None:
    """The threshold mask in ``box`` that obeys every click, closes, and changes ``prev`` least."""
    h, w = gray.shape
    x0, y0, x1, y1 = box
    crop = gray[y0:y1, x0:x1]
    inner = np.ones(crop.shape, bool)
    off = np.array([x0, y0], np.float32)
    ch, cw = crop.shape
    pos_c = _int_points(pos - off, ch, cw)
    pv = prev[y0:y1, x0:x1]
    polarity = _refine_polarity(crop, pv, pos_c)
    small, small_inner, s = _downscale(crop, inner)
    sh, sw = small.shape
    ps = _int_points((pos - off) * s, sh, sw)
    ns = _int_points((neg - off) * s, sh, sw)
    pv_s = cv2.resize(pv.astype(np.uint8), (sw, sh), interpolation=cv2.INTER_NEAREST).astype(bool)
    best, best_key = None, -1.0
    for t in np.unique(np.quantile(polarity * small, np.linspace(0.02, 0.98, _N_THRESHOLDS))):
        m = _threshold_mask(small, small_inner, polarity, float(t), ps)
        if not m.any() or not all(m[y, x] for x, y in ps) or any(m[y, x] for x, y in ns):
            continue
        if (y0 > 0 and m[0].any()) or (y1 < h and m[-1].any()) or (x0 > 0 and m[:, 0].any()) or (
            x1 < w and m[:, -1].any()
        ):
            continue  # runs into a side of the window that is not the image's border
        key = _iou(m, pv_s)
        if key > best_key:
            best, best_key = float(t), key
    if best is None:
        return None
    mk = _threshold_mask(crop, inner, polarity, best, pos_c)
    if not mk.any():
        return None  # the threshold that closed on the downscaled crop holds nothing at full size
    full = np.zeros((h, w), bool)
    full[y0:y1, x0:x1] = mk
    return full


def _refine_polarity(crop: np.ndarray, pv: np.ndarray, pos: np.ndarray) -> int:
    """Polarity of the object being refined: the previous mask against the rest of the window."""
    if pv.any() and not pv.all():
        return 1 if float(np.median(crop[pv])) >= float(np.median(crop[~pv])) else -1
    return _polarity(crop, np.ones(crop.shape, bool), pos)


def _local_edit(prev: np.ndarray, new: np.ndarray, click: np.ndarray) -> np.ndarray:
    """Accept ``new``'s changes only near the last click: far parts the user did not correct stay."""
    h, w = prev.shape
    x, y = _int_points(click[None, :2], h, w)[0]
    d = _boundary_distance(prev, x, y)
    return _keep_near(prev, new, x, y, int(_EDIT_RADIUS * d + 4 + 0.1 * np.sqrt(max(prev.sum(), 1))))


def _keep_near(prev: np.ndarray, new: np.ndarray, x: int, y: int, r: int) -> np.ndarray:
    """``new`` inside the disc of radius ``r`` around ``(x, y)``, ``prev`` everywhere else."""
    near = np.zeros(prev.shape, np.uint8)
    cv2.circle(near, (int(x), int(y)), r, 1, -1)
    near = near.astype(bool)
    out = prev.copy()
    out[near] = new[near]
    return out


def _boundary_distance(m: np.ndarray, x: int, y: int) -> float:
    """Distance from ``(x, y)`` to the boundary of ``m`` (inside or outside)."""
    h, w = m.shape
    r = 8
    while True:
        y0, y1, x0, x1 = max(0, y - r), min(h, y + r + 1), max(0, x - r), min(w, x + r + 1)
        c = m[y0:y1, x0:x1]
        v = bool(m[y, x])
        other = np.argwhere(c != v)
        if len(other):
            dd = float(np.sqrt(((other - [y - y0, x - x0]) ** 2).sum(1)).min())
            if dd <= r or (y0 == 0 and x0 == 0 and y1 == h and x1 == w):
                return dd
        elif y0 == 0 and x0 == 0 and y1 == h and x1 == w:
            return float(max(h, w))
        r *= 2


def _honour_clicks(
    masks: list[np.ndarray], scores: list[float], pos: np.ndarray, neg: np.ndarray, prompt: Prompt
) -> tuple[list[np.ndarray], list[float]]:
    """Make every candidate obey every click: the user's clicks are facts, not hints."""
    if len(pos) == 0 and len(neg) == 0:
        return masks, scores
    out = []
    for m in masks:
        m = m.copy()
        h, w = m.shape
        area = max(int(m.sum()), 16)
        r = int(np.clip(np.sqrt(area) * 0.15, 2, 25))
        for x, y in _int_points(pos, h, w):
            if not m[y, x]:
                disc = np.zeros((h, w), np.uint8)
                cv2.circle(disc, (int(x), int(y)), r, 1, -1)
                m |= disc.astype(bool)
        for x, y in _int_points(neg, h, w):
            if m[y, x]:
                m = _voronoi_cut(m, np.array([[x, y]], np.float32), pos)
        out.append(m)
    return out, scores


def _voronoi_cut(mask: np.ndarray, neg: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Remove the pixels of ``mask`` nearer to a negative click than to any positive one."""
    ys, xs = np.nonzero(mask)
    pts = np.stack([xs, ys], 1).astype(np.float32)
    dn = np.min(((pts[:, None, :] - neg[None]) ** 2).sum(-1), axis=1)
    if len(pos):
        dp = np.min(((pts[:, None, :] - pos[None].astype(np.float32)) ** 2).sum(-1), axis=1)
    else:
        dp = np.full(len(pts), np.inf)
    out = mask.copy()
    drop = dn < dp
    out[ys[drop], xs[drop]] = False
    return out
