"""Opening a project of schema v2 (full-size mask RLE) upgrades it to crops in place (data/store.py).

The fixture ``fixtures/project_v2/`` was written by the code of schema v2
(``fixtures/make_project_v2.py``): 2 images of 64x48, classes chip/stain; on image 1 four accepted
masks (a ring with a hole, two parts, one touching the top and right edges, one pixel) and a
box-only proposal with fractional coordinates; on image 2 a proposed and a rejected mask.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from data.annotations import Annotations
from data.store import SCHEMA_VERSION, Project
from tests.data.conftest import copy_project_fixture

FIXTURE = Path(__file__).parent / "fixtures" / "project_v2"
H, W = 48, 64


def _expected() -> list[np.ndarray]:
    """The masks make_project_v2.py stored on image 1, in id order."""
    ring = np.zeros((H, W), bool)
    ring[10:20, 12:30] = True
    ring[13:17, 18:24] = False
    two = np.zeros((H, W), bool)
    two[30:34, 5:9] = True
    two[40:44, 50:60] = True
    edge = np.zeros((H, W), bool)
    edge[0:6, 58:64] = True
    one = np.zeros((H, W), bool)
    one[25, 33] = True
    return [ring, two, edge, one]


@pytest.fixture
def v2(tmp_path) -> Path:
    return copy_project_fixture("project_v2", tmp_path)


def _rows(root: Path) -> list[tuple]:
    db = sqlite3.connect(root / "project.db")
    try:
        return db.execute("SELECT id, image_id, class_id, x0, y0, x1, rle, crop_x, crop_y FROM annotations ORDER BY id").fetchall()
    finally:
        db.close()


def test_the_fixture_is_a_v2_project_with_full_size_rle(v2):
    db = sqlite3.connect(v2 / "project.db")
    assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0] == "2"
    sizes = {tuple(json.loads(r[0])["size"]) for r in db.execute("SELECT rle FROM annotations WHERE rle IS NOT NULL")}
    assert sizes == {(H, W)}
    db.close()


def test_a_v2_project_upgrades_to_crops_and_reads_back_the_same_masks(v2):
    p = Project(v2)
    assert p.schema_version == SCHEMA_VERSION == 3
    ann = p.annotations(1, statuses=("accepted", "proposed"))
    assert ann.ids.tolist() == [1, 2, 3, 4, 5] and ann.shape == (H, W)
    assert ann.has_mask.tolist() == [True, True, True, True, False]
    for i, mask in enumerate(_expected()):
        assert np.array_equal(ann.full_mask(i), mask), i
        crop, x0, y0 = ann.crop(i)
        assert crop.shape == tuple(int(v) for v in np.ptp(np.argwhere(mask), axis=0) + 1)  # cut to the mask's box
    assert ann.xyxy[4].tolist() == [2.5, 3.25, 9.75, 11.0] and ann.confidence[4] == pytest.approx(0.7)
    assert list(ann.source) == ["manual"] * 4 + ["anomaly"]
    assert ann.class_id.tolist() == [1, 2, 1, 2, 2]
    other = p.annotations(2, statuses=("proposed", "rejected"))
    assert list(other.status) == ["proposed", "rejected"] and other.confidence.tolist() == pytest.approx([0.42, 0.3])
    prop = np.zeros((H, W), bool)
    prop[20:30, 40:47] = True
    assert all(np.array_equal(other.full_mask(i), prop) for i in range(2))
    # Stored as crops: every RLE is the size of its mask's box, at its origin.
    for r in _rows(v2):
        if r[6] is not None:
            h, w = json.loads(r[6])["size"]
            assert (h, w) != (H, W) or (r[7], r[8]) == (0, 0)


def test_an_upgraded_v2_project_opens_again_unchanged_and_keeps_working(v2):
    Project(v2)
    before = _rows(v2)
    p = Project(v2)
    assert _rows(v2) == before
    new = np.zeros((1, H, W), bool)
    new[0, 40:47, 0:3] = True
    (nid,) = p.add_annotations(2, Annotations.from_masks(new, 1))
    _, got = p.annotation(nid)
    assert np.array_equal(got.full_mask(0), new[0]) and got.xyxy[0].tolist() == [0, 40, 3, 47]


def test_exports_of_the_upgraded_project_are_those_of_its_masks(v2, tmp_path):
    from data.export import export_project

    p = Project(v2)
    export_project(p, "coco", tmp_path / "out", val_fraction=0, rle=True)
    doc = json.loads((tmp_path / "out" / "annotations" / "instances_train.json").read_text())
    from data.geometry import decode_rle, encode_rle

    got = [decode_rle(a["segmentation"]) for a in sorted(doc["annotations"], key=lambda a: a["id"])]
    masks = _expected()
    assert len(got) == 4 and all(np.array_equal(g, m) for g, m in zip(got, masks, strict=True))
    assert [a["segmentation"] for a in sorted(doc["annotations"], key=lambda a: a["id"])] == [encode_rle(m) for m in masks]
