"""Mask, polygon, RLE and box conversions shared by every format and layer.

Conventions: masks are ``(H, W)`` bool arrays; boxes are XYXY in pixels with
the far edge exclusive (``x1 = last column + 1``), as in COCO's ``[x, y, w, h]``;
polygons are flat ``[x0, y0, x1, y1, ...]`` lists in pixel coordinates;
RLE is COCO's compressed form ``{"size": [H, W], "counts": str}``.
"""

from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as mask_utils


def mask_to_box(mask: np.ndarray) -> np.ndarray:
    """XYXY box of a bool mask (zeros for an empty mask)."""
    mask = np.asarray(mask, dtype=bool)
    cols = np.flatnonzero(mask.any(axis=0))
    if len(cols) == 0:
        return np.zeros(4, dtype=np.float32)
    rows = np.flatnonzero(mask[:, cols[0] : cols[-1] + 1].any(axis=1))
    return np.array([cols[0], rows[0], cols[-1] + 1, rows[-1] + 1], dtype=np.float32)


def crop_mask(mask: np.ndarray) -> tuple[np.ndarray, int, int]:
    """A mask cut to its box: ``(crop, x0, y0)``, the crop a bool copy (``(0, 0)`` for an empty mask)."""
    x0, y0, x1, y1 = (int(v) for v in mask_to_box(mask))
    return np.array(mask[y0:y1, x0:x1], dtype=bool), x0, y0


def crop_tight(crop: np.ndarray, x0: int, y0: int) -> tuple[np.ndarray, int, int]:
    """A crop (at ``x0, y0``) cut again to the box of its pixels."""
    c, dx, dy = crop_mask(crop)
    return c, x0 + dx, y0 + dy


def clip_crop(crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """The part of a crop that lies inside a ``height x width`` image."""
    h, w = crop.shape
    cx0, cy0 = max(0, -x0), max(0, -y0)
    cx1, cy1 = max(cx0, min(w, width - x0)), max(cy0, min(h, height - y0))
    return crop[cy0:cy1, cx0:cx1], x0 + cx0, y0 + cy0


def paste_crop(canvas: np.ndarray, crop: np.ndarray, x0: int, y0: int, value: object = True) -> None:
    """Set the pixels of a crop (at ``x0, y0`` in image pixels) in ``canvas`` (``(H, W)`` or ``(H, W, C)``),
    the part of the crop outside the canvas ignored."""
    crop, x0, y0 = clip_crop(crop, x0, y0, canvas.shape[0], canvas.shape[1])
    canvas[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]][crop] = value


def crop_window(crop: np.ndarray, x0: int, y0: int, wx0: int, wy0: int, wx1: int, wy1: int) -> np.ndarray:
    """The crop's pixels inside the window ``[wx0, wx1) x [wy0, wy1)`` of the image, ``(wy1 - wy0, wx1 - wx0)``."""
    out = np.zeros((max(0, wy1 - wy0), max(0, wx1 - wx0)), dtype=bool)
    paste_crop(out, crop, x0 - wx0, y0 - wy0)
    return out


STROKE_MARGIN = 2  # pixels around a brush stroke's radius inside the window it is drawn in


