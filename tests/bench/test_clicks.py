from __future__ import annotations

import json

import cv2
import numpy as np

from annotate.segmenters.classical import ClassicalSegmenter
from bench.clicks import load_gt, next_click, noc, run_bench
from data.geometry import encode_rle
from tests.annotate.conftest import blob_image


def test_first_click_is_the_deepest_interior_point():
    gt = np.zeros((50, 80), bool)
    gt[10:30, 20:60] = True
    x, y, label = next_click(gt, None)
    assert label == 1 and 10 <= y < 30 and 20 <= x < 60
    assert abs(y - 19.5) <= 1 and 29 <= x <= 50  # centre line of the rectangle


def test_next_click_goes_to_larger_error():
    gt = np.zeros((60, 60), bool)
    gt[10:50, 10:50] = True
    pred = gt.copy()
    pred[10:50, 10:20] = False  # missed strip, 10 wide
    pred[0:5, 0:60] = True  # false strip, 5 high
    x, y, label = next_click(gt, pred)
    assert label == 1 and 10 <= x < 20
    pred2 = gt.copy()
    pred2[52:60, :] = True  # only a false region
    assert next_click(gt, pred2)[2] == 0
    assert next_click(gt, gt) is None


def test_noc():
    assert noc([0.5, 0.86, 0.91], 0.85, 20) == 2
    assert noc([0.5, 0.6], 0.85, 20) == 20


def test_bench_runs_end_to_end(tmp_path):
    (tmp_path / "images").mkdir()
    coco = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "d"}]}
    for i in range(2):
        rgb, m = blob_image(160, 220, 100 + 20 * i, 80, 25, seed=i)
        cv2.imwrite(str(tmp_path / "images" / f"{i}.png"), rgb[..., ::-1])
        coco["images"].append({"id": i + 1, "file_name": f"{i}.png", "width": 220, "height": 160})
        coco["annotations"].append({"id": i + 1, "image_id": i + 1, "category_id": 1,
                                    "segmentation": encode_rle(m), "iscrowd": 0})
    (tmp_path / "gt.json").write_text(json.dumps(coco))
    rep = run_bench(ClassicalSegmenter(), load_gt(tmp_path / "images", tmp_path / "gt.json"), max_clicks=5,
                    progress=False)
    assert rep.n_instances == 2
    assert rep.box_miou > rep.baseline_filled_box["box_miou"]
    assert 1 <= rep.noc85 <= 5
    json.loads(rep.to_json())
