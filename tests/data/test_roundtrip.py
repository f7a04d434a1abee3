"""Round trips: import(export(project)) gives the same annotations; pycocotools and Ultralytics read the exports."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from data.export import export_project
from data.geometry import masks_to_boxes
from data.importers import import_sources
from data.store import Project
from tests.data.conftest import make_project


def _by_hash(project: Project) -> dict[str, tuple]:
    """sha256 -> (class names, masks, boxes), annotations sorted by class then position for comparison."""
    names = project.class_names()
    out = {}
    for rec in project.images():
        ann = project.annotations(rec.id, statuses=("accepted",))
        order = sorted(range(len(ann)), key=lambda i: (names[int(ann.class_id[i])], *ann.xyxy[i].tolist()))
        out[rec.sha256] = ([names[int(ann.class_id[i])] for i in order], ann.full_masks()[order], ann.xyxy[order], rec.status)
    return out


def _reimport(tmp_path: Path, source: Path) -> Project:
    p = Project.create(tmp_path / "back")
    rep = import_sources(p, [source])
    assert not rep.rejected, rep.rejected
    return p


def _boundary_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Largest distance (pixels, chessboard) from a pixel where the masks differ to the nearest boundary of a."""
    import cv2

    diff = a ^ b
    if not diff.any():
        return 0
    edge = a ^ cv2.erode(a.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    dist = cv2.distanceTransform((~edge).astype(np.uint8), cv2.DIST_C, 3)
    return int(dist[diff].max())


@pytest.fixture
def source(tmp_path) -> Project:
    return make_project(tmp_path / "src", n_done=5, n_good=2, n_unlabeled=1)


@pytest.mark.parametrize(
    "fmt, rle",
    [("coco", False), ("coco", True), ("yolo-segment", False)],
    ids=["coco-polygons", "coco-rle", "yolo-segment"],
)
def test_masks_survive_export_and_import(source, tmp_path, fmt, rle):
    export_project(source, fmt, tmp_path / "out", rle=rle, val_fraction=0.3)
    back = _reimport(tmp_path, tmp_path / "out")
    before, after = _by_hash(source), _by_hash(back)
    assert set(after) == {h for h, v in before.items() if v[3] in ("done", "good")}
    for sha, (names, masks, _boxes, status) in before.items():
        if status == "unlabeled":
            continue
        names2, masks2, _, _ = after[sha]
        assert names2 == names  # every instance comes back once (two-part masks as ONE instance)
        for m, m2 in zip(masks, masks2, strict=True):
            if rle:
                assert np.array_equal(m, m2)  # exact, holes kept
            elif fmt == "coco" or _parts(m) == 1:
                assert np.array_equal(_fill(m), m2)  # exact for the format's own reader, holes filled
            else:  # YOLO holds one polygon an instance: the parts come back joined by a one-pixel bridge
                assert (m2 >= m).all() and _boundary_distance(m, m2) <= 1 + np.hypot(*m.shape)
                assert (m2 & ~m).sum() <= np.hypot(*m.shape)


def _parts(mask: np.ndarray) -> int:
    import cv2

    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def _fill(mask: np.ndarray) -> np.ndarray:
    from data.geometry import fill_holes

    return fill_holes(mask, mask.size)


def test_yolo_detect_gives_the_same_boxes(source, tmp_path):
    export_project(source, "yolo-detect", tmp_path / "out")
    before, after = _by_hash(source), _by_hash(_reimport(tmp_path, tmp_path / "out"))
    for sha, (names, _masks, boxes, status) in before.items():
        if status == "done":
            assert after[sha][0] == names
            assert np.abs(after[sha][2] - boxes).max() < 1e-3  # 6 decimals of a 64 px image


def test_good_images_come_back_as_background(source, tmp_path):
    export_project(source, "yolo-segment", tmp_path / "out")
    back = _reimport(tmp_path, tmp_path / "out")
    assert len(back.images(status="good")) == 2  # an empty label file is a background image
    assert not back.images(status="unlabeled")


@pytest.mark.parametrize("rle", [False, True], ids=["polygons", "rle"])
def test_pycocotools_reads_export_and_scores_ap_one(source, tmp_path, rle):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    export_project(source, "coco", tmp_path / "out", rle=rle, val_fraction=0)
    path = tmp_path / "out" / "annotations" / "instances_train.json"
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(path))
        anns = gt.loadAnns(gt.getAnnIds())
        stored = sorted(float(a) for r in source.images(status="done")
                        for a in source.annotations(r.id, statuses=("accepted",)).area)
        if rle:
            assert sorted(a["area"] for a in anns) == stored  # area is the mask's area, not the box's
        assert all(gt.annToMask(a).sum() == a["area"] for a in anns)  # ... and what the file's polygons draw
        dets = [{**a, "score": 1.0} for a in json.loads(path.read_text())["annotations"]]
        for iou_type in ("segm", "bbox"):
            ev = COCOeval(gt, gt.loadRes(dets), iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            assert ev.stats[0] == pytest.approx(1.0), iou_type


def test_boxes_match_masks_after_roundtrip(source, tmp_path):
    export_project(source, "coco", tmp_path / "out", rle=True)
    back = _by_hash(_reimport(tmp_path, tmp_path / "out"))
    for _names, masks, boxes, _status in back.values():
        assert np.array_equal(masks_to_boxes(masks), boxes)


@pytest.mark.slow
def test_exported_yolo_segment_trains_one_epoch(tmp_path, monkeypatch):
    """Ultralytics reads data.yaml as is, from another working directory."""
    pytest.importorskip("ultralytics")
    from ultralytics import YOLO

    project = make_project(tmp_path / "p", n_done=4, n_good=1, n_unlabeled=0, size=(64, 64))
    export_project(project, "yolo-segment", tmp_path / "ds", val_fraction=0.25)
    monkeypatch.chdir(tmp_path / "p")  # anywhere but the dataset folder
    model = YOLO("yolov8n-seg.yaml")
    model.train(data=str(tmp_path / "ds" / "data.yaml"), epochs=1, imgsz=64, batch=2, workers=0, device="cpu",
                project=str(tmp_path / "runs"), name="t", plots=False, val=True, verbose=False, amp=False)
    assert (tmp_path / "runs" / "t" / "weights" / "last.pt").is_file()