def stroke_crop(base: tuple[np.ndarray, int, int] | None, height: int, width: int, points: np.ndarray,
                radius: float, paint: bool) -> tuple[np.ndarray, int, int]:
    """A brush (``paint``) or eraser polyline of ``radius`` pixels through ``points`` (``(K, 2)`` image
    pixels) over the mask ``base`` (``(crop, x0, y0)``, or None: an empty mask) -> the new mask as a
    tight crop ``(crop, x0, y0)`` of a ``height x width`` image.

    Drawn only in the window of the stroke (grown by its radius and :data:`STROKE_MARGIN`) joined
    with the base crop, not on a full-size canvas; OpenCV rasterises integer points the same
    wherever the canvas starts, so the pixels are those of a full-size drawing.
    """
    m = int(np.ceil(radius)) + STROKE_MARGIN
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    reach = FAR * max(height, width, 1)
    if len(pts) > 1 and (pts.min() < -reach or pts.max() > max(height, width) + reach):
        # A vertex far outside (a browser may send 1e308): only the part of each segment within the
        # brush's reach ``m`` of the image can paint, so the segments are cut there before any
        # integer conversion and drawn one by one (a thick polyline is the union of its segments).
        lo, hi = np.array([-m, -m], np.float64), np.array([width + m, height + m], np.float64)
        lines = [np.stack(seg) for a, b in zip(pts[:-1], pts[1:], strict=True) if (seg := _clip_segment(a, b, lo, hi))]
        ends = [q for q in (pts[0], pts[-1]) if (q >= lo).all() and (q <= hi).all()]
    else:
        pts = np.clip(pts, -reach, max(height, width) + reach)  # a lone far point paints nothing either way
        lines, ends = ([pts] if len(pts) > 1 else []), [pts[0], pts[-1]]
    return _draw_stroke(base, height, width, lines, ends, radius, paint, m)


def _draw_stroke(base: tuple[np.ndarray, int, int] | None, height: int, width: int, lines: list[np.ndarray],
                 ends: list[np.ndarray], radius: float, paint: bool, m: int) -> tuple[np.ndarray, int, int]:
    """Thick ``lines`` and round ``ends`` (image pixels, near the image) drawn over ``base`` in the
    window they span (grown by ``m``) joined with the base crop; the new mask as a tight crop."""
    empty = base if base is not None else (np.zeros((0, 0), dtype=bool), 0, 0)
    near = [np.round(np.asarray(v, dtype=np.float64).reshape(-1, 2)).astype(np.int64) for v in [*lines, *ends]]
    if not near:
        return empty
    every = np.concatenate(near)
    x0, y0 = (int(v) - m for v in every.min(axis=0))
    x1, y1 = (int(v) + m + 1 for v in every.max(axis=0))
    if base is not None and base[0].size:
        c, cx, cy = base
        x0, y0, x1, y1 = min(x0, cx), min(y0, cy), max(x1, cx + c.shape[1]), max(y1, cy + c.shape[0])
    x0, y0 = min(max(x0, 0), width), min(max(y0, 0), height)
    x1, y1 = max(x0, min(x1, width)), max(y0, min(y1, height))
    if x1 <= x0 or y1 <= y0:  # the stroke misses the image and there is no mask
        return empty
    canvas = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    if base is not None:
        paste_crop(canvas, base[0], base[1] - x0, base[2] - y0, 1)
    r, thick, value = int(round(radius)), max(1, int(round(2 * radius))), 1 if paint else 0
    for line in near[: len(lines)]:
        cv2.polylines(canvas, [(line - (x0, y0)).astype(np.int32).reshape(-1, 1, 2)], False, value, thick)
    for q in near[len(lines):]:
        cv2.circle(canvas, (int(q[0, 0] - x0), int(q[0, 1] - y0)), r, value, -1)
    return crop_tight(canvas.astype(bool), x0, y0)


def _clip_segment(a: np.ndarray, b: np.ndarray, lo: np.ndarray, hi: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray] | None:
    """The part of the segment ``a -> b`` inside the box ``[lo, hi]``, or None. Each crossing is
    measured from the end inside that bound (from the far end, 1e308 would swallow the near one)."""
    a, b = a.astype(np.float64).copy(), b.astype(np.float64).copy()
    for axis, bound, below in ((0, lo[0], False), (0, hi[0], True), (1, lo[1], False), (1, hi[1], True)):
        a_in = a[axis] <= bound if below else a[axis] >= bound
        b_in = b[axis] <= bound if below else b[axis] >= bound
        if not a_in and not b_in:
            return None
        if a_in != b_in:
            inner, outer = (a, b) if a_in else (b, a)
            with np.errstate(over="ignore", invalid="ignore"):
                slope = (outer[1 - axis] - inner[1 - axis]) / (outer[axis] - inner[axis])
                cross = np.empty(2)
                cross[axis] = bound
                cross[1 - axis] = inner[1 - axis] + (bound - inner[axis]) * slope
            if not np.isfinite(cross).all():
                return None
            if a_in:
                b = cross
            else:
                a = cross
    return a, b


