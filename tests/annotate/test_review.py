"""Review rules: no duplicates, accepted annotations never overwritten (table-driven)."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from annotate import review
from data.annotations import NO_CLASS, Annotations
from data.store import Project

H, W = 60, 80


def box_ann(boxes, classes, sources, statuses, scores=None) -> Annotations:
    n = len(boxes)
    masks = np.zeros((n, H, W), bool)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        masks[i, y0:y1, x0:x1] = True
    return Annotations.from_masks(masks, classes, scores or [0.9] * n).with_data(
        {"source": np.array(sources, object), "status": np.array(statuses, object)})


A = (10, 10, 30, 30)
A_SHIFTED = (12, 12, 32, 32)  # IoU with A about 0.68
A_FAR = (20, 20, 40, 40)  # IoU with A 0.14


@pytest.mark.parametrize(
    "new, existing, dropped",
    [
        ((A, 1, "anomaly"), (A, 1, "manual", "accepted"), True),  # same place, same class as an accepted one
        ((A_SHIFTED, 1, "anomaly"), (A, 1, "manual", "accepted"), True),  # IoU above 0.5 still a duplicate
        ((A_FAR, 1, "anomaly"), (A, 1, "manual", "accepted"), False),  # barely overlapping: a new defect
        ((A, 2, "anomaly"), (A, 1, "manual", "accepted"), True),  # nor over an accepted one of another class
        ((A_SHIFTED, 2, "run:3"), (A, 1, "manual", "accepted"), True),  # ...from any proposer
        ((A_FAR, 2, "anomaly"), (A, 1, "manual", "accepted"), False),  # beside it: a new defect
        ((A, 2, "anomaly"), (A, 1, "anomaly", "proposed"), False),  # another class beside a proposal is kept
        ((A, 1, "anomaly"), (A, 1, "anomaly", "proposed"), True),  # re-run: same proposal not added twice
        ((A, 1, "yoloworld-v2-s"), (A, 1, "anomaly", "proposed"), False),  # another proposer's view is kept
        ((A, 1, "anomaly"), (A, 1, "anomaly", "rejected"), True),  # what the user rejected is not proposed again
        ((A, 1, "run:3"), (A, 1, "anomaly", "rejected"), False),  # ...by that proposer only
    ],
)
def test_duplicate_rule(new, existing, dropped):
    n = box_ann([new[0]], [new[1]], [new[2]], ["proposed"])
    e = box_ann([existing[0]], [existing[1]], [existing[2]], [existing[3]])
    assert review.duplicate_mask(n, e).tolist() == [dropped]


def _project(tmp_path) -> tuple[Project, int]:
    project = Project.create(tmp_path / "p", ["chip", "stain"])
    rgb = np.full((H, W, 3), 128, np.uint8)
    ok, buf = cv2.imencode(".png", rgb)
    content = buf.tobytes()
    image_id, _ = project.add_image(content, "a.png", hashlib.sha256(content).hexdigest(), W, H, ".png")
    return project, image_id


@pytest.fixture
def stored(tmp_path):
    project, image_id = _project(tmp_path)
    chip, stain = (c.id for c in project.classes())
    ann = box_ann(
        [A, A_SHIFTED, A_FAR, (50, 40, 70, 55)],
        [chip, chip, stain, stain],
        ["manual", "anomaly", "anomaly", "anomaly"],
        ["accepted", "proposed", "proposed", "proposed"],
        scores=[float("nan"), 0.9, 0.8, 0.3],
    )
    ids = project.add_annotations(image_id, ann)
    return project, image_id, ids, chip, stain


@pytest.mark.parametrize(
    "action, expected",
    [
        # (what the reviewer does, resulting statuses of [accepted, dup proposal, proposal, weak proposal])
        ("accept_all", ["accepted", "rejected", "accepted", "accepted"]),  # the duplicate is rejected, not doubled
        ("reject_all", ["accepted", "rejected", "rejected", "rejected"]),  # the accepted one stays accepted
        ("accept_above_0.5", ["accepted", "rejected", "accepted", "proposed"]),  # below the score: left to review
        ("accept_above_0.5_project", ["accepted", "rejected", "accepted", "proposed"]),  # same, project-wide
    ],
)
def test_review_actions(stored, action, expected):
    project, image_id, ids, _, _ = stored
    if action == "accept_all":
        res = review.accept(project, ids)
        assert (res.changed, res.dropped_duplicates, res.skipped) == (2, 1, 1)
    elif action == "reject_all":
        review.reject(project, ids)
    elif action == "accept_above_0.5":
        review.accept_above(project, 0.5, image_id=image_id)
    else:
        review.accept_above(project, 0.5)
    ann = project.annotations(image_id, statuses=("accepted", "proposed", "rejected"))
    assert [ann.status[ann.ids == i][0] for i in ids] == expected


def test_change_class_and_refine(stored):
    project, image_id, ids, chip, stain = stored
    review.change_class(project, ids[2], chip)
    _, one = project.annotation(ids[2])
    assert one.class_id[0] == chip and one.status[0] == "proposed"
    mask = np.zeros((H, W), bool)
    mask[5:9, 5:25] = True
    review.refine(project, ids[3], Annotations.from_masks(mask, NO_CLASS), source="classical")
    _, one = project.annotation(ids[3])
    assert one.status[0] == "accepted" and one.source[0] == "classical"
    assert one.xyxy[0].tolist() == [5, 5, 25, 9] and (one.full_mask(0) == mask).all()


def test_accepting_on_a_good_image_makes_it_unlabeled(tmp_path):
    project, image_id = _project(tmp_path)
    chip = project.classes()[0].id
    project.set_image_status(image_id, "good")
    ids = project.add_annotations(image_id, box_ann([A], [chip], ["anomaly"], ["proposed"]))  # asked for explicitly
    review.accept(project, ids)
    assert project.image(image_id).status == "unlabeled"


@pytest.mark.parametrize(
    "held, status, refused",
    [
        ((), "done", None),  # nothing on it: done means "no defect missed" too
        ((), "good", None),
        (("accepted",), "done", None),
        (("accepted",), "good", "has accepted defects"),  # a defect-free image holds no defect
        (("accepted", "proposed"), "done", "1 unreviewed proposal"),  # a proposal left: a silent false negative
        (("proposed", "proposed"), "good", "2 unreviewed proposals"),
        (("rejected",), "good", None),  # rejected proposals do not count
        (("proposed",), "unlabeled", None),  # going back is always allowed
    ],
)
def test_status_rules(tmp_path, held, status, refused):
    from data.errors import InputError

    project, image_id = _project(tmp_path)
    chip = project.classes()[0].id
    boxes = [(5 + 12 * k, 5, 15 + 12 * k, 15) for k in range(len(held))]
    if held:
        project.add_annotations(image_id, box_ann(boxes, [chip] * len(held), ["manual"] * len(held), list(held)))
    before = project.image(image_id).status
    if refused is None:
        project.set_image_status(image_id, status)
        assert project.image(image_id).status == status
    else:
        with pytest.raises(InputError, match=refused):
            project.set_image_status(image_id, status)
        assert project.image(image_id).status == before  # nothing changed
