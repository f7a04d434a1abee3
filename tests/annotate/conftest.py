"""Shared fixtures for the annotate tests: synthetic defect images with known masks."""

from __future__ import annotations

import cv2
import numpy as np
import pytest


def blob_image(h: int, w: int, cx: int, cy: int, r: int, seed: int = 0, dark: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A textured part with a lighting gradient and one irregular blob defect; (rgb, mask)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = 120 + 30 * xx / w + rng.normal(0, 4, (h, w))
    mask = np.zeros((h, w), np.uint8)
    pts = []
    for a in np.linspace(0, 2 * np.pi, 12, endpoint=False):
        rr = r * rng.uniform(0.7, 1.2)
        pts.append([cx + rr * np.cos(a), cy + rr * np.sin(a)])
    cv2.fillPoly(mask, [np.round(pts).astype(np.int32)], 1)
    m = mask.astype(bool)
    base[m] += -45 if dark else 45
    g = np.clip(base, 0, 255).astype(np.uint8)
    return np.stack([g, g, g], -1), m


@pytest.fixture
def blob():
    return blob_image(240, 360, 200, 110, 30)
