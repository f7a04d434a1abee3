"""Review rules for proposals: accept, reject, change class, refine, accept all above a score.

The rules, each one transaction:
- Only ``proposed`` annotations are accepted or rejected by a review action; an accepted
  annotation is never overwritten or flipped by one (the user edits it explicitly instead).
- A proposal never covers an accepted annotation, of any class: one that overlaps an accepted
  annotation at IoU above 0.5 is never added (:func:`duplicate_mask`; the user's decision on that
  spot stands) and, if one slipped in before the accepted one existed, accepting it rejects it
  instead.
- A rejected proposal is not proposed again by the same source (same class, IoU above 0.5).
- Refining replaces the mask (and box); the source becomes the tool that drew it
  (``manual`` or the segmenter's registry name) and the annotation is accepted.
- Only accepted annotations train and export (the exporter's rule, unless asked).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.annotations import Annotations
from data.errors import InputError
from data.geometry import box_iou

DUPLICATE_IOU = 0.5


@dataclass(frozen=True)
class ReviewResult:
    changed: int  # annotations whose status changed as asked
    dropped_duplicates: int = 0  # proposals rejected because an accepted one already covers them
    skipped: int = 0  # not proposals (accepted or rejected already): left as they were


def _iou_matrix(a: Annotations, b: Annotations) -> np.ndarray:
    """IoU between every pair: of the masks (crops) where both rows have one, else of the boxes."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    iou = box_iou(a.xyxy, b.xyxy)
    if a.shape != b.shape:
        return iou
    both = a.has_mask[:, None] & b.has_mask[None, :]
    for i, j in zip(*np.nonzero((iou > 0) & both), strict=False):  # masks only where boxes touch
        iou[i, j] = a.iou(i, b, j)
    return iou


def duplicate_mask(new: Annotations, existing: Annotations) -> np.ndarray:
    """Which of ``new`` (proposals) must not be added given what the image already holds.

    Dropped: overlapping an accepted annotation of any class (any source), or a proposed or
    rejected one of the same class from the same source, at IoU above 0.5.
    """
    drop = np.zeros(len(new), dtype=bool)
    if len(new) == 0 or len(existing) == 0:
        return drop
    iou = _iou_matrix(new, existing)
    same_class = new.class_id[:, None] == existing.class_id[None, :]
    accepted = (existing.status == "accepted")[None, :]
    same_source = new.source[:, None] == existing.source[None, :]
    blocks = (accepted | (same_class & same_source)) & (iou > DUPLICATE_IOU)
    return blocks.any(1)


# ------------------------------------------------------------------ actions
def _load(project, annotation_ids: list[int]) -> list[tuple[int, Annotations]]:
    return [project.annotation(int(i)) for i in annotation_ids]


def accept(project, annotation_ids: list[int]) -> ReviewResult:
    """Accept proposals; one that covers an accepted annotation (any class) is rejected instead."""
    changed = dropped = skipped = 0
    with project.transaction():
        for image_id, ann in _load(project, annotation_ids):
            if ann.status[0] != "proposed":
                skipped += 1
                continue
            accepted = project.annotations(image_id, statuses=("accepted",))
            if _overlaps_accepted(ann, accepted):
                project.set_annotation_status([int(ann.ids[0])], "rejected")
                dropped += 1
                continue
            project.update_annotation(int(ann.ids[0]), status="accepted")  # the store un-marks a good image
            changed += 1
    return ReviewResult(changed, dropped, skipped)


def _overlaps_accepted(ann: Annotations, accepted: Annotations) -> bool:
    if not len(accepted):
        return False
    return bool((_iou_matrix(ann, accepted)[0] > DUPLICATE_IOU).any())


def reject(project, annotation_ids: list[int]) -> ReviewResult:
    """Reject proposals (accepted annotations are left alone: delete them explicitly)."""
    changed = skipped = 0
    with project.transaction():
        for _, ann in _load(project, annotation_ids):
            if ann.status[0] != "proposed":
                skipped += 1
                continue
            project.set_annotation_status([int(ann.ids[0])], "rejected")
            changed += 1
    return ReviewResult(changed, 0, skipped)


def change_class(project, annotation_id: int, class_id: int) -> None:
    """Move one annotation (proposed or accepted) to another class; its status stays."""
    project.get_class(class_id)  # NotFoundError with a clear message
    project.update_annotation(int(annotation_id), class_id=int(class_id))


def refine(project, annotation_id: int, shape: Annotations, source: str = "manual") -> None:
    """Replace the mask by ``shape``'s (a one-row container, refined with clicks); the annotation
    becomes accepted, drawn by ``source``."""
    image_id, _ = project.annotation(int(annotation_id))
    rec = project.image(image_id)
    if shape.shape != (rec.height, rec.width):
        raise InputError(f"refined mask is for a {shape.width}x{shape.height} image, the image is "
                         f"{rec.width}x{rec.height}.")
    project.update_annotation(int(annotation_id), shape=shape, source=source, status="accepted")  # un-marks good


def accept_above(project, min_score: float, image_id: int | None = None) -> ReviewResult:
    """Accept every proposal scoring at least ``min_score``, on one image or the whole project."""
    images = [project.image(image_id)] if image_id is not None else project.images()
    ids = []
    for rec in images:
        ann = project.annotations(rec.id, statuses=("proposed",), with_masks=False)
        keep = ~np.isnan(ann.confidence) & (ann.confidence >= float(min_score))
        ids.extend(int(i) for i in ann.ids[keep])
    return accept(project, ids) if ids else ReviewResult(0)
