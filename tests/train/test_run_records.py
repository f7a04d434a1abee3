"""What a run records about its model's classes, and older databases read without it (no training)."""

from __future__ import annotations

import json
import sqlite3

import pytest

from data import run_registry
from data.store import Project
from tests.train.conftest import make_project
from train import jobs, runs, worker
from train.models import TrainSettings


@pytest.fixture()
def queued(monkeypatch):
    monkeypatch.setattr(jobs, "start_next", lambda project: None)


def test_preparing_the_dataset_records_the_class_ids_in_model_order(tmp_path, queued) -> None:
    project = make_project(tmp_path / "p", n=3, n_good=1)
    stain = project.class_by_name("stain").id
    project.update_class(stain, name="rust")  # the name at training time is recorded next to the id
    project.add_class("burr")  # a class without labels is still one of the model's classes
    run_id = jobs.submit(project, TrainSettings(epochs=1, imgsz=64))
    worker._prepare_dataset(project, jobs.get(project, run_id))
    rec = jobs.get(project, run_id)
    assert rec.class_names == ("chip", "rust", "burr")
    assert rec.class_ids == tuple(c.id for c in project.classes())
    assert runs.as_dict(rec)["class_ids"] == list(rec.class_ids)


def test_a_given_dataset_binds_the_names_the_project_has(tmp_path) -> None:
    project = Project.create(tmp_path / "p", ["chip", "stain"])
    before = project.classes()
    chip = project.class_by_name("chip").id
    project.update_class(chip, name="crack")  # renamed while the export ran: looked up again
    ids = worker.bind_class_ids(project, ["chip", "crack", "stain", "dent"], before)
    assert ids == [chip, chip, project.class_by_name("stain").id, None]


def test_an_old_runs_table_gains_the_column_and_its_records_read_without_ids(tmp_path) -> None:
    created = Project.create(tmp_path / "p", ["chip"])
    old_schema = run_registry.TABLES.ddl.replace("    class_ids TEXT,\n", "")
    assert "class_ids" not in old_schema
    # A v1 database whose runs table predates class_ids (the release before them).
    db = sqlite3.connect(created.db_path)
    db.executescript("DROP TABLE train_epochs; DROP TABLE train_runs;" + old_schema)
    db.execute("UPDATE meta SET value='1' WHERE key='schema_version'")
    db.execute(
        "INSERT INTO train_runs(id, created_at, updated_at, task, model, settings, status, class_names)"
        " VALUES ('old', 1, 1, 'detect', 'yolov8n', ?, 'succeeded', ?)",
        (json.dumps(TrainSettings().to_json()), json.dumps(["chip"])),
    )
    db.commit()
    db.close()
    project = Project(created.root)  # migrates
    rec = jobs.get(project, "old")
    assert rec.class_names == ("chip",) and rec.class_ids is None and runs.as_dict(rec)["class_ids"] is None
    Project(project.root).ensure_tables(run_registry.TABLES)  # idempotent
    jobs.update(project, "old", class_ids=[project.class_by_name("chip").id, None])
    assert jobs.get(project, "old").class_ids == (project.class_by_name("chip").id, None)


def test_log_tail_is_plain_text_without_terminal_codes(tmp_path):
    from data.store import Project
    from train import jobs, runs

    project = Project.create(tmp_path / "p")
    path = jobs.log_path(project, "r1")
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\x1b[34m\x1b[1mtrain: \x1b[0mScanning 10 images\r 50%\r100% done\x1b[K\nnext line\n")
    assert runs.log_tail(project, "r1") == "100% done\nnext line"
    path.write_bytes(b"\x1b[34m\x1b[1mtrain: \x1b[0mScanning 10 images\n")
    assert runs.log_tail(project, "r1") == "train: Scanning 10 images"
