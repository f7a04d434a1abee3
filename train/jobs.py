"""Training jobs: state in the project database, one worker process at a time per project.

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

Files of a run ``<project>/runs/<run_id>/``: ``dataset/`` (the snapshot
export), ``data.yaml`` (the same with absolute paths), ``train/`` (Ultralytics'
output: ``weights/best.pt``, ``weights/last.pt``, ``results.csv``),
``train.log`` (the worker's stdout and stderr) and ``cancel`` (the cancel flag).
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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from data.errors import InputError, NotFoundError
from data.store import Project
from train.models import TrainSettings, validate_settings

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled", "interrupted"]
JOB_STATUSES: tuple[str, ...] = ("queued", "running", "succeeded", "failed", "cancelled", "interrupted")
FINISHED: tuple[str, ...] = ("succeeded", "failed", "cancelled", "interrupted")
REPO_ROOT = Path(__file__).resolve().parent.parent
# A claimed job whose worker never reported a pid is considered dead after this long.
_START_GRACE_S = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS train_runs (
    id TEXT PRIMARY KEY,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    task TEXT NOT NULL,
    model TEXT NOT NULL,
    settings TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    notice TEXT,
    phase TEXT,
    pid INTEGER,
    resume INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    epoch INTEGER NOT NULL DEFAULT 0,
    epochs INTEGER NOT NULL DEFAULT 0,
    batch_i INTEGER NOT NULL DEFAULT 0,
    n_batches INTEGER NOT NULL DEFAULT 0,
    eta_s REAL,
    dataset_source TEXT,
    dataset_hash TEXT,
    n_images TEXT,
    class_names TEXT,
    class_ids TEXT,
    best_weights TEXT,
    metrics TEXT,
    started_at REAL,
    finished_at REAL,
    wall_s REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS train_epochs (
    run_id TEXT NOT NULL REFERENCES train_runs(id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    at REAL NOT NULL,
    epoch_s REAL,
    metrics TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
"""
# Columns added after a release, as (name, declaration): ensure_schema adds them to older databases.
# Nullable, so a record written before them reads as "not recorded" and older code still reads the table.
_ADDED_COLUMNS: tuple[tuple[str, str], ...] = (
    ("class_ids", "TEXT"),  # JSON list: the project class id of each model class index (null: none matched)
)

_COLUMNS = (
    "id, created_at, updated_at, task, model, settings, status, reason, notice, phase, pid, resume,"
    " cancel_requested, epoch, epochs, batch_i, n_batches, eta_s, dataset_source, dataset_hash, n_images,"
    " class_names, best_weights, metrics, started_at, finished_at, wall_s, class_ids"
)


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

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def can_resume(self) -> bool:
        return self.status in ("interrupted", "cancelled") and last_checkpoint(self).is_file()

    @property
    def run_dir(self) -> Path:
        return Path(self.folder)


