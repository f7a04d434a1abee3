"""Fixtures for the data tests: small images and projects built in tmp_path."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from data.annotations import Annotations
from data.store import Project


def copy_project_fixture(name: str, tmp_path: Path) -> Path:
    """A copy of ``fixtures/<name>/`` as git keeps it: the database and the images, no empty folders."""
    src = Path(__file__).parent / "fixtures" / name
    root = tmp_path / name
    root.mkdir()
    shutil.copy2(src / "project.db", root / "project.db")
    shutil.copytree(src / "images", root / "images")
    return root


def png_bytes(arr: np.ndarray, mode: str | None = None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, format="PNG") if mode else Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def random_rgb(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def blob_masks(h: int, w: int, seed: int) -> np.ndarray:
    """Three instances: an ellipse, a ring (with a hole) and a mask in two parts."""
    rng = np.random.default_rng(seed)
    ell = np.zeros((h, w), np.uint8)
    cv2.ellipse(ell, (int(w * 0.25), int(h * 0.3)), (6 + int(rng.integers(0, 4)), 5), 20, 0, 360, 1, -1)
    ring = np.zeros((h, w), np.uint8)
    cv2.circle(ring, (int(w * 0.7), int(h * 0.35)), 9, 1, -1)
    cv2.circle(ring, (int(w * 0.7), int(h * 0.35)), 3, 0, -1)
    two = np.zeros((h, w), np.uint8)
    two[int(h * 0.7) : int(h * 0.7) + 5, 4:12] = 1
    two[int(h * 0.75) : int(h * 0.75) + 6, 30:40] = 1
    return np.stack([ell, ring, two]).astype(bool)


def make_project(root: Path, n_done: int = 6, n_good: int = 2, n_unlabeled: int = 1, size=(48, 64)) -> Project:
    """A project with classes a, b, c: done images carry the three blob masks (classes rotate)."""
    project = Project.create(root, classes=["a", "b", "c"])
    ids = [c.id for c in project.classes()]
    h, w = size
    for i in range(n_done + n_good + n_unlabeled):
        content = png_bytes(random_rgb(i, h, w))
        import hashlib

        sha = hashlib.sha256(content).hexdigest()
        ann, status = None, "unlabeled"
        if i < n_done:
            masks = blob_masks(h, w, i)
            ann = Annotations.from_masks(masks, [ids[(i + k) % 3] for k in range(3)], source="manual")
            status = "done"
        elif i < n_done + n_good:
            status = "good"
        project.add_image(content, f"img_{i}.png", sha, w, h, ".png", annotations=ann, status=status)
    return project


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return make_project(tmp_path / "project")