def crop_iou(a: np.ndarray, ao: tuple[int, int], b: np.ndarray, bo: tuple[int, int]) -> float:
    """IoU of two masks kept as crops at origins ``ao``/``bo`` (1.0 when both are empty)."""
    sa, sb = int(a.sum()), int(b.sum())
    x0, y0 = max(ao[0], bo[0]), max(ao[1], bo[1])
    x1, y1 = min(ao[0] + a.shape[1], bo[0] + b.shape[1]), min(ao[1] + a.shape[0], bo[1] + b.shape[0])
    inter = 0
    if x1 > x0 and y1 > y0:
        pa = a[y0 - ao[1] : y1 - ao[1], x0 - ao[0] : x1 - ao[0]]
        pb = b[y0 - bo[1] : y1 - bo[1], x0 - bo[0] : x1 - bo[0]]
        inter = int(np.logical_and(pa, pb).sum())
    union = sa + sb - inter
    return inter / union if union else 1.0


def box_crop(xyxy, height: int, width: int) -> tuple[np.ndarray, int, int]:
    """A box's filled mask as a crop ``(crop, x0, y0)``: the pixels the box covers at least half of,
    clipped to the image (the one rule for "a box-only annotation read as a mask")."""
    x0, y0, x1, y1 = (int(round(float(v))) for v in xyxy)
    x0, y0 = min(max(0, x0), width), min(max(0, y0), height)
    x1, y1 = max(x0, min(width, x1)), max(y0, min(height, y1))
    return np.ones((y1 - y0, x1 - x0), dtype=bool), x0, y0


def box_to_mask(xyxy, height: int, width: int) -> np.ndarray:
    """The filled box (:func:`box_crop`) as a full-size bool mask."""
    m = np.zeros((height, width), dtype=bool)
    c, x0, y0 = box_crop(xyxy, height, width)
    m[y0 : y0 + c.shape[0], x0 : x0 + c.shape[1]] = True
    return m


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """``(N, H, W)`` bool -> ``(N, 4)`` XYXY."""
    if len(masks) == 0:
        return np.zeros((0, 4), dtype=np.float32)
    return np.stack([mask_to_box(m) for m in masks]).astype(np.float32)


def encode_rle(mask: np.ndarray) -> dict:
    """Bool mask -> COCO compressed RLE with ``counts`` as str (JSON-safe); an empty-sized mask too."""
    if mask.size == 0:
        return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": ""}
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """COCO RLE (compressed str/bytes counts, or uncompressed list counts) -> bool mask."""
    h, w = (int(v) for v in rle["size"])
    if h * w == 0:
        return np.zeros((h, w), dtype=bool)
    counts = rle["counts"]
    if isinstance(counts, list):
        rle = mask_utils.frPyObjects(rle, h, w)
    elif isinstance(counts, str):
        rle = {"size": [h, w], "counts": counts.encode("ascii")}
    return mask_utils.decode(rle).astype(bool)


