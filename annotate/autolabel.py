"""Batch auto-label: run a proposer (and a segmenter for the masks) over a project's images.

Headless: no UI redraw per image; the UI polls ``progress`` and sets ``cancel``.

- Proposals are stored with status ``proposed``, the proposer's registry name as source,
  and its score; the review rules (:mod:`annotate.review`) decide what is a duplicate.
- Resume: each image's proposals and the mark "done by this proposer" are written in one
  transaction (the visited log, :mod:`data.autolabel_log`), so a re-run after a crash or a
  cancel skips the images already done by the same proposer (``redo=True`` runs them again;
  duplicates are still never added).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from annotate.proposers.base import Proposer
from annotate.review import duplicate_mask
from annotate.segmenters.base import Prompt
from data import autolabel_log
from data.annotations import Annotations
from data.errors import InputError
from data.geometry import crop_mask

Select = Literal["unlabeled", "all"]


@dataclass(frozen=True)
class AutolabelReport:
    proposer: str
    segmenter: str | None
    images_total: int  # selected images
    images_done: int  # proposed on in this run
    images_skipped: int  # already done by this proposer in an earlier run
    proposals_added: int
    dropped_duplicates: int
    dropped_low_score: int
    images_per_s: float
    detect_s: float
    mask_s: float
    cancelled: bool


def add_masks(
    props: Annotations, image: np.ndarray, key: str, segmenter, keeps_masks: bool
) -> Annotations:
    """Masks for proposals: the proposer's own, or the segmenter's from each box.

    The segmenter replaces the proposer's masks unless the proposer ``keeps_masks`` (a trained
    segmentation model). Without a segmenter, box-only proposals stay box-only.
    """
    if segmenter is None or len(props) == 0 or (props.has_mask.all() and keeps_masks):
        return props
    segmenter.set_image(image, key)
    crops, origins = [], []
    for i, box in enumerate(props.xyxy):
        pred = segmenter.predict(key, Prompt.make(box=box), multimask=False)
        m = pred.masks[0] if len(pred.masks) else None
        if m is None or not m.any():  # segmenter found nothing: keep what the proposer had (or the box)
            c, x0, y0 = props.crop(i)
        else:
            c, x0, y0 = crop_mask(m)
        crops.append(c)
        origins.append((x0, y0))
    out = Annotations.from_crops(props.height, props.width, crops, origins, props.class_id, props.confidence)
    return out.with_data(props.data)


def select_images(project, select: Select) -> list:
    """``unlabeled``: images not yet marked done or good; ``all``: every image except ``good`` ones
    (the user said they are defect-free)."""
    if select == "unlabeled":
        return project.images(status="unlabeled")
    if select == "all":
        return [r for r in project.images() if r.status != "good"]
    raise InputError(f"--select must be 'unlabeled' or 'all', not '{select}'.")


def done_images(project, proposer_name: str) -> set[int]:
    """Ids of the images ``proposer_name`` already proposed on (skipped by a re-run)."""
    return autolabel_log.visited(project, proposer_name)


def autolabel(
    project,
    proposer: Proposer,
    segmenter=None,
    select: Select = "unlabeled",
    min_score: float = 0.0,
    class_id: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    cancel: threading.Event | None = None,
    redo: bool = False,
    order: list[int] | None = None,
) -> AutolabelReport:
    """Propose on the selected images; returns counts and the detection / mask time split.

    ``class_id`` overrides the proposals' class (the anomaly proposer's "class the user picks").
    ``order``: image ids to propose on first (the rest follow in project order).
    ``progress(done, total)`` is called after each image; setting ``cancel`` stops after the
    image in flight (everything done so far is kept and a re-run resumes).
    """
    if class_id is not None:
        project.get_class(class_id)
    images = select_images(project, select)
    if order is not None:  # these image ids first, in this order (the next ones the user will open)
        rank = {int(i): k for k, i in enumerate(order)}
        images = sorted(images, key=lambda r: rank.get(r.id, len(rank)))
    done = set() if redo else done_images(project, proposer.name)
    todo = [r for r in images if r.id not in done]
    added = dropped = low = n_done = 0
    detect_s = mask_s = 0.0
    cancelled = False
    t_start = time.perf_counter()
    for i, rec in enumerate(todo):
        if cancel is not None and cancel.is_set():
            cancelled = True
            break
        image = project.load_image(rec.id)
        t0 = time.perf_counter()
        props = proposer.propose(image, rec.sha256)
        detect_s += time.perf_counter() - t0
        keep = ~(props.confidence < min_score)  # nan scores are kept
        low += int((~keep).sum())
        props = props.filter(keep)
        if class_id is not None and not proposer.predicts_classes:
            props.class_id[:] = class_id  # the chosen class is for class-agnostic proposers only
        props.data["source"] = np.full(len(props), proposer.name, dtype=object)
        props.data["status"] = np.full(len(props), "proposed", dtype=object)
        existing = project.annotations(rec.id, statuses=("accepted", "proposed", "rejected"))
        # Cheap first pass on boxes so the segmenter does not run for obvious duplicates.
        props = _drop(props, existing, counter := [0])
        t0 = time.perf_counter()
        props = add_masks(props, image, rec.sha256, segmenter, proposer.keeps_masks)
        mask_s += time.perf_counter() - t0
        props = _drop(props, existing, counter)
        dropped += counter[0]
        with project.transaction():  # the proposals and the visited mark together
            if len(props):
                project.add_annotations(rec.id, props)
            autolabel_log.mark_visited(project, proposer.name, rec.id, len(props))
        added += len(props)
        n_done += 1
        if progress is not None:
            progress(i + 1, len(todo))
    elapsed = time.perf_counter() - t_start
    return AutolabelReport(
        proposer=proposer.name,
        segmenter=getattr(segmenter, "name", None),
        images_total=len(images),
        images_done=n_done,
        images_skipped=len(images) - len(todo),
        proposals_added=added,
        dropped_duplicates=dropped,
        dropped_low_score=low,
        images_per_s=n_done / elapsed if elapsed > 0 and n_done else 0.0,
        detect_s=detect_s,
        mask_s=mask_s,
        cancelled=cancelled,
    )


def _drop(props: Annotations, existing: Annotations, counter: list[int]) -> Annotations:
    if not len(props) or not len(existing):
        return props
    dup = duplicate_mask(props, existing)  # box IoU for box-only proposals, mask IoU once they have masks
    counter[0] += int(dup.sum())
    return props.filter(~dup)


def format_report(r: AutolabelReport) -> str:
    state = "cancelled, re-run to resume" if r.cancelled else "finished"
    return (
        f"{r.proposer}: {r.images_done} images proposed on ({r.images_skipped} skipped: this proposer already "
        f"proposed on them; "
        f"{r.images_total} selected), {r.proposals_added} proposals added, "
        f"{r.dropped_duplicates} duplicates dropped, {r.dropped_low_score} below the minimum score; {state}\n"
        f"throughput: {r.images_per_s:.2f} images/s (detection {r.detect_s:.1f} s, "
        f"masks {r.mask_s:.1f} s{', segmenter ' + r.segmenter if r.segmenter else ', no segmenter'})"
    )
