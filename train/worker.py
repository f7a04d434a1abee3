"""The training worker: ``python -m train.worker --project DIR --run ID``.

Runs one job in its own process (started by :func:`train.jobs.start_next`):
snapshot export, model resolution, Ultralytics training with callbacks that
stream progress into the project database and honour the cancel flag, then the
final record. Every failure ends as a ``failed`` job with its reason (and the
traceback in ``train.log``); the worker then starts the next queued job.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import yaml

from data.errors import InputError
from data.export import export_project
from data.store import ClassRecord, Project
from runtime import checkpoints
from runtime.weights import resolve_device
from train import jobs
from train.jobs import RunRecord
from train.models import MIN_VAL_EARLY_STOP, early_stop_off, resolve_base_model, training_threads, ultralytics_args


class _Cancelled(Exception):
    """The user asked to stop (cancel flag or SIGTERM after a cancel)."""


class _Terminated(Exception):
    """SIGTERM without a cancel request (system shutdown): the run is interrupted, resumable."""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m train.worker")
    parser.add_argument("--project", required=True)
    parser.add_argument("--run", required=True)
    args = parser.parse_args(argv)
    project = Project(args.project)
    os.environ.setdefault("YOLO_CONFIG_DIR", str(project.path("cache", "ultralytics")))
    os.environ["YOLO_AUTOINSTALL"] = "false"
    checkpoints.enable_safe_yolo()  # before ultralytics is imported: every checkpoint through its allow-list
    return run_job(project, args.run)


def run_job(project: Project, run_id: str) -> int:
    rec = jobs.get(project, run_id)
    flag = rec.run_dir / "cancel"
    signal.signal(signal.SIGTERM, lambda *_: _on_sigterm(flag))
    jobs.update(project, run_id, pid=os.getpid(), phase="preparing")
    t0 = time.time()
    status, reason, fields = "failed", "unknown error", {}
    try:
        if flag.exists():
            raise _Cancelled
        data_yaml = _prepare_dataset(project, rec)
        fields = _train(project, jobs.get(project, run_id), data_yaml, flag)
        status, reason = "succeeded", None
    except _Cancelled:
        status, reason = "cancelled", "cancelled by the user"
    except _Terminated:
        status, reason = "interrupted", "the training process was terminated; resume it from its last checkpoint."
    except Exception as err:  # noqa: BLE001 - any training crash must become a failed job, not a dead server
        traceback.print_exc()
        status, reason = "failed", _reason(err)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    jobs.record_checkpoints(project, rec)  # what resume and predict will check before loading
    wall = jobs.get(project, run_id).wall_s + (time.time() - t0)
    print(f"[defect-studio] run {run_id} {status}" + (f": {reason}" if reason else ""), flush=True)
    jobs.finish(project, run_id, status, reason, wall_s=wall, **fields)
    try:
        jobs.start_next(project)
    except Exception:  # noqa: BLE001 - the successor's failure is recorded on it, not on this run
        traceback.print_exc()
    return 0 if status == "succeeded" else 1


def _on_sigterm(flag: Path) -> None:
    raise _Cancelled if flag.exists() else _Terminated


def _reason(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return f"{type(err).__name__}: {text}"[:500]


# -------------------------------------------------------------------- dataset
def _prepare_dataset(project: Project, rec: RunRecord) -> Path:
    """The snapshot (export or given folder) and a data.yaml with absolute paths; records hash and counts."""
    out = rec.run_dir / "data.yaml"
    if rec.resume and out.is_file():
        return out
    jobs.update(project, rec.id, phase="exporting")
    classes = project.classes()  # what the snapshot exports: model class k is the k-th of these
    if rec.dataset_source:
        folder = Path(rec.dataset_source)
        content_hash = dataset_hash(folder)
        n_images = {s: _count_images(folder / "images" / s) for s in ("train", "val")}
    else:
        fmt = "yolo-segment" if rec.task == "segment" else "yolo-detect"
        folder = rec.run_dir / "dataset"
        res = export_project(project, fmt, folder, val_fraction=rec.settings.val_fraction, seed=rec.settings.seed)
        folder = Path(res.out_path)
        content_hash = res.content_hash
        n_images = dict(res.n_images)
    if not n_images.get("train"):
        raise InputError(
            "no images to train on: only images marked 'done' or 'good' are exported; "
            "finish labelling some images first."
        )
    doc = yaml.safe_load((folder / "data.yaml").read_text(encoding="utf-8"))
    doc["path"] = str(folder.resolve())  # Ultralytics resolves a relative path against its own datasets dir
    names = doc.get("names") or {}
    class_names = [names[k] for k in sorted(names)] if isinstance(names, dict) else list(names)
    out.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    jobs.update(project, rec.id, dataset_hash=content_hash, n_images=n_images, class_names=class_names,
                class_ids=bind_class_ids(project, class_names, classes))
    print(f"[defect-studio] dataset {folder} hash {content_hash[:12]} images {n_images}", flush=True)
    return out


def bind_class_ids(project: Project, class_names: list[str], classes: list[ClassRecord]) -> list[int | None]:
    """The project class id of each model class, by its name now, while the names still agree.

    Recorded with the run, these ids let predictions follow a class renamed later. ``classes`` is
    the project's list read before the export; a name it lacks (renamed during the export) is looked
    up again, and one no project class has (a given dataset's own class) is None.
    """
    ids = {c.name: c.id for c in project.classes()} | {c.name: c.id for c in classes}
    return [ids.get(name) for name in class_names]


def dataset_hash(folder: Path) -> str:
    """Content hash of a dataset folder (relative paths and bytes of every file)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.endswith(".cache")):
        h.update(str(path.relative_to(folder)).encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def _count_images(folder: Path) -> int:
    exts = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
    return sum(1 for p in folder.glob("*") if p.suffix.lower() in exts) if folder.is_dir() else 0


# ------------------------------------------------------------------- training
def ultralytics_device(name: str) -> str:
    """Our device names -> Ultralytics' (``cuda`` -> ``0``)."""
    dev = resolve_device(name) if name in ("auto", "cpu", "cuda", "mps") else name
    return "0" if dev == "cuda" else dev.replace("cuda:", "")


def _use_threads(n: int) -> None:
    """Train with ``n`` CPU threads. Ultralytics fixes ``NUM_THREADS`` at ``cpu_count - 1`` and sets
    torch's intra-op threads to it when it picks the device: on a 2-core laptop, one core idle."""
    import torch
    import ultralytics.utils
    import ultralytics.utils.torch_utils

    ultralytics.utils.NUM_THREADS = n
    ultralytics.utils.torch_utils.NUM_THREADS = n
    torch.set_num_threads(n)


def _train(project: Project, rec: RunRecord, data_yaml: Path, flag: Path) -> dict[str, Any]:
    s = rec.settings
    if s.nice:
        os.nice(int(s.nice))
    _use_threads(training_threads(s))
    device = ultralytics_device(s.device)
    progress = _Progress(project, rec.id, flag, max_epochs=int(s.epochs))
    last = jobs.last_checkpoint(rec)
    if rec.resume:
        jobs.update(project, rec.id, phase="training")
        model = checkpoints.load_yolo(jobs.check_checkpoint(project, last))
        _add_callbacks(model, progress)
        model.train(resume=True, device=device, workers=s.workers)
    else:
        choice = resolve_base_model(s.model, s.task, s.weights_dir)
        if choice.notice:
            print(f"[defect-studio] NOTICE: {choice.notice}", flush=True)
        n_val = int(rec.n_images.get("val", 0))
        if early_stop_off(s, n_val):
            print(f"[defect-studio] NOTE: early stopping is off: {n_val} validation images are too few to tell a "
                  f"plateau from noise (it needs {MIN_VAL_EARLY_STOP}); training runs to its epochs or time budget",
                  flush=True)
        jobs.update(project, rec.id, notice=choice.notice, phase="training", epochs=s.epochs)
        if Path(choice.source).suffix == ".pt" and Path(choice.source).is_file():  # a base or a warm start
            jobs.check_checkpoint(project, choice.source)
        model = checkpoints.load_yolo(choice.source, task=s.task)
        _add_callbacks(model, progress)
        model.train(
            data=str(data_yaml),
            project=str(rec.run_dir),
            name="train",
            exist_ok=True,
            device=device,
            verbose=True,
            **ultralytics_args(s, n_val),
        )
    trainer = model.trainer
    best = Path(trainer.best) if Path(trainer.best).is_file() else Path(trainer.last)
    metrics = {k: float(v) for k, v in (trainer.metrics or {}).items() if _is_number(v)}
    return {"best_weights": str(best.resolve().relative_to(rec.run_dir.resolve())), "metrics": metrics}


def _is_number(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def _add_callbacks(model: Any, progress: _Progress) -> None:
    model.add_callback("on_train_start", progress.on_train_start)
    model.add_callback("on_train_epoch_start", progress.on_train_epoch_start)
    model.add_callback("on_train_batch_end", progress.on_train_batch_end)
    model.add_callback("on_train_epoch_end", progress.on_train_epoch_end)
    model.add_callback("on_fit_epoch_end", progress.cap_epochs)  # before the metrics: they show the capped total
    model.add_callback("on_fit_epoch_end", progress.on_fit_epoch_end)
    model.add_callback("on_model_save", progress.on_model_save)


class _Progress:
    """Ultralytics callbacks: cancel checks every batch, progress at most once a second, metrics every epoch."""

    def __init__(self, project: Project, run_id: str, flag: Path, max_epochs: int | None = None) -> None:
        self.project, self.run_id, self.flag = project, run_id, flag
        self.max_epochs = max_epochs  # with a time budget: stop at it or at this many epochs, whichever first
        self.batch = 0
        self.t_train = self.t_epoch = time.time()
        self.last_write = 0.0
        self.start_epoch = 0
        self.trained_epoch = -1  # index of the last epoch that actually trained

    def on_train_start(self, trainer: Any) -> None:
        self.t_train = time.time()
        self.start_epoch = int(getattr(trainer, "start_epoch", 0))

    def on_train_epoch_start(self, trainer: Any) -> None:
        self.batch = 0
        self.t_epoch = time.time()
        self._check_cancel()

    def on_model_save(self, trainer: Any) -> None:
        """Hash last.pt and best.pt as just written: a resume after a crash checks last.pt against it."""
        jobs.record_checkpoints(self.project, jobs.get(self.project, self.run_id))

    def on_train_batch_end(self, trainer: Any) -> None:
        self.batch += 1
        self._check_cancel()
        now = time.time()
        if now - self.last_write >= 1.0:
            self.last_write = now
            nb = len(trainer.train_loader) if trainer.train_loader is not None else 0
            jobs.update(self.project, self.run_id, phase="training", epoch=int(trainer.epoch), epochs=int(trainer.epochs),
                        batch_i=self.batch, n_batches=nb, eta_s=self._eta(trainer, self.batch / max(nb, 1)))

    def on_train_epoch_end(self, trainer: Any) -> None:
        self.trained_epoch = int(trainer.epoch)
        self._check_cancel()
        jobs.update(self.project, self.run_id, phase="validating")

    def cap_epochs(self, trainer: Any) -> None:
        """With a time budget Ultralytics re-plans the epochs to fill it (it just did, for this epoch's
        pace); the run still ends at ``max_epochs`` if those come first, its schedule fitted to them."""
        if not self.max_epochs or not getattr(trainer.args, "time", None) or int(trainer.epochs) <= self.max_epochs:
            return
        trainer.epochs = trainer.args.epochs = self.max_epochs
        trainer._setup_scheduler()
        trainer.scheduler.last_epoch = trainer.epoch
        trainer.stop = trainer.stop or int(trainer.epoch) + 1 >= self.max_epochs

    def on_fit_epoch_end(self, trainer: Any) -> None:
        if int(trainer.epoch) != self.trained_epoch:
            return  # Ultralytics' final validation of best.pt: recorded as the run's final metrics instead
        epoch = int(trainer.epoch) + 1
        metrics: dict[str, float] = {}
        for part in (trainer.label_loss_items(trainer.tloss, prefix="train"), trainer.metrics or {}, trainer.lr or {}):
            metrics.update({k: float(v) for k, v in part.items() if _is_number(v)})
        if not getattr(trainer.args, "val", True) and epoch < int(trainer.epochs):
            # Validation skipped this epoch (val=False): Ultralytics' metrics are stale zeros, not results.
            metrics = {k: v for k, v in metrics.items() if not k.startswith(("metrics/", "val/"))}
        epoch_s = time.time() - self.t_epoch
        jobs.add_epoch(self.project, self.run_id, epoch, metrics, epoch_s)
        eta = self._eta(trainer, 1.0, done_epochs=epoch)
        jobs.update(self.project, self.run_id, phase="training", epoch=epoch, epochs=int(trainer.epochs), eta_s=eta)
        shown = " ".join(f"{k.split('/')[-1]}={v:.4g}" for k, v in metrics.items() if not k.startswith("lr/"))
        print(f"[defect-studio] epoch {epoch}/{trainer.epochs} {epoch_s:.1f}s {shown} eta={eta:.0f}s", flush=True)
        self._check_cancel()

    def _eta(self, trainer: Any, epoch_fraction: float, done_epochs: int | None = None) -> float:
        done = (done_epochs if done_epochs is not None else int(trainer.epoch) + epoch_fraction) - self.start_epoch
        total = max(int(trainer.epochs) - self.start_epoch, 1)
        if done <= 0:
            return float("nan")
        return max(0.0, (time.time() - self.t_train) * (total - done) / done)

    def _check_cancel(self) -> None:
        if self.flag.exists():
            raise _Cancelled


if __name__ == "__main__":
    sys.exit(main())