def decode_foreign_rle(rle: dict) -> np.ndarray:
    """:func:`decode_rle` of an RLE from a file: its counts are checked first, in Python, because
    pycocotools trusts them (a NUL in a counts string aborts the process, runs that do not add up to
    the image read memory they do not own). Raises ValueError naming the fault."""
    h, w = (int(v) for v in rle["size"])
    if h < 0 or w < 0 or h * w > MAX_RLE_PIXELS:
        raise ValueError(f"size {h}x{w} is not an image size")
    counts = rle.get("counts")
    if isinstance(counts, list):
        if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in counts):
            raise ValueError("counts must be non-negative integers")
        runs = counts
    elif isinstance(counts, (str, bytes)):
        text = counts.encode("latin-1") if isinstance(counts, str) else counts
        if any(not 48 <= ch <= 111 for ch in text):
            raise ValueError("the counts string holds characters compressed RLE never uses")
        try:
            runs = rle_counts(text)
        except IndexError:
            raise ValueError("the counts string ends inside a number") from None
        if any(r < 0 for r in runs):
            raise ValueError("the counts string decodes to a negative run")
    else:
        raise ValueError("counts must be a list of run lengths or a compressed string")
    if sum(runs) != h * w:
        raise ValueError(f"its runs cover {sum(runs)} pixels, the {w}x{h} image has {h * w}")
    return decode_rle({"size": [h, w], "counts": counts if isinstance(counts, list) else text.decode("ascii")})


MAX_RLE_PIXELS = 1 << 31  # an RLE larger than this is no image this app stores


