"""Tiny projects for the training tests: 96x96 images with a bright square ("chip") and a dark disc ("stain")."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from data.annotations import Annotations
from data.store import Project

CLASSES = ("chip", "stain")


def tiny_image(rng: np.random.Generator, size: int = 96) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """An RGB image and its (class index, mask) instances."""
    img = np.full((size, size, 3), rng.integers(90, 140), dtype=np.uint8)
    img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
    found = []
    x, y = (int(v) for v in rng.integers(8, size // 2 - 16, 2))
    m = np.zeros((size, size), np.uint8)
    cv2.rectangle(m, (x, y), (x + 18, y + 14), 1, -1)
    img[m.astype(bool)] = (235, 235, 225)
    found.append((0, m.astype(bool)))
    cx, cy = (int(v) for v in rng.integers(size // 2 + 10, size - 14, 2))
    m = np.zeros((size, size), np.uint8)
    cv2.circle(m, (cx, cy), 9, 1, -1)
    img[m.astype(bool)] = (30, 25, 20)
    found.append((1, m.astype(bool)))
    return img, found


def make_project(root: Path, n: int = 6, n_good: int = 2, seed: int = 0) -> Project:
    project = Project.create(root, CLASSES)
    ids = [c.id for c in project.classes()]
    rng = np.random.default_rng(seed)
    for i in range(n + n_good):
        img, found = tiny_image(rng)
        good = i >= n
        if good:
            img = np.full_like(img, int(img[0, 0, 0]))
        ok, png = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        assert ok
        content = png.tobytes()
        ann = None
        if not good:
            ann = Annotations.merge([Annotations.from_masks(m, ids[k]) for k, m in found])
        project.add_image(content, f"img_{i:02d}.png", hashlib.sha256(content).hexdigest(), img.shape[1],
                          img.shape[0], ".png", ann, status="good" if good else "done")
    return project


@pytest.fixture(autouse=True)
def _ultralytics_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ultralytics' settings and anything it writes stay out of the repo and the user's home."""
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path_factory.getbasetemp() / "ultralytics"))
    monkeypatch.setenv("DEFECT_STUDIO_WEIGHTS", str(tmp_path_factory.getbasetemp() / "no-weights"))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")


@pytest.fixture
def tiny_project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "proj")
