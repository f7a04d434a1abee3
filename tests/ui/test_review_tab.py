"""The Review queue's handlers without a browser: order, select-next, undo, class keys."""

from __future__ import annotations

import numpy as np
import pytest

from data.annotations import Annotations
from ui import review_tab as rt


def _square(x: int, y: int, side: int = 10) -> np.ndarray:
    m = np.zeros((60, 80), bool)
    m[y:y + side, x:x + side] = True
    return m


@pytest.fixture()
def queued(project):
    """Proposals on two images: scores 0.9 and 0.55 on image 1, 0.3 and none on image 2."""
    a = project.add_annotations(1, Annotations.from_masks(np.stack([_square(5, 5), _square(40, 30)]), 1,
                                                          [0.9, 0.55], source="anomaly", status="proposed"))
    b = project.add_annotations(2, Annotations.from_masks(np.stack([_square(5, 5), _square(40, 30)]), 2,
                                                          [0.3, np.nan], source="anomaly", status="proposed"))
    return {"0.9": a[0], "0.55": a[1], "0.3": b[0], "none": b[1]}


def _status(project, aid: int) -> str:
    return str(project.annotation(aid)[1].status[0])


def test_queue_spans_images_sorted_by_score_or_uncertainty(project, queued):
    q = queued
    by_score = rt.queue_rows(project, "score")
    assert [r[0] for r in by_score] == [q["0.9"], q["0.55"], q["0.3"], q["none"]]  # no score: last
    assert by_score[0][1:] == ["img0.png (#1)", "scratch", 0.9, "anomaly"] and by_score[2][1] == "img1.png (#2)"
    assert by_score[3][3] is None
    by_doubt = rt.queue_rows(project, "uncertainty")
    assert [r[0] for r in by_doubt] == [q["0.55"], q["0.3"], q["0.9"], q["none"]]  # |s - 0.5|: .05, .2, .4
    with pytest.raises(ValueError):
        rt.queue_rows(project, "random")


def test_selecting_shows_the_image_and_the_close_up(project, queued):
    v = rt.refresh(project, "score", None)
    assert v.selected == queued["0.9"] and v.where.startswith("**1 / 4**")
    assert v.image.shape == (60, 80, 3) and v.zoom is not None and max(v.zoom.shape[:2]) == 360
    other = rt.select(project, "score", queued["0.3"])
    assert other.selected == queued["0.3"] and not np.array_equal(v.image, other.image)  # the other image
    assert rt.step(project, "score", queued["none"], 1).selected == queued["0.9"]  # J round the end
    assert rt.step(project, "score", queued["0.9"], -1).selected == queued["none"]  # K
    assert rt.step(project, "uncertainty", queued["0.55"], 1).selected == queued["0.3"]
    project.set_annotation_status([queued["0.3"]], "rejected")  # another session reviewed it
    gone = rt.select(project, "score", queued["0.3"])
    assert gone.selected is None and "no longer a proposal" in gone.message


def test_accept_and_reject_select_the_next_in_the_queue(project, queued):
    q = queued
    v = rt.decide(project, "score", q["0.9"], "accepted")
    assert _status(project, q["0.9"]) == "accepted" and "accepted" in v.message
    assert v.selected == q["0.55"] and len(v.rows) == 3 and v.undo == [(q["0.9"], "proposed", "unlabeled")]
    v = rt.decide(project, "score", v.selected, "rejected", v.undo)
    assert _status(project, q["0.55"]) == "rejected" and v.selected == q["0.3"] and len(v.undo) == 2
    v = rt.decide(project, "score", q["none"], "rejected", v.undo)  # the last one: the new last is selected
    assert v.selected == q["0.3"]
    again = rt.decide(project, "score", q["0.9"], "accepted", v.undo)  # taken already: nothing changes
    assert "no longer a proposal" in again.message and again.undo == v.undo
    nothing = rt.decide(project, "score", None, "accepted")
    assert nothing.message.startswith("Select a proposal") and _status(project, q["0.3"]) == "proposed"


def test_accepting_a_duplicate_of_an_accepted_label_says_so(project, queued):
    project.add_annotations(1, Annotations.from_masks(_square(5, 5), 2))  # accepted, over the 0.9 proposal
    v = rt.decide(project, "score", queued["0.9"], "accepted")
    assert "duplicates an accepted label" in v.message and _status(project, queued["0.9"]) == "rejected"
    assert v.undo == [(queued["0.9"], "proposed", "unlabeled")]


def test_undo_restores_the_proposal_and_un_dones_its_image(project, queued):
    q = queued
    v = rt.decide(project, "score", q["0.3"], "accepted")
    v = rt.decide(project, "score", q["none"], "rejected", v.undo)
    project.set_image_status(2, "done")  # all of image 2 reviewed, then marked done
    v = rt.undo_last(project, "score", v.selected, v.undo)
    assert _status(project, q["none"]) == "proposed" and v.selected == q["none"]
    assert "Undone: #" in v.message and "unlabeled again" in v.message and project.image(2).status == "unlabeled"
    v = rt.undo_last(project, "score", v.selected, v.undo)
    assert _status(project, q["0.3"]) == "proposed" and v.undo == [] and v.selected == q["0.3"]
    assert rt.undo_last(project, "score", None, v.undo).message == "Nothing to undo."


def test_undo_of_a_deleted_annotation_says_so(project, queued):
    v = rt.decide(project, "score", queued["0.9"], "accepted")
    project.delete_annotations([queued["0.9"]])  # deleted in Label meanwhile
    v = rt.undo_last(project, "score", v.selected, v.undo)
    assert "was deleted meanwhile" in v.message and v.undo == [] and v.selected == queued["0.55"]


def test_class_from_the_dropdown_or_a_digit_key(project, queued):
    stain = project.classes()[1].id
    v = rt.set_class(project, "score", queued["0.9"], stain)
    assert project.annotation(queued["0.9"])[1].class_id[0] == stain and v.selected == queued["0.9"]
    assert "is now stain" in v.message and v.rows[0][2] == "stain" and _status(project, queued["0.9"]) == "proposed"
    v = rt.set_class_key(project, "score", queued["0.9"], 1)  # 1: the first class, as on the Label canvas
    assert project.annotation(queued["0.9"])[1].class_id[0] == project.classes()[0].id and "scratch" in v.message
    assert rt.set_class_key(project, "score", queued["0.9"], 5).message == "No class 5: the project has 2."
    assert rt.set_class(project, "score", queued["0.9"], None).message == "Pick the class first."


def test_accept_above_on_the_selected_image_or_everywhere(project, queued):
    v = rt.accept_above(project, "score", queued["0.3"], 0.5, "this image")  # image 2: nothing at 0.5
    assert v.message.startswith("Accepted 0 proposals")
    v = rt.accept_above(project, "score", queued["0.3"], 0.5, "all images")
    assert v.message.startswith("Accepted 2 proposals") and [r[0] for r in v.rows] == [queued["0.3"], queued["none"]]


def test_the_proposer_menu_says_what_a_proposer_needs(project, tmp_path):
    choices = dict((value, label) for label, value in rt.proposer_choices(project, str(tmp_path)))
    assert choices["anomaly"] == "anomaly"
    assert "needs yolov8s-worldv2.pt and ViT-B-32.pt" in choices["yoloworld-v2-s"]
