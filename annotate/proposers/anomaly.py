"""Weight-free anomaly proposals against the project's defect-free (``good``) images.

How an image is scored (at a working size of about ``work_side`` pixels, then back to full size):

1. **Alignment.** Each reference is registered onto the image: phase correlation gives the
   shift (references may be cropped differently or be another size: both are padded onto
   one canvas), then ECC refines an affine warp on blurred grey levels. An affine warp
   that is not close to a similarity (scale 0.8-1.25, little shear) is rejected, and so is
   a reference whose aligned correlation stays below ``min_align_corr``.
2. **Per-pixel model of normal appearance** over the aligned references, per channel of an
   opponent colour space (grey, red-green, yellow-blue: stains are often a colour change
   before they are a brightness change): the median, and a spread that combines the
   references' own disagreement (MAD), their edge strength (small misregistrations make
   large errors on edges) and a floor (sensor noise). Each reference, and the image, first
   has its smooth lighting difference to the median removed (a robust quadratic gain).
3. **Deviation** = |image - median| / spread per channel, combined as the root mean square;
   pixels covered by fewer than half of the aligned references are not scored.
4. **Regions** = hysteresis threshold (seeds above ``z_high``, grown to ``z_low``),
   connected components of at least ``min_area`` pixels at full size. A region's score is
   ``peak / (peak + z_high)``: 0.5 at the seed threshold, towards 1 for stronger ones.

When no reference aligns (parts cropped or framed too differently, as the magnetic tiles),
the proposer says so in ``last_mode`` and falls back to a **pooled patch model** (labelled as
such), PatchCore without a CNN: each pixel gets a position-free descriptor (deviation from the
image's own median background at three scales, band-pass contrast, directional gradients, local
contrast, all on exposure-normalised grey); the references' descriptors form a memory bank and
a pixel's deviation is its nearest-neighbour distance to the bank, in units of the references'
own leave-one-out distances. A margin of ``pooled_background`` working pixels along the frame is
not scored (the median background is unreliable there). Same thresholds as the aligned mode;
nothing in it was tuned on the magnetic tiles.

Classes: every region gets ``class_id`` if one is given; otherwise the nearest class by
appearance (:class:`NearestClass` over accepted annotations: colour inside and contrast with
the ring around, size, elongation).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

from annotate.proposers.base import Proposer
from data.annotations import Annotations
from data.errors import InputError

NAME = "anomaly"


@dataclass(frozen=True)
class AnomalySettings:
    """Defaults fixed on the synthetic sample with seed 1 (``generate(n=50, seed=1)``), 5 references.

    They were not chosen on seed 0, which the reported benchmark uses.
    """

    work_side: int = 448  # longer image side the model works at
    blur: float = 1.5  # smoothing at the working size before comparing (noise is not a defect)
    z_high: float = 12.0  # seed threshold on the deviation
    z_low: float = 5.0  # grow threshold
    min_area: int = 60  # full-size pixels; smaller regions are noise
    grad_weight: float = 0.3  # how much a reference edge widens the spread (misregistration)
    floor: float = 1.5  # grey levels (0..255): the spread never goes below this
    spread_blur: float = 1.0  # pools the per-pixel spread (working px)
    group: int = 0  # working px: regions closer than this are one proposal (0: off; 6 lost recall on seed 1)
    min_align_corr: float = 0.6  # ECC correlation below which a reference is not used
    pooled_background: float = 8.0  # radius (working px) of the median background in pooled mode
    bank_size: int = 40000  # reference descriptors kept in pooled mode
    pooled_stride: int = 2  # pooled mode scores every n-th pixel (working px), then interpolates
    force_pooled: bool = False  # skip alignment (benchmarks of the fallback)


@dataclass
class _Ref:
    image: np.ndarray  # (h, w, 3) float32 opponent channels at working scale
    grey: np.ndarray  # (h, w) float32 blurred grey for alignment


@dataclass(frozen=True)
class Region:
    mask: np.ndarray  # (H, W) bool, full size
    score: float
    peak_z: float


def _opponent(rgb: np.ndarray) -> np.ndarray:
    """RGB float -> (grey, red-green, yellow-blue), all in grey-level units."""
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    grey = 0.299 * r + 0.587 * g + 0.114 * b
    return np.stack([grey, r - g, 0.5 * (r + g) - b], axis=-1).astype(np.float32)


def _prepare(image: np.ndarray, scale: float, blur: float) -> _Ref:
    img = np.asarray(image)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3].astype(np.float32)
    h, w = img.shape[:2]
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    small = cv2.resize(img, size, interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), blur)
    opp = _opponent(small)
    return _Ref(image=opp, grey=np.ascontiguousarray(opp[..., 0]))


def _pad_to(a: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    out = np.zeros(shape, dtype=np.float32)
    out[: a.shape[0], : a.shape[1]] = a
    return out


def _phase_shift(target: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """Translation (dx, dy) taking target coordinates to ref coordinates."""
    shape = (max(target.shape[0], ref.shape[0]), max(target.shape[1], ref.shape[1]))
    t = _pad_to(target - target.mean(), shape)
    r = _pad_to(ref - ref.mean(), shape)
    win = cv2.createHanningWindow((shape[1], shape[0]), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(t, r, win)
    return float(dx), float(dy)


def _is_similarity(warp: np.ndarray) -> bool:
    a = warp[:, :2]
    sv = np.linalg.svd(a, compute_uv=False)
    return sv.min() >= 0.8 and sv.max() <= 1.25 and sv.max() / sv.min() < 1.08


def align(target: np.ndarray, ref: np.ndarray, min_corr: float) -> np.ndarray | None:
    """Affine warp (2x3, target -> ref coordinates) or None when the two do not align."""
    dx, dy = _phase_shift(target, ref)
    warp = np.array([[1, 0, dx], [0, 1, dy]], dtype=np.float32)
    shape = (max(target.shape[0], ref.shape[0]), max(target.shape[1], ref.shape[1]))
    r = _pad_to(ref, shape)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-4)
    mask = np.ones(target.shape, dtype=np.uint8)
    best: np.ndarray | None = None
    for motion in (cv2.MOTION_TRANSLATION, cv2.MOTION_AFFINE):
        try:
            corr, w = cv2.findTransformECC(target, r, warp.copy(), motion, criteria, mask, 5)
        except cv2.error:  # ECC did not converge: keep the previous (coarser) result
            break
        if motion == cv2.MOTION_AFFINE and not _is_similarity(w):
            break
        warp = w
        best = w if corr >= min_corr else best
    return best


class AnomalyModel:
    """The normal appearance learned from references; scores images into deviation maps."""

    def __init__(self, references: list[np.ndarray], settings: AnomalySettings | None = None) -> None:
        if not references:
            raise InputError(
                "the anomaly proposer needs defect-free reference images: mark a few images as 'good' "
                "(image status) first."
            )
        self.settings = settings or AnomalySettings()
        self._raw = [np.asarray(r) for r in references]
        self._cache: dict[int, list[_Ref]] = {}
        self._pooled: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._lock = threading.Lock()
        #: "aligned (k/n references)" or "pooled (fallback: no reference aligned)" for the last image
        self.last_mode = ""

    def _scale_for(self, shape: tuple[int, int]) -> float:
        return min(1.0, self.settings.work_side / max(shape))

    def _refs(self, scale: float) -> list[_Ref]:
        key = round(scale * 1e6)
        with self._lock:
            if key not in self._cache:
                if len(self._cache) >= 4:  # images of many sizes (cropped parts): keep the last few scales
                    self._cache.pop(next(iter(self._cache)))
                self._cache[key] = [_prepare(r, scale, self.settings.blur) for r in self._raw]
            return self._cache[key]

    # ---------------------------------------------------------------- scoring
    def deviation(self, image: np.ndarray) -> np.ndarray:
        """Per-pixel deviation (z units) at full size ``(H, W)`` float32."""
        h, w = image.shape[:2]
        return cv2.resize(self.deviation_small(image), (w, h), interpolation=cv2.INTER_LINEAR)

    def deviation_small(self, image: np.ndarray) -> np.ndarray:
        """Per-pixel deviation (z units) at the working size."""
        h, w = image.shape[:2]
        scale = self._scale_for((h, w))
        target = _prepare(image, scale, self.settings.blur)
        refs = self._refs(scale)
        warped, valid = ([], []) if self.settings.force_pooled else self._aligned(target, refs)
        if len(warped) >= 1:
            z = self._aligned_z(target.image, warped, valid)
            self.last_mode = f"aligned ({len(warped)}/{len(refs)} references)"
        else:
            z = self._pooled_z(target.image, refs)
            self.last_mode = f"pooled (fallback: none of {len(refs)} references aligned)"
        return z

    def _aligned(self, target: _Ref, refs: list[_Ref]) -> tuple[list[np.ndarray], list[np.ndarray]]:
        th, tw = target.grey.shape
        warped, valid = [], []
        t_half = cv2.pyrDown(target.grey)
        for ref in refs:
            # Aligning at half the working size is four times cheaper and precise enough once scaled back.
            warp = align(t_half, cv2.pyrDown(ref.grey), self.settings.min_align_corr)
            if warp is None:
                continue
            warp = warp.copy()
            warp[:, 2] *= 2
            flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
            warped.append(cv2.warpAffine(ref.image, warp, (tw, th), flags=flags, borderMode=cv2.BORDER_REPLICATE))
            ones = np.ones(ref.grey.shape, dtype=np.uint8)
            valid.append(cv2.warpAffine(ones, warp, (tw, th), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0)
        return warped, valid

    def _aligned_z(self, target: np.ndarray, warped: list[np.ndarray], valid: list[np.ndarray]) -> np.ndarray:
        s = self.settings
        stack = np.stack(warped)  # (K, h, w, 3)
        ok = np.stack(valid)  # (K, h, w)
        # Two passes: lighting differences are removed against a first median, then re-estimated.
        median = _masked_median(stack, ok)
        stack = np.stack([_match_gain(r, median, m) for r, m in zip(stack, ok, strict=False)])
        median = _masked_median(stack, ok)
        # Each reference's deviation from the others, tolerant to a one-pixel misregistration.
        lo, hi = _local_range(median)
        spread = 1.4826 * _masked_median(np.maximum(stack - hi[None], lo[None] - stack).clip(0), ok)
        if len(warped) < 3:  # a spread needs several references; lean on the edges and the floor
            spread[:] = 0
        # Five references give a noisy spread per pixel: pool it over a small neighbourhood.
        spread = cv2.GaussianBlur(spread, (0, 0), s.spread_blur)
        floor = np.maximum(s.floor, np.median(spread.reshape(-1, 3), axis=0))
        grad = np.stack([_grad_mag(median[..., c]) for c in range(3)], axis=-1)
        sigma = np.sqrt(spread**2 + (s.grad_weight * grad) ** 2 + floor**2)
        t = _match_gain(target, median, ok.any(0))
        dev = np.maximum(t - hi, lo - t).clip(0)
        z = np.sqrt(np.mean((dev / sigma) ** 2, axis=-1))
        covered = ok.sum(0) >= max(1, (len(warped) + 1) // 2)
        return np.where(covered, z, 0).astype(np.float32)

    def _pooled_z(self, target: np.ndarray, refs: list[_Ref]) -> np.ndarray:
        """Position-free deviation: distance of each pixel's local descriptor to its nearest reference descriptor.

        Like PatchCore without a CNN: the references' descriptors (local contrast at several scales,
        deviation from the image's own median background, directional gradients) form a memory bank;
        a pixel whose descriptor is far from every normal one is anomalous wherever it is. Distances
        are in units of the references' own leave-one-out nearest-neighbour distances.
        """
        s = self.settings
        key = id(refs)
        if key not in self._pooled:
            self._pooled = {key: _PatchBank([_descriptors(r.image[..., 0], s) for r in refs], s)}  # one scale at a time
        return self._pooled[key].z(_descriptors(target[..., 0], s))

    # ---------------------------------------------------------------- regions
    def regions(self, image: np.ndarray) -> list[Region]:
        s = self.settings
        h, w = image.shape[:2]
        small = self.deviation_small(image)
        # Components closer than ``group`` form one proposal: a stain and its particles are one defect.
        near = (small >= s.z_low).astype(np.uint8)
        if s.group > 0:
            k = 2 * s.group + 1
            near = cv2.dilate(near, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        n, groups = cv2.connectedComponents(near, connectivity=8)
        z = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
        groups = cv2.resize(groups.astype(np.int32).astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST)
        low = z >= s.z_low
        out = []
        for i in range(1, n):
            sel = (groups == i) & low
            area = int(sel.sum())
            if area < s.min_area:
                continue
            peak = float(z[sel].max())
            if peak < s.z_high:
                continue
            out.append(Region(mask=sel, score=peak / (peak + s.z_high), peak_z=peak))
        out.sort(key=lambda r: -r.score)
        return out


def _masked_median(stack: np.ndarray, ok: np.ndarray) -> np.ndarray:
    data = np.where(ok[..., None], stack, np.nan) if stack.ndim == 4 else np.where(ok, stack, np.nan)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN pixels: not covered
        med = np.nanmedian(data, axis=0)
    return np.nan_to_num(med, nan=0.0).astype(np.float32)


def _local_range(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel min and max over a 3x3 neighbourhood: what a one-pixel shift could explain."""
    k = np.ones((3, 3), np.uint8)
    return cv2.erode(a, k), cv2.dilate(a, k)


