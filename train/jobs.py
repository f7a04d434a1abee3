"""Training jobs: scheduling runs, one worker process at a time per project.

A job is a run: it is created ``queued``, claimed by the scheduler (``running``,
in a separate process ``python -m train.worker`` so a crash cannot take the
server down) and ends ``succeeded``, ``failed`` (with the reason), ``cancelled``
or ``interrupted`` (its process vanished: server restart, kill, power loss;
:func:`resume` continues it from ``last.pt``).

The scheduler has no daemon: :func:`start_next` is called when a job is
submitted, when a worker finishes (the worker starts its successor) and by
:func:`refresh`, which also turns ``running`` jobs whose process is gone into
``interrupted``. Several processes (a server, a CLI) may call it at once; the
claim is one ``BEGIN IMMEDIATE`` transaction, so exactly one of them wins.

The runs' state is rows of the run registry in the project database
(:mod:`data.run_registry`, whose tables the store creates); this module decides
what to write there and turns rows into :class:`RunRecord` s.

Files of a run ``<project>/runs/<run_id>/``: ``dataset/`` (the snapshot
export), ``data.yaml`` (the same with absolute paths), ``train/`` (Ultralytics'
output: ``weights/best.pt``, ``weights/last.pt``, ``results.csv``),
``train.log`` (the worker's stdout and stderr) and ``cancel`` (the cancel flag).
Paths are stored relative to the run folder, and each checkpoint's SHA-256 is recorded when the
worker writes it (:func:`record_checkpoints`) and checked before it is loaded
(:func:`check_checkpoint`).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from data import run_registry
from data.errors import InputError, NotFoundError
from data.run_registry import FINISHED
from data.store import Project
from runtime import checkpoints
from runtime.weights import sha256_of
from train.models import TrainSettings, validate_settings

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
JOB_STATUSES: tuple[str, ...] = ("queued", "running", *FINISHED)
REPO_ROOT = Path(__file__).resolve().parent.parent
# A claimed job whose worker never reported a pid is considered dead after this long.
_START_GRACE_S = 60.0

@dataclass(frozen=True)
class RunRecord:
    """One training run as the UI shows it."""

    id: str
    created_at: float
    updated_at: float
    task: str
    model: str
    settings: TrainSettings
    status: str
    reason: str | None  # why it failed / was interrupted
    notice: str | None  # e.g. "training from scratch: ..."
    phase: str | None  # exporting, training, validating
    pid: int | None
    resume: bool
    cancel_requested: bool
    epoch: int  # epochs completed
    epochs: int  # planned epochs (re-estimated by Ultralytics in time-budget mode)
    batch_i: int
    n_batches: int
    eta_s: float | None
    dataset_source: str | None  # None: snapshot export of the project
    dataset_hash: str | None
    n_images: dict[str, int]
    class_names: tuple[str, ...]
    best_weights: str | None
    metrics: dict[str, float]  # final metrics (best.pt on the val split)
    started_at: float | None
    finished_at: float | None
    wall_s: float  # training wall time, summed over resumes
    folder: str  # <project>/runs/<id>
    # The project class id of each model class index, recorded with ``class_names`` when the dataset is
    # prepared: a renamed class still maps, a deleted one does not (``train.predict.class_map``). An entry
    # is None where no project class had that name; the whole is None for runs recorded before ids were.
    class_ids: tuple[int | None, ...] | None = None
    # SHA-256 of each checkpoint as the worker wrote it, by path relative to ``folder``.
    weights_sha256: dict[str, str] = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def can_resume(self) -> bool:
        return self.status in ("interrupted", "cancelled") and last_checkpoint(self).is_file()

    @property
    def run_dir(self) -> Path:
        return Path(self.folder)


def run_dir(project: Project, run_id: str) -> Path:
    return project.path("runs", run_id)


def log_path(project: Project, run_id: str) -> Path:
    return run_dir(project, run_id) / "train.log"


def last_checkpoint(rec: RunRecord) -> Path:
    return rec.run_dir / "train" / "weights" / "last.pt"


# --------------------------------------------------------------------- submit
def submit(project: Project, settings: TrainSettings, dataset: str | Path | None = None) -> str:
    """Queue a run and start it if the project has no running job. Returns the run id.

    ``dataset``: an existing YOLO dataset folder to train on instead of a snapshot
    export of the project (benchmarks, tests, re-training on a past snapshot).
    """
    validate_settings(settings)
    if dataset is not None and not (Path(dataset) / "data.yaml").is_file():
        raise InputError(f"{dataset} is not a YOLO dataset folder (no data.yaml).")
    if dataset is None:
        _check_trainable(project)
    run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    run_dir(project, run_id).mkdir(parents=True, exist_ok=False)
    run_registry.insert(project, run_id, settings.task, settings.model, settings.to_json(),
                        None if dataset is None else str(Path(dataset).resolve()))
    start_next(project)
    return run_id


def _check_trainable(project: Project) -> None:
    """Refuse before a run is recorded when the snapshot would hold nothing to learn from:
    only ``done`` images are trained on, so count the accepted annotations on those."""
    counts = project.annotation_counts()
    done = [im.id for im in project.images("done")]
    accepted = sum(counts.get(i, {}).get("accepted", 0) for i in done)
    if not done or accepted == 0:
        raise InputError(
            f"nothing to train on: {len(done)} images are marked done, with {accepted} accepted annotations. "
            "Label some images, mark them done (and defect-free ones good), then train."
        )


# ------------------------------------------------------------------ scheduler
_CHILDREN: dict[int, subprocess.Popen] = {}  # workers this process started, so it can reap them


def start_next(project: Project) -> str | None:
    """Start the oldest queued job unless one is running; returns its id (or None)."""
    run_id = run_registry.claim_next(project)
    if run_id is None:
        return None
    try:
        proc = _spawn_worker(project, run_id)
    except OSError as err:
        finish(project, run_id, "failed", f"could not start the training process: {err}")
        return start_next(project)
    _CHILDREN[proc.pid] = proc
    run_registry.set_pid(project, run_id, proc.pid)
    return run_id


def worker_env(project: Project) -> dict[str, str]:
    """Environment of a worker: the repo importable, Ultralytics' settings inside the project."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env.setdefault("YOLO_CONFIG_DIR", str(project.path("cache", "ultralytics")))
    env["YOLO_AUTOINSTALL"] = "false"  # never pip-install from a training job (offline machines)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _spawn_worker(project: Project, run_id: str) -> subprocess.Popen:
    folder = run_dir(project, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "train.log", "ab") as log:
        # Own session: cancel can signal the whole group (dataloader workers included);
        # cwd in the run folder so anything Ultralytics writes to "." stays there.
        return subprocess.Popen(
            [sys.executable, "-m", "train.worker", "--project", str(project.root), "--run", run_id],
            cwd=folder,
            env=worker_env(project),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def refresh(project: Project) -> None:
    """Mark running jobs whose process is gone as interrupted, then start the next queued job."""
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)
    now = time.time()
    for run_id, pid, updated_at in run_registry.running(project):
        dead = (now - updated_at > _START_GRACE_S) if pid is None else not _worker_alive(pid)
        if dead:
            rec = get(project, run_id)
            if rec.cancel_requested:
                finish(project, run_id, "cancelled", "cancelled by the user")
                continue
            hint = ("resume it from its last checkpoint" if last_checkpoint(rec).is_file()
                    else "no checkpoint was saved yet; start it again")
            finish(project, run_id, "interrupted",
                    f"the training process stopped unexpectedly (server restart, kill or crash); {hint}.")
    start_next(project)


