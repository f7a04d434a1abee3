"""The project store (data/store.py): transactions, dedup, masks, statuses, stats."""

from __future__ import annotations

import hashlib
import sqlite3
import threading

import numpy as np
import pytest

from data.annotations import Annotations
from data.errors import InputError, NotFoundError, ProjectError
from data.store import Project
from tests.data.conftest import blob_masks, png_bytes, random_rgb


def _add(project: Project, seed: int, ann: Annotations | None = None, status=None):
    content = png_bytes(random_rgb(seed))
    return project.add_image(content, f"i{seed}.png", hashlib.sha256(content).hexdigest(), 64, 48, ".png",
                             annotations=ann, status=status)


@pytest.fixture
def p(tmp_path) -> Project:
    return Project.create(tmp_path / "p", classes=["a", "b"])


def test_open_requires_a_project(tmp_path):
    with pytest.raises(ProjectError, match="not a Defect Studio project"):
        Project(tmp_path)
    (tmp_path / "project.db").write_bytes(b"garbage" * 100)
    with pytest.raises(ProjectError):
        Project(tmp_path)


def test_wal_and_reopen(p):
    assert p._connection().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = Project(p.root)
    assert [c.name for c in again.classes()] == ["a", "b"]


def test_same_content_is_stored_once(p):
    first = _add(p, 1)
    second = _add(p, 1)
    assert first == (first[0], True) and second == (first[0], False) and len(p.images()) == 1


def test_masks_roundtrip_exactly_and_box_only_returns_box(p):
    a = p.class_by_name("a").id
    masks = blob_masks(48, 64, 0)
    image_id, _ = _add(p, 2, Annotations.from_masks(masks, a))
    p.add_annotations(image_id, Annotations.from_boxes(48, 64, [[2.0, 3.0, 10.0, 9.0]], [a], [np.nan], source="import",
                                                       status="accepted"))
    ann = p.annotations(image_id)
    assert np.array_equal(ann.full_masks()[:3], masks)
    assert ann.full_mask(3).sum() == 8 * 6 and ann.full_mask(3)[3:9, 2:10].all()
    assert p.image(image_id).status == "done"
    assert ann.has_mask.tolist() == [True, True, True, False]  # the box-only row stays box-only


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda p, i: p.add_annotations(i, Annotations.from_masks(np.ones((1, 5, 5), bool), 1)), InputError),  # size
        (lambda p, i: p.add_annotations(i, Annotations.from_masks(np.ones((1, 48, 64), bool), 99)), InputError),  # class
        (lambda p, i: p.set_image_status(i, "maybe"), InputError),  # image status
        (lambda p, i: p.set_annotation_status([1], "great"), InputError),  # annotation status
        (lambda p, i: p.image(12345), NotFoundError),  # missing image
        (lambda p, i: p.add_class("a"), InputError),  # duplicate class
        (lambda p, i: p.add_class("c", color="red"), InputError),  # bad colour
    ],
    ids=["mask-size", "unknown-class", "image-status", "ann-status", "missing-image", "dup-class", "colour"],
)
def test_bad_calls_raise_typed_errors(p, call, error):
    image_id, _ = _add(p, 3)
    with pytest.raises(error):
        call(p, image_id)


def test_failed_transaction_changes_nothing(p):
    a = p.class_by_name("a").id
    image_id, _ = _add(p, 4)
    bad = Annotations.merge([Annotations.from_masks(np.ones((1, 48, 64), bool), a),
                             Annotations.from_masks(np.ones((1, 48, 64), bool), 99)])
    with pytest.raises(InputError):
        p.add_annotations(image_id, bad)
    assert len(p.annotations(image_id)) == 0  # the valid first annotation was rolled back too


def test_accepting_a_defect_on_a_good_image_makes_it_unlabeled(p):
    image_id, _ = _add(p, 5, status="good")
    p.add_annotations(image_id, Annotations.from_masks(np.ones((1, 48, 64), bool), p.class_by_name("b").id))
    assert p.image(image_id).status == "unlabeled"


def test_stats_counts_by_class_and_status(p):
    a = p.class_by_name("a").id
    image_id, _ = _add(p, 6, Annotations.from_masks(blob_masks(48, 64, 1), a))
    ids = [int(i) for i in p.annotations(image_id).ids]
    p.set_annotation_status(ids[:1], "rejected")
    _add(p, 7, status="good")
    s = p.stats()
    assert s["images"]["total"] == 2 and s["images"]["good"] == 1 and s["images"]["done"] == 1
    assert s["annotations"]["a"] == {"proposed": 0, "accepted": 2, "rejected": 1}


def test_settings_roundtrip(p):
    p.set_setting("segmenter", {"name": "sam", "size": 3})
    assert Project(p.root).get_setting("segmenter") == {"name": "sam", "size": 3}
    assert p.get_setting("missing", 5) == 5


def test_threads_can_write_concurrently(p):
    errors = []

    def work(seed):
        try:
            _add(p, 100 + seed)
        except (sqlite3.Error, InputError) as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(p.images()) == 6


def test_a_write_inside_a_snapshot_is_refused_and_the_snapshot_ends(tmp_path):
    from data.store import Project

    project = Project.create(tmp_path / "p", classes=["a"])
    with pytest.raises(RuntimeError, match="inside Project.snapshot"), project.snapshot():
        project.add_class("b")
    project.add_class("c")  # after it, writes work again
    assert [c.name for c in project.classes()] == ["a", "c"]
