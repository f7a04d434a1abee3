"""The weight-free segmenter on the real defect photographs (read in place; skipped without them).

Regression guards a little under the figures ``python app.py bench clicks`` reports on these 55
instances (box mIoU 0.729, mIoU after 5 clicks 0.752); the benchmark is the measurement.
"""

from __future__ import annotations

import numpy as np

from annotate.segmenters.base import Prompt
from annotate.segmenters.classical import ClassicalSegmenter
from bench.clicks import load_gt, run_clicks
from data.coco import read_rgb
from data.geometry import mask_iou
from data.geometry import mask_to_box as box_of


def test_classical_on_real_defects_box_and_five_clicks(realdata):
    seg = ClassicalSegmenter()
    box, five, by_class = [], [], {}
    for im in load_gt(realdata / "images", realdata / "ground_truth.json"):
        seg.set_image(read_rgb(im.path), im.path.name)
        for gt, cls in zip(im.masks, im.classes, strict=True):
            box.append(mask_iou(seg.predict(im.path.name, Prompt.make(box=box_of(gt))).masks[0], gt))
            five.append(run_clicks(seg, im.path.name, gt, max_clicks=5)[4])
            by_class.setdefault(cls, []).append(five[-1])
    assert len(box) == 55
    assert np.mean(box) >= 0.72, np.mean(box)
    assert np.mean(five) >= 0.74, {c: round(float(np.mean(v)), 3) for c, v in by_class.items()}
