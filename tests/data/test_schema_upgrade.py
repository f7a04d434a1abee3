"""Opening a project written before schema v2 upgrades it in place (data/store.py migrations).

The fixture ``fixtures/project_v1/`` was written by the code of schema v1
(``fixtures/make_project_v1.py``): 3 images, classes chip/stain, an accepted mask and a box-only
proposal on image 1, image 2 good, the setting ``yoloworld_size``, one succeeded run with its
class ids and one epoch, and one row of the autolabel visited log (proposer ``anomaly``, image 3).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from annotate import autolabel
from data import autolabel_log, run_registry, store
from data.errors import ProjectError
from data.store import SCHEMA_VERSION, Project
from tests.data.conftest import copy_project_fixture
from train import jobs, runs

FIXTURE = Path(__file__).parent / "fixtures" / "project_v1"
RUN_ID = "20261201-213819-f48d"


@pytest.fixture
def v1(tmp_path) -> Path:
    """A copy of the v1 project as git keeps it: the database and the images, no empty folders."""
    return copy_project_fixture("project_v1", tmp_path)


def _sql(root: Path, *statements: str) -> None:
    db = sqlite3.connect(root / "project.db")
    try:
        for stmt in statements:
            db.execute(stmt)
        db.commit()
    finally:
        db.close()


def _dump(root: Path) -> list[str]:
    db = sqlite3.connect(root / "project.db")
    try:
        return list(db.iterdump())
    finally:
        db.close()


def _version(root: Path) -> str:
    db = sqlite3.connect(root / "project.db")
    try:
        return db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()[0]
    finally:
        db.close()


def test_the_fixture_is_a_v1_project(v1):
    assert _version(v1) == "1" and SCHEMA_VERSION == 3


def test_a_v1_project_upgrades_in_place_and_reads_back_as_before(v1):
    p = Project(v1)
    assert p.schema_version == SCHEMA_VERSION == 3 and _version(v1) == "3"
    assert all((v1 / sub).is_dir() for sub in ("images", "cache", "runs", "exports"))  # git kept none empty

    assert [(im.id, im.name, im.status, im.width, im.height) for im in p.images()] == [
        (1, "src/im0.png", "done", 40, 32), (2, "src/im1.png", "good", 40, 32), (3, "src/im2.png", "unlabeled", 40, 32)]
    assert p.load_image(1).shape == (32, 40, 3)
    assert [(c.id, c.name, c.color) for c in p.classes()] == [(1, "chip", "#E69F00"), (2, "stain", "#56B4E9")]
    assert p.get_setting("yoloworld_size") == "m"

    ann = p.annotations(1)
    expected = np.zeros((32, 40), bool)
    expected[8:16, 10:20] = True
    assert ann.ids.tolist() == [1, 2] and ann.class_id.tolist() == [1, 2]
    assert list(ann.status) == ["accepted", "proposed"] and list(ann.source) == ["manual", "anomaly"]
    assert np.array_equal(ann.full_mask(0), expected)
    assert ann.full_mask(1).sum() == 5 * 5 and ann.full_mask(1)[1:6, 1:6].all()  # box-only: its mask is the box
    assert ann.has_mask.tolist() == [True, False]  # and it stays box-only
    assert tuple(ann.xyxy[1]) == (1.0, 1.0, 6.0, 6.0) and ann.confidence[1] == pytest.approx(0.7)
    assert len(p.annotations(2)) == 0 and p.annotations(2).shape == (32, 40) and len(p.annotations(3)) == 0

    rec = jobs.get(p, RUN_ID)
    assert [r.id for r in jobs.list_runs(p)] == [RUN_ID]
    assert rec.status == "succeeded" and rec.finished and not rec.can_resume  # its folder is not in git
    assert rec.class_names == ("chip", "stain") and rec.class_ids == (1, 2)
    assert rec.epoch == rec.epochs == 2 and rec.settings.epochs == 2 and rec.settings.imgsz == 64
    assert rec.metrics == {"metrics/mAP50(M)": 0.5} and runs.as_dict(rec)["metrics"] == {"mask_map50": 0.5}
    (epoch,) = runs.epochs(p, RUN_ID)
    assert epoch.epoch == 1 and epoch.epoch_s == 0.5 and epoch.metrics == {"train/box_loss": 1.0}

    assert autolabel.done_images(p, "anomaly") == {3} and autolabel_log.visited(p, "other") == set()


def test_opening_an_upgraded_project_again_changes_nothing(v1):
    Project(v1)
    before = _dump(v1)
    again = Project(v1)
    assert _dump(v1) == before and again.schema_version == 3
    assert jobs.get(again, RUN_ID).class_ids == (1, 2) and _dump(v1) == before


def test_the_upgraded_registry_and_log_keep_working(v1):
    p = Project(v1)
    jobs.add_epoch(p, RUN_ID, 2, {"train/box_loss": 0.5}, 0.4)
    assert [e.epoch for e in runs.epochs(p, RUN_ID)] == [1, 2]
    autolabel_log.mark_visited(p, "anomaly", 1, 2)
    assert autolabel.done_images(p, "anomaly") == {1, 3}
    runs.delete(p, RUN_ID)  # its folder is missing: still deleted
    assert jobs.list_runs(p) == [] and run_registry.epochs(p, RUN_ID) == []


def test_a_newer_project_is_refused(v1):
    _sql(v1, "UPDATE meta SET value='99' WHERE key='schema_version'")
    with pytest.raises(ProjectError, match="newer or unknown version"):
        Project(v1)
    assert _version(v1) == "99"


def test_an_upgrade_is_one_transaction(v1, monkeypatch):
    before = _dump(v1)

    def half_then_fail(db):
        store._to_v2(db)
        db.execute("CREATE TABLE half_done (x)")
        raise sqlite3.OperationalError("disk went away")

    monkeypatch.setattr(store, "_MIGRATIONS", (half_then_fail,))
    with pytest.raises(ProjectError, match="cannot be read"):
        Project(v1)
    assert _dump(v1) == before and _version(v1) == "1"  # nothing of the failed upgrade is left


def test_a_v1_runs_table_without_class_ids_gains_the_column(v1):
    _sql(v1, "ALTER TABLE train_runs DROP COLUMN class_ids")  # as the release before class ids wrote it
    p = Project(v1)
    db = sqlite3.connect(v1 / "project.db")
    assert "class_ids" in {r[1] for r in db.execute("PRAGMA table_info(train_runs)")}
    db.close()
    rec = jobs.get(p, RUN_ID)
    assert rec.class_names == ("chip", "stain") and rec.class_ids is None and runs.as_dict(rec)["class_ids"] is None
    jobs.update(p, RUN_ID, class_ids=[1, None])
    assert jobs.get(p, RUN_ID).class_ids == (1, None)


def test_a_v1_project_that_never_trained_nor_autolabelled_gains_the_tables(v1):
    _sql(v1, "DROP TABLE train_epochs", "DROP TABLE train_runs", "DROP TABLE autolabel_done")
    p = Project(v1)
    tables = {r[0] for r in sqlite3.connect(v1 / "project.db").execute("SELECT name FROM sqlite_master")}
    assert {"train_runs", "train_epochs", "autolabel_done"} <= tables
    assert jobs.list_runs(p) == [] and autolabel.done_images(p, "anomaly") == set()
    assert len(p.images()) == 3 and p.get_setting("yoloworld_size") == "m"


def test_a_new_project_has_the_registered_tables(tmp_path):
    p = Project.create(tmp_path / "p", ["a"])
    assert p.schema_version == SCHEMA_VERSION
    tables = {r[0] for r in sqlite3.connect(p.db_path).execute("SELECT name FROM sqlite_master")}
    assert {"train_runs", "train_epochs", "autolabel_done"} <= tables
