"""What a proposer saves the user on validation images: matching one to one, the class, the
threshold that saves most (ties to the higher one), and the images where it erred."""

from __future__ import annotations

import math

import numpy as np
import pytest

from annotate.proposers.base import Proposer
from data.annotations import Annotations
from tests.train.conftest import make_project
from train.assist_eval import GAIN, check, to_label_next


def _square(x: int, y: int, size: int = 12, shape=(96, 96)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y:y + size, x:x + size] = True
    return m


class _Fixed(Proposer):
    """Proposes the given (mask, class, score) rows on every image."""

    keeps_masks = True
    predicts_classes = True

    def __init__(self, rows):
        self.rows, self.name = rows, "fixed"

    def propose(self, image, key):
        if not self.rows:
            return Annotations.empty(*image.shape[:2])
        return Annotations.merge([Annotations.from_masks(m[None], c, s, status="proposed") for m, c, s in self.rows])


@pytest.fixture()
def one_image(tmp_path):
    """A project whose first image holds exactly two accepted labels (classes a and b)."""
    project = make_project(tmp_path / "p", n=2, n_good=0)
    rec = project.images("done")[0]
    project.delete_annotations([int(i) for i in project.annotations(rec, with_masks=False).ids])
    a, b = (c.id for c in project.classes()[:2])
    project.add_annotations(rec.id, Annotations.merge([Annotations.from_masks(_square(10, 10)[None], a),
                                                       Annotations.from_masks(_square(60, 60)[None], b)]))
    return project, rec, a, b


@pytest.mark.parametrize(("rows", "want"), [
    # (x, y, class: "a"/"b", score) -> (min_score, benefit, found, missed, false)
    ([], (math.inf, 0.0, 0, 2, 0)),
    ([(10, 10, "a", 0.9)], (0.9, GAIN, 1, 1, 0)),
    # a right one, a false one above a wrong-class match, and a low false one: the wrong-class match
    # (GAIN - 1) pays for the false one, a tie, so the higher threshold wins
    ([(10, 10, "a", 0.9), (30, 70, "a", 0.7), (60, 60, "a", 0.6), (80, 5, "b", 0.2)], (0.9, GAIN, 1, 1, 0)),
    # two proposals on one label: one matches, the other is a false one
    ([(10, 10, "a", 0.9), (11, 11, "a", 0.8)], (0.9, GAIN, 1, 1, 0)),
    # only false ones: proposing nothing saves most
    ([(40, 40, "a", 0.9), (75, 5, "b", 0.5)], (math.inf, 0.0, 0, 2, 0)),
    # both right at different scores: the lower threshold takes both
    ([(10, 10, "a", 0.9), (60, 60, "b", 0.3)], (0.3, 2 * GAIN, 2, 0, 0)),
    # touching but under IoU 0.5: no match
    ([(16, 16, "a", 0.9)], (math.inf, 0.0, 0, 2, 0)),
])
def test_check_picks_the_threshold_that_saves_most(one_image, rows, want):
    project, rec, a, b = one_image
    cls = {"a": a, "b": b}
    got = check(project, _Fixed([(_square(x, y), cls[c], s) for x, y, c, s in rows]), None, [rec.id])
    assert (got.min_score, got.benefit, got.found, got.missed, got.false) == pytest.approx(want)
    assert len(got.images) == 1 and got.images[0].image_id == rec.id


def test_the_images_where_it_erred_are_named(one_image):
    project, rec, a, _ = one_image
    good = project.images("done")[1]
    got = check(project, _Fixed([(_square(10, 10), a, 0.9)]), None, [rec.id, good.id])
    assert to_label_next(got).startswith(f"{rec.name}: 1 missed, 0 false")
    assert to_label_next(check(project, _Fixed([]), None, [])) == ""
