"""Fixtures for the UI tests: a small project and a fake segmenter at the seam."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from annotate.segmenters.base import Prediction, Prompt, Segmenter
from data.store import Project


class FakeSegmenter(Segmenter):
    """Three nested discs around the last positive point (or the box, filled): predictable masks."""

    name = "fake"
    device = "cpu"
    is_fallback = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.shapes: dict[str, tuple[int, int]] = {}
        self.calls: list[tuple[str, Prompt]] = []

    def set_image(self, image: np.ndarray, key: str) -> None:
        with self._lock:
            self.shapes[key] = image.shape[:2]

    def is_ready(self, key: str) -> bool:
        return key in self.shapes

    def predict(self, key: str, prompt: Prompt, multimask: bool | None = None) -> Prediction:
        t0 = time.perf_counter()
        h, w = self.shapes[key]
        self.calls.append((key, prompt))
        yy, xx = np.mgrid[:h, :w]
        if prompt.box is not None:
            x0, y0, x1, y1 = (int(v) for v in prompt.box)
            m = np.zeros((h, w), bool)
            m[y0:y1, x0:x1] = True
            return Prediction(m[None], np.array([0.9], np.float32), None, (time.perf_counter() - t0) * 1000)
        pos = prompt.points[prompt.labels == 1]
        x, y = pos[-1] if len(pos) else prompt.points[-1]
        masks = np.stack([(xx - x) ** 2 + (yy - y) ** 2 <= r * r for r in (4, 8, 12)])
        return Prediction(masks, np.array([0.9, 0.8, 0.7], np.float32), None, (time.perf_counter() - t0) * 1000)


def add_image(project: Project, name: str, value: int, size: tuple[int, int] = (60, 80)) -> int:
    import hashlib

    import cv2

    img = np.full((*size, 3), value, np.uint8)
    ok, buf = cv2.imencode(".png", img)
    content = buf.tobytes()
    return project.add_image(content, name, hashlib.sha256(content).hexdigest(), size[1], size[0], ".png")[0]


@pytest.fixture()
def project(tmp_path) -> Project:
    p = Project.create(tmp_path / "proj", classes=["scratch", "stain"])
    for k in range(3):
        add_image(p, f"img{k}.png", 40 + 60 * k)
    return p


@pytest.fixture()
def fake() -> FakeSegmenter:
    return FakeSegmenter()