def _worker_alive(pid: int) -> bool:
    """True if ``pid`` is a live (not zombie) training worker."""
    proc = _CHILDREN.get(pid)
    if proc is not None:
        return proc.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():  # Linux: guard against zombies and pid reuse
        with contextlib.suppress(OSError):
            if stat.read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                return False
            return b"train.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()
    return True


# ------------------------------------------------------------- cancel/resume
def cancel(project: Project, run_id: str, timeout_s: float = 10.0) -> RunRecord:
    """Cancel a queued or running job; a running worker stops within seconds.

    The worker checks the cancel flag after every batch and on SIGTERM; if it has
    not stopped after ``timeout_s`` its process group is killed.
    """
    rec = get(project, run_id)
    if rec.finished:
        return rec
    if run_registry.request_cancel(project, run_id, queued_reason="cancelled before it started"):
        return get(project, run_id)
    (rec.run_dir / "cancel").touch()
    pid = get(project, run_id).pid
    if pid is not None and _worker_alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rec = get(project, run_id)
        if rec.finished:
            break
        if rec.pid is not None and not _worker_alive(rec.pid):
            break
        time.sleep(0.2)
    rec = get(project, run_id)
    if not rec.finished:
        # Only a worker that did not stop in time is killed: one that recorded its end may be
        # starting the next queued run, and killing it then would strand that run.
        if rec.pid is not None:
            _kill_group(rec.pid)
        finish(project, run_id, "cancelled", "cancelled by the user")
    start_next(project)
    return get(project, run_id)


def _kill_group(pid: int) -> None:
    """Kill what is left of a worker's process group (stray dataloader workers)."""
    with contextlib.suppress(ProcessLookupError, PermissionError, OSError):
        os.killpg(pid, signal.SIGKILL)
    proc = _CHILDREN.pop(pid, None)
    if proc is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


def resume(project: Project, run_id: str) -> RunRecord:
    """Queue an interrupted (or cancelled) run again; it continues from its ``last.pt``."""
    rec = get(project, run_id)
    if rec.status not in ("interrupted", "cancelled"):
        raise InputError(f"run {run_id} is {rec.status}; only interrupted or cancelled runs can be resumed.")
    if not last_checkpoint(rec).is_file():
        raise InputError(f"run {run_id} has no checkpoint (no epoch finished); start a new run instead.")
    with contextlib.suppress(FileNotFoundError):
        (rec.run_dir / "cancel").unlink()
    run_registry.requeue(project, run_id)
    start_next(project)
    return get(project, run_id)


