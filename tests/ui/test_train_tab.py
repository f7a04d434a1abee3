"""Train screen handlers over fake run records (no worker process): dataset line, settings, status, plots, delete."""

from __future__ import annotations

import numpy as np
import pytest

from data.annotations import Annotations
from data.errors import InputError
from train import jobs
from train.models import TrainSettings
from ui import train_tab


@pytest.fixture()
def no_worker(monkeypatch):
    """Runs stay as written: nothing is spawned (the scheduler is the seam)."""
    monkeypatch.setattr(jobs, "start_next", lambda project: None)


def _label(project, image_id: int = 1) -> None:
    m = np.zeros((60, 80), bool)
    m[5:15, 5:15] = True
    project.add_annotations(image_id, Annotations.from_masks(m, 1))
    project.set_image_status(image_id, "done")


def _fake_run(project, status: str, **fields) -> str:
    if not project.stats()["images"]["done"]:
        _label(project)  # submit refuses a project with nothing to train on
    run_id = jobs.submit(project, TrainSettings(epochs=5, imgsz=160))
    jobs.update(project, run_id, status=status, **fields)
    return run_id


def test_dataset_line_counts_and_refuses_an_empty_project(project, no_worker):
    assert "Nothing to train on yet" in train_tab.dataset_line(project)
    with pytest.raises(InputError, match="no training data"):
        train_tab.start(project, TrainSettings())
    _label(project)
    project.set_image_status(2, "good")
    line = train_tab.dataset_line(project)
    assert "**1 done**" in line and "**1 accepted annotations**" in line and "**1 good**" in line
    run_id, msg = train_tab.start(project, TrainSettings(epochs=2, imgsz=160))
    assert run_id in msg and "queued" in msg  # the fake scheduler never starts it


@pytest.mark.parametrize(
    ("form", "hint"),
    [
        (("segment", "yolov8n-seg", 2, 100, 8, "auto", 30, 0, "defects"), "multiple of 32"),  # odd image size
        (("detect", "yolov8n-seg", 2, 160, 8, "auto", 30, 0, "defects"), "detection model"),  # model/task mismatch
        (("segment", "yolov8n-seg", 2.5, 160, 8, "auto", 30, 0, "defects"), "whole number"),  # fractional epochs
    ],
)
def test_bad_settings_say_what_to_change(form, hint):
    with pytest.raises(InputError, match=hint):
        train_tab.settings_from_form(*form)


def test_settings_from_form_keeps_the_choices():
    s = train_tab.settings_from_form("detect", "yolo11n", 2, 160, 4, "cpu", 0, 3, "none")
    assert (s.task, s.model, s.epochs, s.imgsz, s.batch, s.device, s.patience, s.seed, s.preset) == (
        "detect", "yolo11n", 2, 160, 4, "cpu", 0, 3, "none")


@pytest.mark.parametrize(
    ("status", "fields", "expected"),
    [
        ("queued", {}, "queued"),  # waiting for the running job
        ("running", {"epoch": 2, "epochs": 5, "eta_s": 75.0, "phase": "training"}, "epoch 2/5"),  # progress + ETA
        ("failed", {"reason": "CUDA out of memory"}, "failed"),  # reason shown
        ("cancelled", {"reason": "cancelled by the user"}, "cancelled"),
        ("succeeded", {"epoch": 5, "metrics": {"metrics/mAP50(M)": 0.61}}, "mask mAP50 0.610"),
    ],
)
def test_status_line(project, no_worker, status, fields, expected):
    rec = jobs.get(project, _fake_run(project, status, **fields))
    text = train_tab.status_md(rec)
    assert expected in text
    if status == "running":
        assert "ETA 1:15" in text
    if status == "failed":
        assert "CUDA out of memory" in text


def test_poll_streams_epochs_into_plots_and_skips_unchanged(project, no_worker):
    run_id = _fake_run(project, "running", epoch=2, epochs=5, notice="training from scratch: no weights")
    for e in (1, 2):
        jobs.add_epoch(project, run_id, e, {"train/box_loss": 2.0 / e, "train/seg_loss": 3.0 / e,
                                            "val/box_loss": 2.5 / e, "metrics/mAP50(B)": 0.1 * e,
                                            "metrics/mAP50(M)": 0.08 * e, "metrics/recall(M)": 0.2}, 3.0)
    jobs.log_path(project, run_id).write_text("line 1\nEpoch 1/5 \r 10%\r 100%\nline 3\n")
    v = train_tab.poll_view(project, run_id)
    assert "epoch 2/5" in v.status and "from scratch" in v.notice and v.can_cancel
    assert v.log.splitlines()[-2:] == [" 100%", "line 3"]
    assert len(train_tab.loss_figure(v.history).axes) == 1
    assert [ax.get_title() for ax in train_tab.metric_figure(v.history).axes] == [
        "Box metrics (val)", "Mask metrics (val)"]
    again = train_tab.poll_view(project, run_id)
    assert again.plot_key == v.plot_key and again.table_key == v.table_key  # nothing new: nothing re-sent
    jobs.add_epoch(project, run_id, 3, {"train/box_loss": 0.5}, 3.0)
    assert train_tab.poll_view(project, run_id).plot_key != v.plot_key
    # mAP absent (val=False): no metrics figure rather than an empty one
    assert train_tab.metric_figure(train_tab.poll_view(project, run_id).history[2:]) is None


def test_runs_table_and_delete_needs_confirmation(project, no_worker):
    run_id = _fake_run(project, "succeeded", dataset_hash="abcdef0123456789", n_images={"train": 8, "val": 2},
                       metrics={"metrics/mAP50(B)": 0.5}, wall_s=12.3)
    row = train_tab.runs_table(project)[0]
    assert row[0] == run_id and row[1] == "succeeded" and row[7] == "abcdef012345" and row[8] == "train 8 / val 2"
    assert row[9] == "0.500" and row[13] == 12.3
    with pytest.raises(InputError, match="type the run id"):
        train_tab.delete(project, run_id, "yes")
    assert "Deleted" in train_tab.delete(project, run_id, run_id)
    assert train_tab.runs_table(project) == []


def test_build_app_wires_train_and_predict(project, fake, no_worker):
    from ui.app import build_app

    demo = build_app(project, fake)
    labels = {getattr(b, "label", None) for b in demo.blocks.values()}
    assert {"Trained run (succeeded runs)", "Losses", "Validation metrics", "Log (last lines)"} <= labels
    demo.ds_service.close()