def ensure_schema(project: Project) -> None:
    with project.transaction() as db:
        # Statement by statement: executescript() would COMMIT the surrounding transaction.
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                db.execute(stmt)
        have = {r[1] for r in db.execute("PRAGMA table_info(train_runs)")}
        for name, decl in _ADDED_COLUMNS:
            if name not in have:
                db.execute(f"ALTER TABLE train_runs ADD COLUMN {name} {decl}")


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
    ensure_schema(project)
    run_id = time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)
    run_dir(project, run_id).mkdir(parents=True, exist_ok=False)
    now = time.time()
    with project.transaction() as db:
        db.execute(
            "INSERT INTO train_runs(id, created_at, updated_at, task, model, settings, status, dataset_source)"
            " VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)",
            (run_id, now, now, settings.task, settings.model, json.dumps(settings.to_json()),
             None if dataset is None else str(Path(dataset).resolve())),
        )
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
    ensure_schema(project)
    now = time.time()
    with project.transaction() as db:
        if db.execute("SELECT 1 FROM train_runs WHERE status='running'").fetchone():
            return None
        row = db.execute("SELECT id FROM train_runs WHERE status='queued' ORDER BY created_at, id LIMIT 1").fetchone()
        if row is None:
            return None
        run_id = row[0]
        db.execute(
            "UPDATE train_runs SET status='running', phase='starting', pid=NULL, updated_at=?,"
            " started_at=COALESCE(started_at, ?) WHERE id=?",
            (now, now, run_id),
        )
    try:
        proc = _spawn_worker(project, run_id)
    except OSError as err:
        _finish(project, run_id, "failed", f"could not start the training process: {err}")
        return start_next(project)
    _CHILDREN[proc.pid] = proc
    with project.transaction() as db:
        db.execute("UPDATE train_runs SET pid=?, updated_at=? WHERE id=? AND status='running'",
                   (proc.pid, time.time(), run_id))
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
    ensure_schema(project)
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)
    now = time.time()
    rows = project._connection().execute(
        "SELECT id, pid, updated_at FROM train_runs WHERE status='running'"
    ).fetchall()
    for run_id, pid, updated_at in rows:
        dead = (now - updated_at > _START_GRACE_S) if pid is None else not _worker_alive(pid)
        if dead:
            rec = get(project, run_id)
            if rec.cancel_requested:
                _finish(project, run_id, "cancelled", "cancelled by the user")
                continue
            hint = ("resume it from its last checkpoint" if last_checkpoint(rec).is_file()
                    else "no checkpoint was saved yet; start it again")
            _finish(project, run_id, "interrupted",
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
    with project.transaction() as db:
        db.execute("UPDATE train_runs SET cancel_requested=1, updated_at=? WHERE id=?", (time.time(), run_id))
        queued = db.execute(
            "UPDATE train_runs SET status='cancelled', reason='cancelled before it started', finished_at=?"
            " WHERE id=? AND status='queued'", (time.time(), run_id)
        ).rowcount
    if queued:
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
        _finish(project, run_id, "cancelled", "cancelled by the user")
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
    with project.transaction() as db:
        db.execute(
            "UPDATE train_runs SET status='queued', resume=1, cancel_requested=0, reason=NULL, pid=NULL,"
            " finished_at=NULL, updated_at=? WHERE id=?", (time.time(), run_id)
        )
    start_next(project)
    return get(project, run_id)


# ----------------------------------------------------------------- reading
def get(project: Project, run_id: str) -> RunRecord:
    ensure_schema(project)
    row = project._connection().execute(f"SELECT {_COLUMNS} FROM train_runs WHERE id=?", (run_id,)).fetchone()
    if row is None:
        raise NotFoundError(f"run '{run_id}' does not exist in this project; list runs with 'python app.py runs --project DIR'.")
    return _row_to_record(project, row)


def list_runs(project: Project) -> list[RunRecord]:
    """All runs, newest first."""
    ensure_schema(project)
    rows = project._connection().execute(f"SELECT {_COLUMNS} FROM train_runs ORDER BY created_at DESC, id DESC")
    return [_row_to_record(project, r) for r in rows.fetchall()]


def _row_to_record(project: Project, r: tuple) -> RunRecord:
    return RunRecord(
        id=r[0], created_at=r[1], updated_at=r[2], task=r[3], model=r[4],
        settings=TrainSettings.from_json(json.loads(r[5])), status=r[6], reason=r[7], notice=r[8], phase=r[9],
        pid=r[10], resume=bool(r[11]), cancel_requested=bool(r[12]), epoch=r[13], epochs=r[14], batch_i=r[15],
        n_batches=r[16], eta_s=r[17], dataset_source=r[18], dataset_hash=r[19],
        n_images=json.loads(r[20]) if r[20] else {}, class_names=tuple(json.loads(r[21]) if r[21] else ()),
        best_weights=r[22], metrics=json.loads(r[23]) if r[23] else {}, started_at=r[24], finished_at=r[25],
        wall_s=r[26] or 0.0, folder=str(run_dir(project, r[0])),
        class_ids=None if r[27] is None else tuple(json.loads(r[27])),
    )


# ------------------------------------------------------ updates by the worker
def update(project: Project, run_id: str, **fields: Any) -> None:
    """Set columns of a run (JSON-encodes dicts and lists)."""
    cols = [c.strip() for c in _COLUMNS.split(",")]
    sets, args = [], []
    for key, value in fields.items():
        if key not in cols or key == "id":
            raise ValueError(f"unknown run column {key!r}")
        sets.append(f"{key}=?")
        args.append(json.dumps(value) if isinstance(value, (dict, list, tuple)) else value)
    sets.append("updated_at=?")
    args.append(time.time())
    with project.transaction() as db:
        db.execute(f"UPDATE train_runs SET {', '.join(sets)} WHERE id=?", (*args, run_id))


def add_epoch(project: Project, run_id: str, epoch: int, metrics: dict[str, float], epoch_s: float | None) -> None:
    with project.transaction() as db:
        db.execute(
            "INSERT INTO train_epochs(run_id, epoch, at, epoch_s, metrics) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(run_id, epoch) DO UPDATE SET at=excluded.at, epoch_s=excluded.epoch_s,"
            " metrics=excluded.metrics",
            (run_id, int(epoch), time.time(), epoch_s, json.dumps(metrics)),
        )


def _finish(project: Project, run_id: str, status: JobStatus, reason: str | None, **fields: Any) -> None:
    now = time.time()
    with project.transaction() as db:
        row = db.execute("SELECT started_at, wall_s, status FROM train_runs WHERE id=?", (run_id,)).fetchone()
        if row is None or row[2] in FINISHED:
            return  # someone else (the worker or a cancel) already recorded the end
        update(project, run_id, status=status, reason=reason, phase=None, finished_at=now, eta_s=None, **fields)
