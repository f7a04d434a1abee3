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
