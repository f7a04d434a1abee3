"""The run registry: per-epoch metrics, log tail, comparison table, delete, ONNX export.

Runs themselves are scheduled by :mod:`train.jobs` and stored by :mod:`data.run_registry`
(tables ``train_runs``, ``train_epochs``); this module reads and manages what they produced.
Modules that keep something per run (``train.predict``'s cached predictors) register with
:func:`add_delete_listener` to hear of a deleted run, so this module imports none of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from data import run_registry
from data.errors import InputError, ModelUnavailableError
from data.store import Project
from runtime import checkpoints
from train import advice, jobs
from train.jobs import RunRecord

# Ultralytics metric keys -> short names shown in tables and plots.
METRIC_NAMES: dict[str, str] = {
    "metrics/mAP50(B)": "box_map50",
    "metrics/mAP50-95(B)": "box_map50_95",
    "metrics/precision(B)": "box_precision",
    "metrics/recall(B)": "box_recall",
    "metrics/mAP50(M)": "mask_map50",
    "metrics/mAP50-95(M)": "mask_map50_95",
    "metrics/precision(M)": "mask_precision",
    "metrics/recall(M)": "mask_recall",
}


@dataclass(frozen=True)
class EpochMetrics:
    epoch: int
    at: float
    epoch_s: float | None
    metrics: dict[str, float]  # Ultralytics keys: train/box_loss, metrics/mAP50(M), val/seg_loss, lr/pg0, ...

    @property
    def short(self) -> dict[str, float]:
        return short_metrics(self.metrics)


def short_metrics(metrics: dict[str, float]) -> dict[str, float]:
    """Metrics under short names (box_map50, mask_map50, ...; losses as train_box_loss etc.)."""
    out = {}
    for key, value in metrics.items():
        if key in METRIC_NAMES:
            out[METRIC_NAMES[key]] = value
        elif key.startswith(("train/", "val/")):
            out[key.replace("/", "_")] = value
    return out


def epochs(project: Project, run_id: str) -> list[EpochMetrics]:
    """Per-epoch metrics of a run, in order (streamed while it trains)."""
    jobs.get(project, run_id)
    return [EpochMetrics(r[0], r[1], r[2], json.loads(r[3])) for r in run_registry.epochs(project, run_id)]


ANSI = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07]*\x07|[@-Z\\-_])")  # CSI, OSC and two-byte escapes


def log_tail(project: Project, run_id: str, lines: int = 40) -> str:
    """The last lines of a run's log as plain text: progress-bar redraws (carriage returns) collapsed,
    terminal colour and cursor codes (ANSI escapes) removed."""
    path = jobs.log_path(project, run_id)
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        f.seek(max(0, f.tell() - 64_000))
        text = f.read().decode("utf-8", errors="replace")
    out = []
    for line in text.split("\n"):
        line = line.rstrip("\r").split("\r")[-1]  # the final redraw of a tqdm line
        out.append(ANSI.sub("", line))
    return "\n".join(out[-lines:]).strip("\n")


def compare(project: Project) -> list[dict[str, Any]]:
    """One row per run for a comparison table (newest first)."""
    rows = []
    for rec in jobs.list_runs(project):
        final = short_metrics(rec.metrics)
        rows.append({
            "id": rec.id,
            "status": rec.status,
            "task": rec.task,
            "model": rec.model,
            "epochs": f"{rec.epoch}/{rec.epochs or rec.settings.epochs}",
            "imgsz": rec.settings.imgsz,
            "preset": rec.settings.preset,
            "dataset": (rec.dataset_hash or "")[:12],
            "images": rec.n_images,
            "box_map50": final.get("box_map50"),
            "box_map50_95": final.get("box_map50_95"),
            "mask_map50": final.get("mask_map50"),
            "mask_map50_95": final.get("mask_map50_95"),
            "wall_s": round(rec.wall_s, 1),
            "reason": rec.reason,
            "notice": rec.notice,
            "learned": advice.learned(final) if rec.status == "succeeded" else None,
        })
    return rows


_DELETE_LISTENERS: list[Callable[[str], None]] = []


def add_delete_listener(fn: Callable[[str], None]) -> None:
    """Have :func:`delete` call ``fn(run_id)`` before it deletes a run (e.g. to drop a cached model).

    Adding the same function again does nothing.
    """
    if fn not in _DELETE_LISTENERS:
        _DELETE_LISTENERS.append(fn)


def delete(project: Project, run_id: str) -> None:
    """Delete a finished or queued run: its record, metrics and folder (listeners hear of it first)."""
    rec = jobs.get(project, run_id)
    if rec.status == "running":
        raise InputError(f"run {run_id} is running; cancel it before deleting it.")
    for listener in list(_DELETE_LISTENERS):
        listener(run_id)
    run_registry.delete(project, run_id)
    shutil.rmtree(rec.run_dir, ignore_errors=True)


def weights(project: Project, run_id: str) -> Path:
    """The best weights of a finished run."""
    rec = jobs.get(project, run_id)
    if not rec.best_weights or not Path(rec.best_weights).is_file():
        if rec.status != "succeeded":
            raise InputError(f"run {run_id} is {rec.status} and has no trained weights; pick a succeeded run.")
        raise InputError(f"the weights of run {run_id} are missing from {rec.run_dir}; train it again.")
    return jobs.check_checkpoint(project, rec.best_weights)


def export_onnx(project: Project, run_id: str, imgsz: int | None = None) -> Path:
    """Export a run's best weights to ONNX (next to them); returns the .onnx path.

    Ultralytics checks its ONNX requirements and pip-installs missing ones; with
    onnx, onnxslim and onnxruntime pinned in requirements.txt nothing is missing,
    and ``YOLO_AUTOINSTALL`` is switched off so an offline machine fails fast
    with a message instead of hanging on pip.
    """
    pt = weights(project, run_id)
    rec = jobs.get(project, run_id)
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("YOLO_CONFIG_DIR", str(project.path("cache", "ultralytics")))
    from ultralytics.utils import checks

    checks.AUTOINSTALL = False  # in case Ultralytics was imported before the variable was set
    try:
        with contextlib.chdir(rec.run_dir):  # anything Ultralytics writes to "." stays in the run folder
            out = checkpoints.load_yolo(pt).export(format="onnx", imgsz=imgsz or rec.settings.imgsz, device="cpu",
                                       dynamic=False, simplify=True)
    except (ImportError, ModuleNotFoundError) as err:
        raise ModelUnavailableError(
            f"ONNX export needs the packages pinned in requirements.txt (onnx, onnxslim, onnxruntime): {err}"
        ) from err
    return Path(out)


def as_dict(rec: RunRecord) -> dict[str, Any]:
    """A JSON-ready view of a run (for ``--json`` and the UI)."""
    return {
        "id": rec.id, "status": rec.status, "reason": rec.reason, "notice": rec.notice, "task": rec.task,
        "model": rec.model, "settings": rec.settings.to_json(), "epoch": rec.epoch, "epochs": rec.epochs,
        "dataset_hash": rec.dataset_hash, "dataset_source": rec.dataset_source, "n_images": rec.n_images,
        "class_names": list(rec.class_names),
        "class_ids": None if rec.class_ids is None else list(rec.class_ids), "best_weights": rec.best_weights,
        "metrics": short_metrics(rec.metrics), "wall_s": rec.wall_s, "created_at": rec.created_at,
        "started_at": rec.started_at, "finished_at": rec.finished_at, "run_dir": str(rec.run_dir),
    }