# ----------------------------------------------------------------- reading
def get(project: Project, run_id: str) -> RunRecord:
    row = run_registry.get(project, run_id)
    if row is None:
        raise NotFoundError(f"run '{run_id}' does not exist in this project; list runs with 'python app.py runs --project DIR'.")
    return _row_to_record(project, row)


def list_runs(project: Project) -> list[RunRecord]:
    """All runs, newest first."""
    return [_row_to_record(project, r) for r in run_registry.list_all(project)]


def _row_to_record(project: Project, r: dict[str, Any]) -> RunRecord:
    """A run row of :mod:`data.run_registry` (JSON columns as text) as a :class:`RunRecord`."""
    return RunRecord(
        id=r["id"], created_at=r["created_at"], updated_at=r["updated_at"], task=r["task"], model=r["model"],
        settings=TrainSettings.from_json(json.loads(r["settings"])), status=r["status"], reason=r["reason"],
        notice=r["notice"], phase=r["phase"], pid=r["pid"], resume=bool(r["resume"]),
        cancel_requested=bool(r["cancel_requested"]), epoch=r["epoch"], epochs=r["epochs"], batch_i=r["batch_i"],
        n_batches=r["n_batches"], eta_s=r["eta_s"], dataset_source=r["dataset_source"],
        dataset_hash=r["dataset_hash"], n_images=json.loads(r["n_images"]) if r["n_images"] else {},
        class_names=tuple(json.loads(r["class_names"]) if r["class_names"] else ()),
        best_weights=_in_run_dir(project, r["id"], r["best_weights"]), metrics=json.loads(r["metrics"]) if r["metrics"] else {},
        started_at=r["started_at"], finished_at=r["finished_at"], wall_s=r["wall_s"] or 0.0,
        folder=str(run_dir(project, r["id"])),
        class_ids=None if r["class_ids"] is None else tuple(json.loads(r["class_ids"])),
        weights_sha256=json.loads(r["weights_sha256"]) if r["weights_sha256"] else {},
    )


def _in_run_dir(project: Project, run_id: str, path: str | None) -> str | None:
    """A stored weights path, in this project's run folder: paths are stored relative to it; an
    absolute one (older records) is cut after ``runs/<id>/``, so a copied project uses its own
    files, never the original's."""
    if not path:
        return path
    p = Path(path)
    if p.is_absolute():
        parts = p.parts
        tail = [i for i in range(len(parts) - 1) if parts[i] == "runs" and parts[i + 1] == run_id]
        if not tail:
            return None  # not a file of this run: nothing to load
        p = Path(*parts[tail[-1] + 2:])
    if ".." in p.parts:
        return None
    return str(run_dir(project, run_id) / p)


def record_checkpoints(project: Project, rec: RunRecord) -> dict[str, str]:
    """Hash the run's checkpoints as they are now and record them; returns ``{relative path: sha256}``."""
    found = {str(f.relative_to(rec.run_dir)): sha256_of(f)
             for f in sorted((rec.run_dir / "train" / "weights").glob("*.pt"))}
    update(project, rec.id, weights_sha256=found)
    return found


def check_checkpoint(project: Project, path: str | Path) -> Path:
    """``path``, refused (:class:`~runtime.checkpoints.UnsafeCheckpointError`) when it is a checkpoint of a
    run of this project that no longer has the hash recorded when the run wrote it. Files outside the
    project's runs (a base model) and checkpoints never hashed (older runs) pass: they are still loaded
    through the allow-list."""
    p = Path(path).resolve()
    runs = project.path("runs").resolve()
    if runs not in p.parents:
        return Path(path)
    run_id = p.relative_to(runs).parts[0]
    try:
        rec = get(project, run_id)
    except NotFoundError:
        return Path(path)
    rel = str(p.relative_to(rec.run_dir.resolve()))
    checkpoints.verify(p, rec.weights_sha256.get(rel))
    return Path(path)


# ------------------------------------------------------ updates by the worker
def update(project: Project, run_id: str, **fields: Any) -> None:
    """Set columns of a run (JSON-encodes dicts and lists); an unknown column is a ValueError."""
    run_registry.update(project, run_id, **fields)


def add_epoch(project: Project, run_id: str, epoch: int, metrics: dict[str, float], epoch_s: float | None) -> None:
    """Record the metrics of a finished epoch (streamed by the worker, read by :func:`train.runs.epochs`)."""
    run_registry.add_epoch(project, run_id, epoch, metrics, epoch_s)


def finish(project: Project, run_id: str, status: JobStatus, reason: str | None, **fields: Any) -> None:
    """Record the end of a run (``status``, ``reason``, ``finished_at``; ``fields`` such as ``wall_s``,
    ``best_weights``, ``metrics`` on top) unless the worker or a cancel already recorded it."""
    run_registry.finish(project, run_id, status, reason, **fields)


def wait(project: Project, run_id: str, poll_s: float = 1.0) -> RunRecord:
    """Block until the run has finished (refreshing the scheduler meanwhile); its final record."""
    while not get(project, run_id).finished:
        time.sleep(poll_s)
        refresh(project)
    return get(project, run_id)
