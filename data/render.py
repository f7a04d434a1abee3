"""Every picture the app draws, from one set of primitives and one palette (:mod:`data.colors`).

- :func:`draw_annotations`: the Label/Review overlay of an :class:`~data.annotations.Annotations`
  container (accepted masks filled, every mask outlined, its id tagged; proposals thin, ``?``).
- :func:`zoom_on`: the Review close-up of one annotation.
- :func:`draw_predictions`: the Predict picture (masks filled, boxes, ``name score`` tags) of
  anything shaped like :class:`Detections` (``train.predict.RawPrediction`` is one).

Masks are read as the container keeps them, crops inside their boxes (a box-only row as its
filled box): filled through :class:`MaskSet` ``paint``, outlined per crop with the contours
shifted to the crop's origin, cut to the close-up through ``Annotations.window``. Nothing here
makes a mask full size.

The primitives: :func:`class_rgb` (a class's colour), :func:`fill_masks` (masks filled at an
alpha), :func:`outline` (a mask's contours), :func:`outline_crop` (the same, of a crop),
:func:`id_tag`, :func:`box` and :func:`label_tag`. Everything is RGB ``uint8``; nothing here
knows about models or training.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, TypeVar

import cv2
import numpy as np

from data.annotations import Annotations
from data.colors import UNKNOWN, hex_to_rgb, palette_color
from data.geometry import clip_crop

RGB = tuple[int, int, int]
K = TypeVar("K")

FONT = cv2.FONT_HERSHEY_SIMPLEX
OVERLAY_ALPHA = 0.4  # accepted masks in the Label/Review overlay
PREDICTION_ALPHA = 0.45  # masks in the Predict picture


class MaskSet(Protocol):
    """``N`` instance masks that can paint themselves (:class:`~data.annotations.Annotations` is one)."""

    def __len__(self) -> int: ...

    def paint(self, image: np.ndarray, i: int, value: object) -> None:
        """Set the pixels of mask ``i`` in ``image`` to ``value``."""


class Detections(Protocol):
    """What :func:`draw_predictions` reads: ``xyxy (N, 4)``, ``scores (N,)``, ``classes (N,)``
    (indices into ``names``), ``masks`` (a :class:`MaskSet`, or None), and the ``height``/``width``
    of the image they were predicted on. Full ``(N, H, W)`` masks are given as
    ``Annotations.from_masks(masks, class_ids)``."""

    height: int
    width: int
    xyxy: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    names: tuple[str, ...]

    @property
    def masks(self) -> MaskSet | None: ...


# ------------------------------------------------------------------ primitives
def class_rgb(colors: Mapping[K, str] | None, key: K, default: str = UNKNOWN) -> RGB:
    """The colour of class ``key`` (``#RRGGBB`` in ``colors``), else ``default``."""
    hexa = colors.get(key) if colors else None
    return hex_to_rgb(hexa or default)


def fill_masks(image: np.ndarray, masks: MaskSet, colors: Sequence[RGB | None], alpha: float) -> np.ndarray:
    """``image`` with mask ``i`` filled in ``colors[i]`` (None: not filled) at ``alpha``; a new array."""
    overlay = image.copy()
    for i, color in enumerate(colors):
        if color is not None:
            masks.paint(overlay, i, color)
    return cv2.addWeighted(overlay, alpha, image, 1 - alpha, 0)


def outline(image: np.ndarray, mask: np.ndarray, color: RGB, thickness: int,
            chain: int = cv2.CHAIN_APPROX_SIMPLE) -> None:
    """Draw the outer contours of ``mask`` (bool or uint8 ``(H, W)``) on ``image``, anti-aliased."""
    contours, _ = cv2.findContours(mask.astype(np.uint8, copy=False), cv2.RETR_EXTERNAL, chain)
    cv2.drawContours(image, contours, -1, color, thickness, cv2.LINE_AA)


def outline_crop(image: np.ndarray, crop: np.ndarray, x0: int, y0: int, color: RGB, thickness: int) -> None:
    """:func:`outline` of a mask kept as a crop whose top-left pixel is ``(x0, y0)`` in ``image``.

    The part of the crop inside the image is traced with a 1-pixel border of background (as
    OpenCV sees the edge of a full-size mask) and its contours drawn shifted to the crop's place:
    the same pixels as outlining the full-size mask.
    """
    crop, x0, y0 = clip_crop(np.asarray(crop, dtype=bool), int(x0), int(y0), image.shape[0], image.shape[1])
    if not crop.any():
        return
    padded = np.pad(crop.astype(np.uint8), 1)
    contours, _ = cv2.findContours(padded, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x0 - 1, y0 - 1))
    cv2.drawContours(image, contours, -1, color, thickness, cv2.LINE_AA)


def id_tag(image: np.ndarray, x0: int, y0: int, text: str, color: RGB) -> None:
    """A plain coloured tag just above ``(x0, y0)`` (kept inside the top edge)."""
    cv2.putText(image, text, (x0, max(12, y0 - 4)), FONT, 0.5, color, 1, cv2.LINE_AA)


def box(image: np.ndarray, xyxy: Sequence[float], color: RGB, thickness: int) -> tuple[int, int, int, int]:
    """Draw a box (corners rounded to pixels); returns the rounded corners."""
    x0, y0, x1, y1 = (int(round(v)) for v in xyxy)
    cv2.rectangle(image, (x0, y0), (x1, y1), color, thickness)
    return x0, y0, x1, y1


