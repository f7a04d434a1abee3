"""Real (tiny) training jobs through the worker process: train, registry, predict, cancel, resume, crash."""

from __future__ import annotations

import argparse
import json
import os
import signal
import time
from pathlib import Path

import pytest

from data.annotations import Annotations
from data.store import Project
from train import cli, jobs, runs
from train.models import TrainSettings

pytestmark = pytest.mark.slow
TINY = {"imgsz": 64, "batch": 4, "workers": 0, "device": "cpu", "preset": "none", "patience": 0}


def wait_for(project: Project, run_id: str, cond, timeout: float = 150.0) -> jobs.RunRecord:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs.refresh(project)
        rec = jobs.get(project, run_id)
        if cond(rec):
            return rec
        time.sleep(0.3)
    raise AssertionError(f"run {run_id} still {jobs.get(project, run_id)} after {timeout}s:\n{runs.log_tail(project, run_id)}")


def test_train_end_to_end_registry_and_prediction(tiny_project: Project, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # Ultralytics must not write into the working directory
    before = set(os.listdir(tmp_path))
    args = argparse.Namespace(project=tiny_project.root, task="segment", model="yolov8n-seg", epochs=1, seed=0,
                              val_fraction=0.2, weights_dir=None, **TINY)
    assert cli.cmd_train(args) == 0
    out = capsys.readouterr().out
    run_id = next(line.split()[1] for line in out.splitlines() if line.startswith("run "))  # after any advice
    assert "NOTICE: training from scratch" in out and "epoch 1/1" in out and "mask mAP50" in out

    rec = jobs.get(tiny_project, run_id)
    assert rec.status == "succeeded" and rec.reason is None
    assert rec.dataset_hash and rec.n_images["train"] > 0 and rec.class_names == ("chip", "stain")
    assert rec.class_ids == tuple(c.id for c in tiny_project.classes())  # model class k -> project class id
    assert Path(rec.best_weights).is_file() and rec.run_dir in Path(rec.best_weights).parents
    from data import run_registry
    from runtime.checkpoints import UnsafeCheckpointError
    from runtime.weights import sha256_of

    stored = next(r for r in run_registry.list_all(tiny_project) if r["id"] == run_id)["best_weights"]
    assert not Path(stored).is_absolute()  # a copied project loads its own files
    assert rec.weights_sha256["train/weights/best.pt"] == sha256_of(Path(rec.best_weights))
    assert "metrics/mAP50(M)" in rec.metrics and rec.wall_s > 0
    ep = runs.epochs(tiny_project, run_id)
    assert [e.epoch for e in ep] == [1] and "train/seg_loss" in ep[0].metrics
    assert set(os.listdir(tmp_path)) == before

    image = tiny_project.load_image(tiny_project.images()[0].id)
    from train.predict import predict_annotations, predictor_for, refilter, render

    ann = predict_annotations(tiny_project, run_id, image, conf=0.0001)
    assert isinstance(ann, Annotations) and ann.has_mask.all() and ann.shape == image.shape[:2]
    assert set(ann.class_id.tolist()) <= {c.id for c in tiny_project.classes()}
    assert predictor_for(tiny_project, run_id, "cpu") is predictor_for(tiny_project, run_id, "cpu")  # cached
    raw = predictor_for(tiny_project, run_id, "auto").predict_raw(image, conf=0.0001, iou=0.9)
    shown = render(image, refilter(raw, 0.0001, 0.5), {"chip": "#FF0000"})
    assert shown.image.shape == image.shape and set(shown.counts) == {"chip", "stain"}

    src = tmp_path / "src"
    src.mkdir()
    Path(src / "a.png").write_bytes((tiny_project.root / tiny_project.images()[0].file).read_bytes())
    pargs = argparse.Namespace(project=tiny_project.root, run=run_id, source=src, out=tmp_path / "pred",
                               conf=0.0001, iou=0.7, device="cpu")
    assert cli.cmd_predict(pargs) == 0
    assert (tmp_path / "pred" / "a_pred.png").is_file()
    results = json.loads((tmp_path / "pred" / "results.json").read_text())
    index = json.loads((tmp_path / "pred" / "images.json").read_text())
    assert index["images"][0]["id"] == 1 and {c["name"] for c in index["categories"]} == {"chip", "stain"}
    assert all({"image_id", "category_id", "bbox", "score", "segmentation"} <= set(r) for r in results)

    assert cli.cmd_runs(argparse.Namespace(project=tiny_project.root, json=str(tmp_path / "runs.json"))) == 0
    assert json.loads((tmp_path / "runs.json").read_text())[0]["id"] == run_id
    onnx = runs.export_onnx(tiny_project, run_id)  # offline: must not try to pip-install anything
    assert onnx.suffix == ".onnx" and onnx.is_file() and rec.run_dir in onnx.parents
    Path(rec.best_weights).write_bytes(Path(rec.best_weights).read_bytes() + b"\0")  # changed after the run
    with pytest.raises(UnsafeCheckpointError, match="changed after it was written"):
        runs.weights(tiny_project, run_id)
    runs.delete(tiny_project, run_id)
    assert not rec.run_dir.exists() and jobs.list_runs(tiny_project) == []


def test_cancel_queue_and_resume(tiny_project: Project) -> None:
    long = jobs.submit(tiny_project, TrainSettings(epochs=200, **TINY))
    queued = jobs.submit(tiny_project, TrainSettings(epochs=3, **TINY))
    assert jobs.get(tiny_project, queued).status == "queued"  # one job at a time per project
    wait_for(tiny_project, long, lambda r: r.epoch >= 1)

    t = time.monotonic()
    rec = jobs.cancel(tiny_project, long)
    assert rec.status == "cancelled" and time.monotonic() - t < 10

    # The queued job starts when the first one ends; kill it hard after its first epoch, as a crash would.
    rec = wait_for(tiny_project, queued, lambda r: r.status == "running" and r.epoch >= 1 and r.pid)
    os.killpg(rec.pid, signal.SIGKILL)
    rec = wait_for(tiny_project, queued, lambda r: r.status != "running")
    assert rec.status == "interrupted" and rec.can_resume and "resume" in rec.reason
    assert "train/weights/last.pt" in rec.weights_sha256  # hashed at each save: a resume checks it

    jobs.resume(tiny_project, queued)
    rec = wait_for(tiny_project, queued, lambda r: r.finished)
    assert rec.status == "succeeded", rec.reason
    assert [e.epoch for e in runs.epochs(tiny_project, queued)][-1] == 3  # continued, not restarted


def test_crash_marks_job_failed_and_caller_survives(tiny_project: Project, tmp_path: Path) -> None:
    # A snapshot whose val split is missing: Ultralytics itself raises inside the worker.
    broken = tmp_path / "broken"
    (broken / "images" / "train").mkdir(parents=True)
    (broken / "images" / "train" / "a.png").write_bytes((tiny_project.root / tiny_project.images()[0].file).read_bytes())
    (broken / "data.yaml").write_text("train: images/train\nval: images/nowhere\nnames: {0: chip}\n")
    run_id = jobs.submit(tiny_project, TrainSettings(epochs=1, **TINY), dataset=broken)
    rec = wait_for(tiny_project, run_id, lambda r: r.finished)
    assert rec.status == "failed" and "nowhere" in rec.reason, rec.reason
    assert "Traceback" in runs.log_tail(tiny_project, run_id, 400)
    assert os.getpid()  # still here: the crash happened in the worker


def test_run_with_bad_setting_fails_with_reason(tiny_project: Project) -> None:
    run_id = jobs.submit(tiny_project, TrainSettings(epochs=1, overrides={"lr0": "fast"}, **TINY))
    rec = wait_for(tiny_project, run_id, lambda r: r.finished)
    assert rec.status == "failed" and "lr0" in rec.reason


def test_pretrained_weights_in_the_weights_folder_make_the_run_a_fine_tune(tiny_project: Project, tmp_path: Path,
                                                                              capsys) -> None:
    """The real architecture, saved as a checkpoint by the test, stands for downloaded weights: the
    same run then starts from them (no from-scratch notice) instead of from the yaml."""
    from ultralytics import YOLO

    weights = tmp_path / "weights"
    weights.mkdir()
    YOLO("yolov8n-seg.yaml", task="segment").save(str(weights / "yolov8n-seg.pt"))
    args = argparse.Namespace(project=tiny_project.root, task="segment", model="yolov8n-seg", epochs=1, seed=0,
                              val_fraction=0.2, weights_dir=str(weights), **TINY)
    assert cli.cmd_train(args) == 0
    out = capsys.readouterr().out
    run_id = next(line.split()[1] for line in out.splitlines() if line.startswith("run "))
    rec = jobs.get(tiny_project, run_id)
    assert rec.status == "succeeded" and rec.notice is None and "NOTICE: training from scratch" not in out
    assert "from scratch" not in " ".join(line for line in out.splitlines() if line.startswith("WARNING"))
    log = runs.log_tail(tiny_project, run_id, 400)
    assert "Transferred" in log or "pretrained" in log.lower(), log[-2000:]