def crop_to_rle(crop: np.ndarray, x0: int, y0: int, height: int, width: int) -> dict:
    """The full-image COCO RLE of a mask kept as a crop at ``(x0, y0)``, without a full-size mask.

    Only the band of columns the crop spans is encoded (RLE runs down the columns); the
    columns before and after it are one background run each.
    """
    crop, x0, y0 = clip_crop(np.asarray(crop, dtype=bool), int(x0), int(y0), height, width)
    if not crop.any():
        return encode_rle(np.zeros((height, width), dtype=bool)) if height * width else encode_rle(crop)
    ch, cw = crop.shape
    band = np.zeros((height, cw), dtype=bool)
    band[y0 : y0 + ch] = crop
    runs = rle_counts(encode_rle(band)["counts"])
    runs[0] += x0 * height
    tail = (width - x0 - cw) * height
    if len(runs) % 2:  # ends on a background run: it grows
        runs[-1] += tail
    elif tail:
        runs.append(tail)
    rle = mask_utils.frPyObjects({"size": [height, width], "counts": runs}, height, width)
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def polygons_to_crop(polygons: list[list[float]], height: int, width: int) -> tuple[np.ndarray, int, int]:
    """``polygons_to_mask`` as a tight crop ``(crop, x0, y0)``, bit for bit, without a full-size mask.

    pycocotools rasterises the polygons at the image's size into RLE (runs, not pixels); only the
    columns the mask spans are decoded. (Rasterising the shifted polygons in a smaller window
    would move a few edge pixels: pycocotools rounds the 5x-upsampled vertices in floating point,
    which is not exact under a shift.)
    """
    valid = safe_polygons(polygons, height, width)
    if not valid or height * width == 0:
        return np.zeros((0, 0), dtype=bool), 0, 0
    rle = mask_utils.merge(mask_utils.frPyObjects(valid, height, width))
    runs = np.asarray(rle_counts(rle["counts"]), dtype=np.int64)
    ends = np.cumsum(runs)
    fg = (np.arange(len(runs)) % 2 == 1) & (runs > 0)  # odd runs are foreground
    if not fg.any():
        return np.zeros((0, 0), dtype=bool), 0, 0
    x0 = int((ends[fg][0] - runs[fg][0]) // height)
    x1 = int((ends[fg][-1] - 1) // height) + 1
    band = rle_crop({"size": [height, width], "counts": runs.tolist()}, x0, x1)
    return crop_tight(band, x0, 0)


def crop_to_polygons(crop: np.ndarray, x0: int, y0: int) -> list[list[float]]:
    """The outer outline of each part of a mask kept as a crop at ``(x0, y0)``, on pixel edges.

    Exact for pycocotools (COCO's reader): its rasteriser fills a polygon that runs along pixel
    edges with exactly the pixels inside, so the polygons redraw the mask with its holes filled
    (polygons cannot hold holes), pixel for pixel; the shoelace area of each is its pixel count.
    One polygon per 8-connected part, largest first. Also what the browser edits (the label API).
    """
    if crop.size == 0 or not crop.any():
        return []
    # Each pixel becomes a 2x2 block: OpenCV then traces the outline through the blocks' edge
    # cells, and cell u of the upsampled grid lies on pixel edge ceil(u / 2).
    up = np.zeros((2 * crop.shape[0] + 2, 2 * crop.shape[1] + 2), dtype=np.uint8)
    up[1:-1, 1:-1] = np.repeat(np.repeat(crop.astype(np.uint8), 2, axis=0), 2, axis=1)
    contours, _ = cv2.findContours(up, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        pts = c.reshape(-1, 2) // 2  # padded cell u + 1 -> edge ceil(u / 2)
        pts = pts[np.any(pts != np.roll(pts, 1, axis=0), axis=1)]  # a saddle maps two cells to one corner
        prev, nxt = np.roll(pts, 1, axis=0), np.roll(pts, -1, axis=0)
        turn = (pts[:, 0] - prev[:, 0]) * (nxt[:, 1] - pts[:, 1]) - (pts[:, 1] - prev[:, 1]) * (nxt[:, 0] - pts[:, 0])
        pts = pts[turn != 0] + (x0, y0)  # corners only
        polys.append([float(v) for v in pts.reshape(-1)])
    polys.sort(key=lambda p: (-polygon_area(p), p[:2]))  # largest first, then by position: deterministic
    return polys


YOLO_VERTEX_OFFSET = 0.25  # within the pixel: truncated and rounded, it is that pixel again


def crop_to_yolo_polygon(crop: np.ndarray, x0: int, y0: int) -> tuple[list[float], int]:
    """One polygon for a mask kept as a crop at ``(x0, y0)``, exact for Ultralytics' reader; and
    the number of parts it joins.

    Ultralytics rasterises a segment label as ``polygon2mask`` does: vertices truncated to
    integers, then ``cv2.fillPoly``, which fills the polygon's outline pixels too. So the vertices
    are the boundary pixels themselves, written as ``(x + 0.25, y + 0.25)``: that truncates back
    to ``x`` (Ultralytics) and also rounds back to it (supervision's reader rounds), with room
    for the six decimals of a normalised coordinate. A one-part mask comes back exactly, holes
    filled. YOLO holds one polygon per
    instance, so the parts of a mask in several parts are joined by zero-width bridges
    (:func:`merge_polygons`), which draw a one-pixel line between them. A part of one or two
    pixels repeats its last vertex to make the three Ultralytics needs.
    """
    if crop.size == 0 or not crop.any():
        return [], 0
    contours, _ = cv2.findContours(np.ascontiguousarray(crop, dtype=np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    polys = []
    for c in contours:
        pts = _no_false_bridges(c.reshape(-1, 2).astype(np.float64)) + (x0 + YOLO_VERTEX_OFFSET,
                                                                         y0 + YOLO_VERTEX_OFFSET)
        if len(pts) < 3:
            pts = np.concatenate([pts, np.repeat(pts[-1:], 3 - len(pts), axis=0)])
        polys.append(pts.reshape(-1).tolist())
    polys.sort(key=lambda p: (-len(p), p[:2]))
    return (merge_polygons(polys) if len(polys) > 1 else polys[0]), len(polys)


def yolo_polygon_to_crop(polygon: list[float], height: int, width: int) -> tuple[np.ndarray, int, int]:
    """A YOLO segment polygon in image pixels rasterised as Ultralytics reads a label (``polygon2mask``:
    vertices truncated to integers, ``cv2.fillPoly``), as a tight crop ``(crop, x0, y0)``.

    Zero-width bridges (a vertex pair walked there and back, as :func:`merge_polygons` and
    Ultralytics' own COCO converter join the parts of one instance) are cut first and each part
    drawn on its own, so a mask in several parts comes back without the bridge lines. Vertices
    are clipped to the image first (through :func:`safe_polygons` for far ones).
    """
    parts = safe_polygons(split_bridges(polygon), height, width)
    if not parts or height * width == 0:
        return np.zeros((0, 0), dtype=bool), 0, 0
    pts = [np.clip(np.asarray(p, dtype=np.float64).reshape(-1, 2), 0, (width, height)).astype(np.int32)
           for p in parts]  # truncation, as np.asarray(..., np.int32) in polygon2mask
    x0, y0 = (int(v) for v in np.min([p.min(axis=0) for p in pts], axis=0))
    x1, y1 = (int(v) for v in np.max([p.max(axis=0) for p in pts], axis=0))
    canvas = np.zeros((y1 - y0 + 1, x1 - x0 + 1), dtype=np.uint8)
    for p in pts:  # one by one: fillPoly of several at once would cut the overlap of two out
        cv2.fillPoly(canvas, [p - (x0, y0)], 1)
    crop, cx, cy = clip_crop(canvas.astype(bool), x0, y0, height, width)
    return crop_tight(crop, cx, cy)


def split_bridges(polygon: list[float]) -> list[list[float]]:
    """The parts of a polygon whose parts are joined by zero-width bridges: an edge ``a -> b`` walked
    back later as ``b -> a`` (:func:`merge_polygons`). A polygon without such a pair is itself.
    A part of fewer than three vertices repeats its last one (drawn, it is a line or a pixel)."""
    stack, out = [np.asarray(polygon, dtype=np.float64).reshape(-1, 2)], []
    while stack:
        p = stack.pop()
        cut = _there_and_back(p)
        if cut is None and len(p) > 3 and (p[0] != p[-1]).any():  # the way back may be the closing edge
            closed = np.concatenate([p, p[:1]])  # (Ultralytics' converter joins parts so)
            cut = _there_and_back(closed)
            p = closed if cut is not None else p
        if cut is None:
            out.append(p if len(p) >= 3 else np.concatenate([p, np.repeat(p[-1:], 3 - len(p), axis=0)]))
            continue
        k, m = cut  # p[k] -> p[k+1] is the bridge out, p[m-1] -> p[m] the way back
        stack += [np.concatenate([p[: k + 1], p[m + 1 :]]), p[k + 1 : m - 1]]
    return [q.reshape(-1).tolist() for q in out if len(q)]


def _there_and_back(p: np.ndarray, from_pixels: int = 0) -> tuple[int, int] | None:
    """The first ``(k, m)`` with the edge ``p[k] -> p[k+1]`` walked back as ``p[m-1] -> p[m]``
    (with ``from_pixels``, only such an edge at least that many pixels long)."""
    keys = [tuple(v) for v in p.tolist()]
    seen: dict[tuple, list[int]] = {}
    for i, key in enumerate(keys):
        seen.setdefault(key, []).append(i)
    for k in range(len(p) - 1):
        for m in seen[keys[k]]:
            if m > k + 2 and keys[m - 1] == keys[k + 1] and np.abs(p[k + 1] - p[k]).max() >= from_pixels:
                return k, m
    return None


def _no_false_bridges(pts: np.ndarray) -> np.ndarray:
    """A traced outline with every edge it walks there and back (a one-pixel-wide spur or neck of
    the mask) given one more vertex on its way back, on a pixel of that edge, so that
    :func:`split_bridges` does not take it for a bridge. Drawn, nothing changes: the vertex is
    on the edge's own pixels (traced edges run straight or at 45 degrees). An edge between
    neighbouring pixels has no pixel between them: cut there, no pixel is lost, so it stays."""
    for _ in range(len(pts)):
        cut = _there_and_back(pts, from_pixels=2)
        if cut is None:
            closed = _there_and_back(np.concatenate([pts, pts[:1]]), from_pixels=2)
            if closed is None or closed[1] != len(pts):
                break
            cut = closed  # the way back is the closing edge: its vertex goes at the end
        m = cut[1]
        a, b = pts[m % len(pts)], pts[m - 1]  # the way back runs b -> a
        pts = np.concatenate([pts[:m], [b + np.sign(a - b)], pts[m:]])
    return pts


def crop_topology(crop: np.ndarray) -> tuple[int, int]:
    """``(parts, holes)`` of a mask: its 8-connected parts and the background regions they enclose
    (what a polygon format cannot hold as it is: holes are filled, YOLO joins the parts)."""
    if crop.size == 0 or not crop.any():
        return 0, 0
    padded = np.zeros((crop.shape[0] + 2, crop.shape[1] + 2), dtype=np.uint8)
    padded[1:-1, 1:-1] = crop
    _, hierarchy = cv2.findContours(padded, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    parents = hierarchy.reshape(-1, 4)[:, 3]
    return int(np.count_nonzero(parents < 0)), int(np.count_nonzero(parents >= 0))


def mask_to_polygons(mask: np.ndarray, origin: tuple[int, int] = (0, 0)) -> list[list[float]]:
    """:func:`crop_to_polygons` of a full mask (or of a crop whose top-left pixel is at ``origin``)."""
    return crop_to_polygons(mask, *origin)


def rle_counts(counts: str | bytes) -> list[int]:
    """Run lengths of a compressed COCO RLE string (pycocotools' ``rleFrString``, in Python)."""
    data = counts.encode("ascii") if isinstance(counts, str) else counts
    out: list[int] = []
    p, n = 0, len(data)
    while p < n:
        x, k, more = 0, 0, True
        while more:
            c = data[p] - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and (c & 0x10):
                x |= -1 << (5 * k)
        if len(out) > 2:
            x += out[-2]
        out.append(x)
    return out


def rle_crop(rle: dict, x0: int, x1: int) -> np.ndarray:
    """Columns ``x0:x1`` of an RLE mask, ``(H, x1 - x0)`` bool, without decoding the rest of the image."""
    h = int(rle["size"][0])
    counts = rle["counts"]
    runs = counts if isinstance(counts, list) else rle_counts(counts)
    lo, hi = x0 * h, x1 * h
    flat = np.zeros(hi - lo, dtype=bool)
    pos = 0
    for i, run in enumerate(runs):
        end = pos + run
        if i % 2 and end > lo and pos < hi:  # odd runs are foreground
            flat[max(pos, lo) - lo : min(end, hi) - lo] = True
        pos = end
        if pos >= hi:
            break
    return flat.reshape(x1 - x0, h).T  # RLE is column-major


def polygon_area(poly: list[float]) -> float:
    pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2)
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def safe_polygons(polygons: list[list[float]], height: int, width: int) -> list[list[float]]:
    """The polygons (of at least 3 finite vertices) that pycocotools can be handed safely.

    pycocotools walks every upsampled pixel of a polygon's outline: a vertex at ``1e9`` crashes
    the process, one at NaN first asks for gigabytes. A polygon reaching further than
    :data:`FAR` image sizes outside the image is clipped (Sutherland-Hodgman) to a window that
    far out, which keeps every pixel inside the image; nearer polygons are left exactly as
    they are, so ordinary ones rasterise bit for bit as before. Non-finite ones are dropped.
    """
    out = []
    reach = FAR * max(height, width, 1)
    lo, hi = -reach, max(height, width) + reach
    for p in polygons:
        if len(p) < 6:
            continue
        try:
            pts = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError):
            continue
        if not np.isfinite(pts).all():
            continue
        if pts.min() < lo or pts.max() > hi:
            with np.errstate(over="ignore", invalid="ignore"):  # checked just below
                pts = _clip_polygon(pts, lo, hi)
            if len(pts) < 3 or not np.isfinite(pts).all():  # an edge from -1e308 to 1e308 has no slope
                continue
        out.append(pts.reshape(-1).tolist())
    return out


FAR = 4  # image sizes: a polygon reaching beyond this is clipped before rasterising


def _clip_polygon(pts: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Sutherland-Hodgman: ``pts`` ``(N, 2)`` clipped to the square ``[lo, hi]^2``."""
    out = pts
    for axis, bound, keep_below in ((0, lo, False), (0, hi, True), (1, lo, False), (1, hi, True)):
        if not len(out):
            break
        res = []
        for k in range(len(out)):
            cur, prev = out[k], out[k - 1]
            cin = cur[axis] <= bound if keep_below else cur[axis] >= bound
            pin = prev[axis] <= bound if keep_below else prev[axis] >= bound
            if cin != pin:  # the edge crosses the bound: its crossing point, measured from the inner end
                a, b = (cur, prev) if cin else (prev, cur)  # (far-off vertices would cancel out the near one)
                cross = np.empty(2)
                cross[axis] = bound
                cross[1 - axis] = a[1 - axis] + (bound - a[axis]) * ((b[1 - axis] - a[1 - axis]) / (b[axis] - a[axis]))
                res.append(cross)
            if cin:
                res.append(cur)
        out = np.array(res, dtype=np.float64).reshape(-1, 2)
    return out


def polygons_to_mask(polygons: list[list[float]], height: int, width: int) -> np.ndarray:
    """Rasterise polygons (pixel coordinates) into a bool mask, as pycocotools does (through
    :func:`safe_polygons`)."""
    valid = safe_polygons(polygons, height, width)
    if not valid or height * width == 0:
        return np.zeros((height, width), dtype=bool)
    rles = mask_utils.frPyObjects(valid, height, width)
    return mask_utils.decode(mask_utils.merge(rles)).astype(bool)


def merge_polygons(polygons: list[list[float]]) -> list[float]:
    """Join several polygons into one by zero-width bridges between nearest vertices.

    YOLO segment labels hold one polygon per instance; this keeps a mask in several
    parts as one instance that Ultralytics reads back whole (the bridges add at most
    a one-pixel line).
    """
    parts = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons if len(p) >= 6]
    if not parts:
        return []
    merged = parts[0]
    for part in parts[1:]:
        d = ((merged[:, None, :] - part[None, :, :]) ** 2).sum(-1)
        i, j = np.unravel_index(int(np.argmin(d)), d.shape)
        part_rot = np.roll(part, -j, axis=0)
        merged = np.concatenate(
            [merged[: i + 1], part_rot, part_rot[:1], merged[i:]], axis=0
        )
    return [round(float(v), 2) for v in merged.reshape(-1)]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU between ``(N, 4)`` and ``(M, 4)`` XYXY boxes -> ``(N, M)``."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(br - tl, 0, None).prod(-1)
    area_a = (a[:, 2:] - a[:, :2]).clip(0).prod(-1)
    area_b = (b[:, 2:] - b[:, :2]).clip(0).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks of the same shape (1.0 when both are empty)."""
    inter = np.logical_and(a, b).sum()
    union = np.logical_or(a, b).sum()
    return float(inter / union) if union else 1.0


def fill_holes(mask: np.ndarray, max_area: int) -> np.ndarray:
    """Fill holes (background regions not touching the border) up to ``max_area`` pixels."""
    if max_area <= 0 or not mask.any():
        return mask
    inv = (~mask).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    out = mask.copy()
    h, w = mask.shape
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        touches = x == 0 or y == 0 or x + bw == w or y + bh == h
        if not touches and area <= max_area:
            out[labels == i] = True
    return out


def remove_islands(mask: np.ndarray, min_area: int, keep_largest: bool = True) -> np.ndarray:
    """Drop connected parts smaller than ``min_area`` (the largest part is always kept)."""
    if min_area <= 0 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if n <= 2:
        return mask
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = areas >= min_area
    if keep_largest:
        keep[int(np.argmax(areas))] = True
    lut = np.concatenate([[False], keep])
    return lut[labels]
