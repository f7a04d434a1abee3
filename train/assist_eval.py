"""How much a proposer would save the user, measured on the project's validation images.

Proposals cost the user actions as well as saving them: a right one is reviewed instead of drawn,
a wrong one is rejected. ``bench loop`` counts them (sample, seed 0): an instance drawn from a box
took 5.75 actions, one from a proposal 3.8 (of which a wrong class 1), and a rejection is 1. So
a proposal that matches a labelled instance (mask IoU at least :data:`MATCH_IOU`) is worth
:data:`GAIN` actions (one less when its class is wrong) and one that matches nothing costs 1.

:func:`check` runs a proposer on the validation images of a round, matches its proposals to the
accepted labels there (one to one, greedy by IoU), and picks the score threshold that saves the
most actions (:attr:`ProposalCheck.benefit`); ties go to the higher threshold (fewer proposals).
A proposer whose best threshold saves nothing is not worth proposing with. The same figure
compares a new assist model with the proposer it would replace (the model before it, or the
anomaly proposer before the first model) on the same images, and names the validation images
where it missed a defect or raised a false one.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from annotate.autolabel import add_masks
from data.annotations import Annotations
from data.geometry import box_iou
from data.store import Project
from train import jobs

MATCH_IOU = 0.5
GAIN = 2.0  # actions a right proposal saves against drawing the instance (bench loop: 5.75 drawn, 3.8 reviewed)


@dataclass(frozen=True)
class ImageCheck:
    image_id: int
    name: str
    found: int  # labelled instances a proposal matched (at the chosen threshold)
    missed: int  # labelled instances no proposal matched
    false: int  # proposals that matched nothing


@dataclass(frozen=True)
class ProposalCheck:
    min_score: float  # the chosen threshold (proposals at or above it)
    benefit: float  # actions saved over the validation images at that threshold
    found: int
    missed: int
    false: int
    images: list[ImageCheck] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ProposalCheck:
        return cls(**{**doc, "images": [ImageCheck(**i) for i in doc.get("images", [])]})


NOTHING = ProposalCheck(math.inf, 0.0, 0, 0, 0)


def run_val_images(project: Project, run_id: str) -> list[int]:
    """Ids of the project images in a run's validation split (its snapshot names carry the image's
    hash: ``<stem>_<first 10 hex of sha256>.<ext>``)."""
    folder = Path(jobs.get(project, run_id).run_dir) / "dataset" / "images" / "val"
    if not folder.is_dir():
        return []
    prefixes = {p.stem.rsplit("_", 1)[-1] for p in folder.iterdir() if p.is_file()}
    return [r.id for r in project.images() if r.sha256[:10] in prefixes]


def _iou(props: Annotations, gt: Annotations) -> np.ndarray:
    if not len(props) or not len(gt):
        return np.zeros((len(props), len(gt)))
    iou = box_iou(props.xyxy, gt.xyxy)
    for i, j in zip(*np.nonzero(iou > 0), strict=False):  # masks only where the boxes touch
        iou[i, j] = props.iou(i, gt, j)
    return iou


def _match(iou: np.ndarray, rows: np.ndarray) -> dict[int, int]:
    """Greedy one-to-one by IoU among the proposals ``rows``: proposal -> instance."""
    pairs = sorted(((iou[i, j], i, j) for i in rows for j in range(iou.shape[1]) if iou[i, j] >= MATCH_IOU),
                   reverse=True)
    out: dict[int, int] = {}
    taken: set[int] = set()
    for _, i, j in pairs:
        if i not in out and j not in taken:
            out[int(i)] = int(j)
            taken.add(j)
    return out


def check(project: Project, proposer, segmenter, image_ids: list[int], class_id: int | None = None) -> ProposalCheck:
    """The proposer on ``image_ids`` against their accepted labels, at its best threshold.

    ``class_id``: the class given to a class-agnostic proposer's proposals (as auto-label does)."""
    seen = []  # per image: (record, proposals, labels, IoU matrix)
    for image_id in image_ids:
        rec = project.image(image_id)
        image = project.load_image(rec.id)
        props = proposer.propose(image, rec.sha256)
        if class_id is not None and not proposer.predicts_classes:
            props.class_id[:] = class_id
        props = add_masks(props, image, rec.sha256, segmenter, proposer.keeps_masks)
        gt = project.annotations(rec, statuses=("accepted",))
        seen.append((rec, props, gt, _iou(props, gt)))
    scores = sorted({float(s) for _, p, _, _ in seen for s in p.confidence if not np.isnan(s)}, reverse=True)
    best = None
    for t in [math.inf, *scores]:  # from no proposal at all down to every one
        result = _at(seen, t)
        if best is None or result.benefit > best.benefit:
            best = result
    return best if best is not None else NOTHING


def _at(seen, t: float) -> ProposalCheck:
    images, benefit = [], 0.0
    for rec, props, gt, iou in seen:
        conf = props.confidence
        rows = np.zeros(0, dtype=int) if math.isinf(t) else np.nonzero((conf >= t) | np.isnan(conf))[0]
        matched = _match(iou, rows)
        right = sum(int(props.class_id[i]) == int(gt.class_id[j]) for i, j in matched.items())
        benefit += GAIN * len(matched) - (len(matched) - right) - (len(rows) - len(matched))
        images.append(ImageCheck(rec.id, rec.name, len(matched), len(gt) - len(matched), len(rows) - len(matched)))
    return ProposalCheck(t, round(benefit, 3), sum(i.found for i in images), sum(i.missed for i in images),
                         sum(i.false for i in images), images)


def to_label_next(c: ProposalCheck, limit: int = 5) -> str:
    """The validation images where the proposer missed a defect or raised a false one."""
    bad = [i for i in c.images if i.missed or i.false][:limit]
    if not bad:
        return ""
    return "; ".join(f"{i.name}: {i.missed} missed, {i.false} false" for i in bad)