def label_tag(image: np.ndarray, x0: int, y0: int, text: str, color: RGB, scale: float) -> None:
    """Black ``text`` on a ``color`` tag whose bottom-left is at ``(x0, y0)`` (kept inside the top edge)."""
    (tw, th), base = cv2.getTextSize(text, FONT, scale, 1)
    ty = max(th + base, y0)
    cv2.rectangle(image, (x0, ty - th - base), (x0 + tw, ty), color, -1)
    cv2.putText(image, text, (x0, ty - base), FONT, scale, (0, 0, 0), 1, cv2.LINE_AA)


def line_width(height: int, width: int) -> int:
    """Box line width for an image of this size: 1 px per 400 px of its longer side, at least 1."""
    return max(1, round(max(height, width) / 400))


# ------------------------------------------------------------------ pictures
def draw_annotations(image: np.ndarray, ann: Annotations, colors: Mapping[int, str]) -> np.ndarray:
    """Accepted masks filled, proposals outlined thin with their id; ``colors``: ``#RRGGBB`` by
    class id (others :data:`data.colors.UNKNOWN`). ``image`` is ``ann``'s, ``(H, W, 3)``; masks are
    read from their crops (a box-only row as its filled box). RGB uint8 out, ``image`` untouched."""
    out = image.copy()
    if not len(ann):
        return out
    rgb = [class_rgb(colors, int(c)) for c in ann.class_id]
    accepted = [ann.status[i] == "accepted" for i in range(len(ann))]
    out = fill_masks(out, ann, [c if a else None for c, a in zip(rgb, accepted, strict=True)], OVERLAY_ALPHA)
    for i in range(len(ann)):
        crop, x0, y0 = ann.crop(i)
        outline_crop(out, crop, x0, y0, rgb[i], 2 if accepted[i] else 1)
        tag = f"#{int(ann.ids[i])}" + (" ?" if ann.status[i] == "proposed" else "")
        id_tag(out, int(ann.xyxy[i][0]), int(ann.xyxy[i][1]), tag, rgb[i])
    return out


def zoom_on(
    image: np.ndarray, ann: Annotations, index: int, colors: Mapping[int, str], side: int = 360, context: float = 1.0
) -> np.ndarray | None:
    """A close-up of annotation ``index``: its box grown by ``context`` times its size on each side
    (at least 24 px), scaled so the longer side is ``side`` px with square pixels (nearest
    neighbour: a defect is judged on its pixels), every outline in the crop drawn at that scale,
    the chosen one thick. Each mask is read only inside the close-up's window (``ann.window``; a
    box-only row as its filled box). RGB uint8 out; None when the box is not in the image."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in ann.xyxy[index])
    if not np.isfinite([x0, y0, x1, y1]).all():
        return None
    g = max(24.0, context * max(x1 - x0, y1 - y0))
    cx0, cy0 = max(0, int(np.floor(x0 - g))), max(0, int(np.floor(y0 - g)))
    cx1, cy1 = min(w, int(np.ceil(x1 + g))), min(h, int(np.ceil(y1 + g)))
    if cx1 <= cx0 or cy1 <= cy0:
        return None  # the box lies outside the image: nothing to show close up
    crop = image[cy0:cy1, cx0:cx1]
    s = side / max(crop.shape[:2])
    size = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
    out = np.ascontiguousarray(cv2.resize(crop, size, interpolation=cv2.INTER_NEAREST if s >= 1 else cv2.INTER_AREA))
    order = [i for i in range(len(ann)) if i != index] + [index]  # the chosen one on top
    for i in order:
        m = ann.window(i, cx0, cy0, cx1, cy1).astype(np.uint8)
        if not m.any():
            continue
        m = cv2.resize(m, size, interpolation=cv2.INTER_NEAREST)
        outline(out, m, class_rgb(colors, int(ann.class_id[i])), 3 if i == index else 1, cv2.CHAIN_APPROX_NONE)
    return out


def prediction_colors(names: Sequence[str], colors: Mapping[str, str] | None) -> list[RGB]:
    """The colour of each model class: ``colors[name]`` (the project class it maps to), else the
    palette's colour at its index."""
    return [class_rgb(colors, name, palette_color(k)) for k, name in enumerate(names)]


def draw_predictions(image: np.ndarray, det: Detections, colors: Mapping[str, str] | None = None,
                     alpha: float = PREDICTION_ALPHA) -> np.ndarray:
    """Masks filled at ``alpha`` (painted by ``det.masks``, never made full size), boxes and
    ``name score`` tags; ``colors``: ``#RRGGBB`` by class name (:func:`prediction_colors`).
    RGB uint8 out, ``image`` untouched."""
    out = image.copy()
    cols = prediction_colors(det.names, colors)
    if det.masks is not None and len(det.xyxy):
        out = fill_masks(out, det.masks, [cols[c] for c in det.classes], alpha)
    thick = line_width(det.height, det.width)
    for xyxy, score, c in zip(det.xyxy, det.scores, det.classes, strict=False):
        x0, y0, _, _ = box(out, xyxy, cols[c], thick)
        label_tag(out, x0, y0, f"{det.names[c]} {score:.2f}", cols[c], 0.4 * thick)
    return out
