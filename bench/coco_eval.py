"""The one evaluation of predictions against COCO ground truth, for every benchmark.

Two protocols, both here so that no benchmark scores detections its own way:

- :func:`match` and :class:`Tally`: greedy one-to-one matching at box IoU >= ``IOU_MATCH``
  (proposals by descending score, each takes the unmatched ground-truth instance with the
  highest box IoU), then recall, precision and the mask mIoU of the matched pairs
  (``bench proposals``).
- :func:`coco_scores`: pycocotools' COCOeval, bbox and segm mAP50 / mAP50-95 overall and per
  class, on COCO results made by ``data.coco.result_to_coco`` (``bench train``).
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from data.geometry import box_iou, mask_iou

IOU_MATCH = 0.5


# ------------------------------------------------------------------ greedy matching
def match(gt_boxes: np.ndarray, props: np.ndarray, scores: np.ndarray,
          iou_thr: float = IOU_MATCH) -> list[tuple[int, int]]:
    """Greedy (proposal, gt) pairs at box IoU >= ``iou_thr``, proposals by descending score."""
    if len(gt_boxes) == 0 or len(props) == 0:
        return []
    iou = box_iou(props, gt_boxes)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    pairs = []
    for p in np.argsort(-scores, kind="stable"):
        cand = np.where(taken, -1.0, iou[p])
        g = int(np.argmax(cand))
        if cand[g] >= iou_thr:
            taken[g] = True
            pairs.append((int(p), g))
    return pairs


@dataclass(frozen=True)
class Scores:
    n_gt: int
    n_proposals: int
    n_matched: int
    recall: float
    precision: float
    mask_miou: float


@dataclass
class Tally:
    """Counts over many images: ground-truth instances, proposals, and the mask IoU of each match."""

    n_gt: int = 0
    n_prop: int = 0
    ious: list[float] = field(default_factory=list)

    def add(self, gt_boxes: np.ndarray, gt_masks: Any, boxes: np.ndarray, scores: np.ndarray, mask_of: Any) -> None:
        """One image: ``gt_masks[k]`` the k-th ground-truth mask, ``mask_of(p)`` the p-th proposal's mask."""
        self.n_gt += len(gt_boxes)
        self.n_prop += len(boxes)
        for p, k in match(gt_boxes, boxes, scores):
            self.ious.append(mask_iou(mask_of(p), gt_masks[k]))

    @classmethod
    def merged(cls, tallies: list[Tally]) -> Tally:
        return cls(n_gt=sum(t.n_gt for t in tallies), n_prop=sum(t.n_prop for t in tallies),
                   ious=[v for t in tallies for v in t.ious])

    def scores(self) -> Scores:
        m = len(self.ious)
        return Scores(
            n_gt=self.n_gt,
            n_proposals=self.n_prop,
            n_matched=m,
            recall=m / self.n_gt if self.n_gt else float("nan"),
            precision=m / self.n_prop if self.n_prop else float("nan"),
            mask_miou=float(np.mean(self.ious)) if m else float("nan"),
        )


# ------------------------------------------------------------------ COCOeval
def load_coco_gt(path: str | Path) -> Any:
    """pycocotools' COCO index of a ground-truth file (its chatter kept off stdout)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def coco_scores(gt: Any, results: list[dict]) -> dict[str, Any]:
    """``{"box": ..., "mask": ...}`` from :func:`coco_ap`; zeros when there are no results."""
    return {key: coco_ap(gt, results, iou_type) if results else {"mAP50": 0.0, "mAP50-95": 0.0, "per_class": {}}
            for iou_type, key in (("bbox", "box"), ("segm", "mask"))}


def coco_ap(gt: Any, results: list[dict], iou_type: str) -> dict[str, Any]:
    """COCOeval of ``results`` on ``gt`` (``iou_type`` "bbox" or "segm"): mAP50, mAP50-95 and per class AP."""
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    prec = ev.eval["precision"]  # (T IoUs, R recalls, K classes, A areas, M maxDets)
    per_class = {}
    for k, cid in enumerate(ev.params.catIds):
        p_all, p50 = prec[:, :, k, 0, -1], prec[0, :, k, 0, -1]
        per_class[gt.cats[cid]["name"]] = {
            "AP50": round(float(p50[p50 > -1].mean()), 4) if (p50 > -1).any() else None,
            "AP50-95": round(float(p_all[p_all > -1].mean()), 4) if (p_all > -1).any() else None,
        }
    return {"mAP50": round(float(ev.stats[1]), 4), "mAP50-95": round(float(ev.stats[0]), 4), "per_class": per_class}
