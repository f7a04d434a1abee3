"""Pictures for the normal Gradio screens (Review): annotations drawn over the image."""

from __future__ import annotations

import cv2
import numpy as np

from data.annotations import Annotations


def _rgb(hex_color: str) -> tuple[int, int, int]:
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def draw_annotations(image: np.ndarray, ann: Annotations, colors: dict[int, str]) -> np.ndarray:
    """Accepted masks filled, proposals outlined thin with their id; RGB uint8 out."""
    out = image.copy()
    if ann.mask is None or not len(ann):
        return out
    overlay = out.copy()
    for i in range(len(ann)):
        color = _rgb(colors.get(int(ann.class_id[i]), "#FF00FF"))
        m = ann.mask[i]
        if ann.status[i] == "accepted":
            overlay[m] = color
    out = cv2.addWeighted(overlay, 0.4, out, 0.6, 0)
    for i in range(len(ann)):
        color = _rgb(colors.get(int(ann.class_id[i]), "#FF00FF"))
        contours, _ = cv2.findContours(ann.mask[i].astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, color, 2 if ann.status[i] == "accepted" else 1, cv2.LINE_AA)
        x0, y0 = int(ann.xyxy[i][0]), int(ann.xyxy[i][1])
        tag = f"#{int(ann.ids[i])}" + (" ?" if ann.status[i] == "proposed" else "")
        cv2.putText(out, tag, (x0, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    return out


def zoom_on(
    image: np.ndarray, ann: Annotations, index: int, colors: dict[int, str], side: int = 360, context: float = 1.0
) -> np.ndarray | None:
    """A close-up of annotation ``index``: its box grown by ``context`` times its size on each side
    (at least 24 px), scaled so the longer side is ``side`` px with square pixels (nearest
    neighbour: a defect is judged on its pixels), every outline in the crop drawn at that scale,
    the chosen one thick. RGB uint8 out; None when the box is not in the image."""
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
    if ann.mask is None:
        return out
    order = [i for i in range(len(ann)) if i != index] + [index]  # the chosen one on top
    for i in order:
        m = ann.mask[i][cy0:cy1, cx0:cx1].astype(np.uint8)
        if not m.any():
            continue
        m = cv2.resize(m, size, interpolation=cv2.INTER_NEAREST)
        contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        color = _rgb(colors.get(int(ann.class_id[i]), "#FF00FF"))
        cv2.drawContours(out, contours, -1, color, 3 if i == index else 1, cv2.LINE_AA)
    return out