def _grad_mag(a: np.ndarray) -> np.ndarray:
    gx = cv2.Sobel(a, cv2.CV_32F, 1, 0, ksize=3) / 8
    gy = cv2.Sobel(a, cv2.CV_32F, 0, 1, ksize=3) / 8
    return np.sqrt(gx * gx + gy * gy)


def _poly(xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    return np.stack([np.ones_like(xs), xs, ys, xs * xs, xs * ys, ys * ys], axis=-1)


def _match_gain(img: np.ndarray, ref: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """``img`` with its smooth brightness difference to ``ref`` removed (robust quadratic gain on grey).

    Lighting gradients and vignetting differ from shot to shot; a defect is local, so the
    robust fit (outliers dropped twice) ignores it.
    """
    h, w = img.shape[:2]
    step = max(1, int(np.sqrt(h * w / 4000)))
    ys, xs = np.mgrid[0:h:step, 0:w:step]
    a, b = img[::step, ::step, 0], ref[::step, ::step, 0]
    keep = valid[::step, ::step] & (a > 8) & (b > 8)  # dark pixels carry no gain information
    if keep.sum() < 20:
        return img
    x, y = xs[keep] / w - 0.5, ys[keep] / h - 0.5
    design = _poly(x, y)
    target = np.log(b[keep]) - np.log(a[keep])
    use = np.ones(len(target), dtype=bool)
    coef = np.zeros(6)
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(design[use], target[use], rcond=None)
        res = target - design @ coef
        mad = 1.4826 * np.median(np.abs(res[use])) + 1e-6
        use = np.abs(res) < 2.5 * mad
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    gain = np.exp(_poly(gx / w - 0.5, gy / h - 0.5) @ coef.astype(np.float32)).astype(np.float32)
    # The gain applies to intensities; the colour-difference channels scale with them.
    return img * gain[..., None]


def _descriptors(grey: np.ndarray, s: AnomalySettings) -> np.ndarray:
    """(h, w, 7) float32 local descriptors of a grey image, independent of position and exposure."""
    g = grey * (100.0 / max(float(np.median(grey)), 1.0))  # exposure differs from shot to shot
    r = s.pooled_background
    k = 2 * int(round(r)) + 1
    med = cv2.medianBlur(np.clip(g, 0, 255).astype(np.uint8), k).astype(np.float32)
    g1, g2, g4 = (cv2.GaussianBlur(g, (0, 0), t) for t in (1.0, 2.0, 4.0))
    gx = np.abs(cv2.Sobel(g1, cv2.CV_32F, 1, 0, ksize=3)) / 8
    gy = np.abs(cv2.Sobel(g1, cv2.CV_32F, 0, 1, ksize=3)) / 8
    contrast = np.sqrt(cv2.GaussianBlur((g - g2) ** 2, (0, 0), 3.0))
    feats = [g1 - med, g2 - med, g4 - med, g1 - g4, cv2.GaussianBlur(gx, (0, 0), 1.5),
             cv2.GaussianBlur(gy, (0, 0), 1.5), contrast]
    return np.stack(feats, axis=-1).astype(np.float32)


class _PatchBank:
    """Nearest-neighbour memory of the references' descriptors, with its own distance scale."""

    def __init__(self, descs: list[np.ndarray], s: AnomalySettings) -> None:
        from scipy.spatial import cKDTree  # scipy comes with ultralytics; only the fallback needs it

        rng = np.random.default_rng(0)
        per = max(1, s.bank_size // len(descs))
        parts = [_sample(_inner(d, s).reshape(-1, d.shape[-1]), per, rng) for d in descs]
        allp = np.concatenate(parts)
        self.mean = allp.mean(0)
        self.std = allp.std(0) + 1e-3
        self.tree = cKDTree((allp - self.mean) / self.std)
        self.stride = s.pooled_stride
        self.margin = max(1, int(round(s.pooled_background)))
        # The scale: how far a reference's pixels are from the other references' (leave one out).
        if len(parts) >= 2:
            d = []
            for i, p in enumerate(parts):
                others = np.concatenate([q for j, q in enumerate(parts) if j != i])
                tree = cKDTree((others - self.mean) / self.std)
                d.append(tree.query((_sample(p, 2000, rng) - self.mean) / self.std, k=1)[0])
            d = np.concatenate(d)
        else:
            d = self.tree.query((_sample(parts[0], 2000, rng) - self.mean) / self.std, k=2)[0][:, 1]
        self.scale = max(float(np.median(d)), 1e-3)

    def z(self, desc: np.ndarray) -> np.ndarray:
        h, w = desc.shape[:2]
        st = self.stride
        q = desc[::st, ::st]
        d, _ = self.tree.query(((q.reshape(-1, q.shape[-1]) - self.mean) / self.std), k=1)
        d = d.reshape(q.shape[:2]).astype(np.float32) / self.scale
        z = cv2.resize(d, (w, h), interpolation=cv2.INTER_LINEAR)
        # The median background is unreliable within its radius of the frame (the crop's edge, a dark
        # margin): not scored, at the price of missing defects that touch the frame.
        m = self.margin
        z[:m], z[-m:], z[:, :m], z[:, -m:] = 0, 0, 0, 0
        return z


def _inner(d: np.ndarray, s: AnomalySettings) -> np.ndarray:
    m = max(1, int(round(s.pooled_background)))
    return d[m:-m, m:-m] if min(d.shape[:2]) > 4 * m else d


def _sample(a: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    return a if len(a) <= n else a[rng.choice(len(a), n, replace=False)]


# ------------------------------------------------------------------ classes
def region_features(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Appearance of one region: mean colour inside, contrast with a ring around, log area, elongation."""
    img = image[..., :3].astype(np.float32) if image.ndim == 3 else np.repeat(image[..., None], 3, 2)
    mask = mask.astype(bool)
    ring = cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)).astype(bool) & ~mask
    inside = img[mask].mean(0) if mask.any() else np.zeros(3)
    around = img[ring].mean(0) if ring.any() else inside
    ys, xs = np.nonzero(mask)
    if len(xs) >= 3:
        ev = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(np.float64)) + 1e-6 * np.eye(2))
        elong = float(np.sqrt(ev[1] / max(ev[0], 1e-6)))
    else:
        elong = 1.0
    return np.concatenate([inside / 255, (inside - around) / 255, [np.log1p(mask.sum()) / 10, np.log(elong)]])


class NearestClass:
    """Nearest class centroid over accepted annotations' appearance features (standardised)."""

    def __init__(self, features: np.ndarray, class_ids: np.ndarray) -> None:
        if len(features) == 0:
            raise InputError(
                "no class for the anomaly proposals: pick one (--class NAME) or accept a few labelled "
                "defects first so the nearest class by appearance can be used."
            )
        self.mean = features.mean(0)
        self.std = features.std(0) + 1e-3
        f = (features - self.mean) / self.std
        self.classes = np.unique(class_ids)
        self.centroids = np.stack([f[class_ids == c].mean(0) for c in self.classes])

    def predict(self, features: np.ndarray) -> int:
        f = (features - self.mean) / self.std
        return int(self.classes[int(np.argmin(((self.centroids - f) ** 2).sum(1)))])


class AnomalyProposer(Proposer):
    """Regions that deviate from the project's good images."""

    name = NAME
    keeps_masks = False  # its masks are the thresholded deviation: a segmenter, if given, replaces them
    predicts_classes = False

    def __init__(
        self,
        references: list[np.ndarray],
        class_id: int | None = None,
        classifier: NearestClass | None = None,
        settings: AnomalySettings | None = None,
    ) -> None:
        if class_id is None and classifier is None:
            raise InputError(
                "the anomaly proposer needs a class for what it finds: pass --class NAME, or accept a few "
                "labelled defects so the nearest class by appearance can be used."
            )
        self.model = AnomalyModel(references, settings)
        self.class_id = class_id
        self.classifier = classifier

    def propose(self, image: np.ndarray, key: str) -> Annotations:
        h, w = image.shape[:2]
        regions = self.model.regions(image)
        if not regions:
            return Annotations.empty(h, w)
        if self.class_id is not None:
            classes = np.full(len(regions), self.class_id, dtype=np.int64)
        else:
            classes = np.array([self.classifier.predict(region_features(image, r.mask)) for r in regions],
                               dtype=np.int64)
        return Annotations.from_masks([r.mask for r in regions], classes,  # one at a time, not an (N, H, W) stack
                                      np.array([r.score for r in regions], dtype=np.float32), source=NAME,
                                      status="proposed", size=(h, w))
