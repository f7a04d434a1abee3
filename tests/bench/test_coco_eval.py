"""The one evaluation (greedy matching, COCOeval) and the COCO results it scores."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.coco_eval import Tally, coco_scores, load_coco_gt, match
from data.annotations import Annotations
from data.coco import (
    ground_truth_annotation,
    ground_truth_to_coco,
    image_to_coco,
    write_ground_truth,
    write_results,
)
from data.geometry import decode_rle, mask_to_box


def _rect(h: int, w: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_match_is_greedy_by_score_and_one_to_one():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    props = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 26, 30], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.2, 0.9, 0.5, 0.99])
    # The 0.9 proposal takes gt 0 first; the better-placed 0.2 one finds it taken; IoU 0.6 >= 0.5 matches.
    assert match(gt, props, scores) == [(1, 0), (2, 1)]
    assert match(gt, props, scores, iou_thr=0.7) == [(1, 0)]
    assert match(gt[:0], props, scores) == [] and match(gt, props[:0], scores[:0]) == []


def test_tally_scores_and_merge():
    gt_masks = np.stack([_rect(40, 40, 0, 0, 10, 10), _rect(40, 40, 20, 20, 30, 30)])
    gt_boxes = np.stack([mask_to_box(m) for m in gt_masks])
    a, b = Tally(), Tally()
    a.add(gt_boxes, gt_masks, gt_boxes[:1], np.array([1.0]), lambda p: gt_masks[p])
    b.add(gt_boxes[1:], gt_masks[1:], np.zeros((0, 4)), np.zeros(0), lambda p: None)
    s = Tally.merged([a, b]).scores()
    assert (s.n_gt, s.n_proposals, s.n_matched) == (3, 1, 1)
    assert s.recall == pytest.approx(1 / 3) and s.precision == 1.0 and s.mask_miou == 1.0
    assert np.isnan(Tally().scores().recall)


def result_to_coco(image_id, category_id, xyxy, score, mask=None, rounded=False, size=(20, 30)) -> dict:
    """One detection through the container's writer (``Annotations.to_coco_results``)."""
    if mask is None:
        ann = Annotations.from_boxes(*size, [xyxy], category_id, score)
    else:
        ann = Annotations.from_masks(mask, category_id, score)
        ann.xyxy[0] = np.asarray(xyxy, np.float32)
    (item,) = ann.to_coco_results(image_id, rounded=rounded)
    return item


def test_coco_results_round_only_when_asked():
    mask = _rect(20, 30, 3, 4, 9, 12)
    raw = result_to_coco(7, 2, np.array([3.123, 4.5678, 9.0, 12.333], np.float32), np.float32(0.1234567), mask)
    assert list(raw) == ["image_id", "category_id", "bbox", "score", "segmentation"]
    assert raw["image_id"] == 7 and raw["category_id"] == 2
    assert (decode_rle(raw["segmentation"]) == mask).all() and raw["segmentation"]["size"] == [20, 30]
    rounded = result_to_coco(7, 2, [3.123, 4.5678, 9.0, 12.333], 0.1234567, rounded=True)
    assert rounded == {"image_id": 7, "category_id": 2, "bbox": [3.12, 4.57, 5.88, 7.77], "score": 0.12346}


def test_coco_scores_perfect_and_empty(tmp_path):
    h, w = 48, 64
    masks = {1: [_rect(h, w, 5, 5, 20, 25)], 2: [_rect(h, w, 30, 10, 50, 30), _rect(h, w, 2, 30, 12, 44)]}
    images, anns, results = [], [], []
    for image_id, ms in masks.items():
        images.append(image_to_coco(image_id, f"{image_id}.png", w, h))
        for k, m in enumerate(ms):
            cat = 1 + k % 2
            anns.append(ground_truth_annotation(len(anns) + 1, image_id, cat, m))
            results.append(result_to_coco(image_id, cat, mask_to_box(m), 0.9, m))
    doc = ground_truth_to_coco({"description": "t"}, images, anns, ["a", "b"])
    write_ground_truth(tmp_path / "gt.json", doc)
    assert json.loads((tmp_path / "gt.json").read_text()) == doc
    gt = load_coco_gt(tmp_path / "gt.json")
    scores = coco_scores(gt, results)
    for key in ("box", "mask"):
        assert scores[key]["mAP50"] == 1.0 and scores[key]["mAP50-95"] == 1.0
        assert scores[key]["per_class"] == {"a": {"AP50": 1.0, "AP50-95": 1.0}, "b": {"AP50": 1.0, "AP50-95": 1.0}}
    assert coco_scores(gt, []) == {k: {"mAP50": 0.0, "mAP50-95": 0.0, "per_class": {}} for k in ("box", "mask")}


def test_write_results_files(tmp_path):
    images = [image_to_coco(1, "a.png", 30, 20)]
    results = [result_to_coco(1, 1, [1, 2, 3, 4], 0.5, rounded=True)]
    write_results(tmp_path, images, results, ("chip", "stain"))
    assert (tmp_path / "results.json").read_text() == json.dumps(results)
    assert json.loads((tmp_path / "images.json").read_text()) == {
        "images": images, "categories": [{"id": 1, "name": "chip"}, {"id": 2, "name": "stain"}]}
