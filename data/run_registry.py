"""The run registry's rows: tables ``train_runs`` and ``train_epochs`` in the project database.

Storage only: :mod:`train.jobs` schedules the runs and turns these rows into ``RunRecord`` s,
:mod:`train.runs` reads what they produced. Rows come back as stored (JSON columns as text,
``{column: value}``); :func:`update` JSON-encodes dicts, lists and tuples on the way in.

The tables are a :class:`~data.store.TableSet` registered with the store, which creates them
(with a new project, when it upgrades an older one, and on first use here). Every function is
one transaction; :func:`claim_next` is one ``BEGIN IMMEDIATE`` transaction, so of several
processes claiming at once exactly one wins.
"""

from __future__ import annotations

import json
import time
from typing import Any

from data.store import Project, TableSet, register_tables

# Statuses after which a run never changes again (but for a resume, which queues it anew).
FINISHED: tuple[str, ...] = ("succeeded", "failed", "cancelled", "interrupted")

TABLES = register_tables(TableSet(
    name="run_registry",
    ddl="""
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
""",
    # Added after a release: nullable, so a record written before reads as "not recorded".
    added_columns=(
        ("train_runs", "class_ids", "TEXT"),  # JSON list: the project class id of each model class index
        # JSON {path relative to the run folder: SHA-256}: each checkpoint as the worker wrote it
        ("train_runs", "weights_sha256", "TEXT"),
    ),
))

# The columns of a run row, in the order rows are read.
COLUMNS: tuple[str, ...] = (
    "id", "created_at", "updated_at", "task", "model", "settings", "status", "reason", "notice", "phase", "pid",
    "resume", "cancel_requested", "epoch", "epochs", "batch_i", "n_batches", "eta_s", "dataset_source",
    "dataset_hash", "n_images", "class_names", "best_weights", "metrics", "started_at", "finished_at", "wall_s",
    "class_ids", "weights_sha256",
)
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM train_runs"


def _ready(project: Project) -> Project:
    project.ensure_tables(TABLES)
    return project


# ---------------------------------------------------------------------- runs
def insert(project: Project, run_id: str, task: str, model: str, settings: dict[str, Any],
           dataset_source: str | None) -> None:
    """Record a new ``queued`` run."""
    now = time.time()
    with _ready(project).transaction() as db:
        db.execute(
            "INSERT INTO train_runs(id, created_at, updated_at, task, model, settings, status, dataset_source)"
            " VALUES (?, ?, ?, ?, ?, ?, 'queued', ?)",
            (run_id, now, now, task, model, json.dumps(settings), dataset_source),
        )


def claim_next(project: Project) -> str | None:
    """Mark the oldest queued run ``running`` (phase ``starting``, no pid yet) unless one is running.

    One ``BEGIN IMMEDIATE`` transaction: of several processes claiming at once exactly one wins.
    Returns the claimed run's id, or None.
    """
    now = time.time()
    with _ready(project).transaction() as db:
        if db.execute("SELECT 1 FROM train_runs WHERE status='running'").fetchone():
            return None
        row = db.execute("SELECT id FROM train_runs WHERE status='queued' ORDER BY created_at, id LIMIT 1").fetchone()
        if row is None:
            return None
        db.execute(
            "UPDATE train_runs SET status='running', phase='starting', pid=NULL, updated_at=?,"
            " started_at=COALESCE(started_at, ?) WHERE id=?",
            (now, now, row[0]),
        )
    return row[0]


def set_pid(project: Project, run_id: str, pid: int) -> None:
    """Record the worker process of a run, if it is still ``running``."""
    with _ready(project).transaction() as db:
        db.execute("UPDATE train_runs SET pid=?, updated_at=? WHERE id=? AND status='running'",
                   (pid, time.time(), run_id))


def running(project: Project) -> list[tuple[str, int | None, float]]:
    """``(id, pid, updated_at)`` of every ``running`` run."""
    return _ready(project).query("SELECT id, pid, updated_at FROM train_runs WHERE status='running'")


def get(project: Project, run_id: str) -> dict[str, Any] | None:
    """One run row ``{column: value}`` (JSON columns as text), or None."""
    rows = _ready(project).query(f"{_SELECT} WHERE id=?", (run_id,))
    return dict(zip(COLUMNS, rows[0], strict=True)) if rows else None


def list_all(project: Project) -> list[dict[str, Any]]:
    """Every run row, newest first."""
    rows = _ready(project).query(f"{_SELECT} ORDER BY created_at DESC, id DESC")
    return [dict(zip(COLUMNS, r, strict=True)) for r in rows]


def update(project: Project, run_id: str, **fields: Any) -> None:
    """Set columns of a run (JSON-encodes dicts, lists and tuples) and its ``updated_at``."""
    sets, args = [], []
    for key, value in fields.items():
        if key not in COLUMNS or key == "id":
            raise ValueError(f"unknown run column {key!r}")
        sets.append(f"{key}=?")
        args.append(json.dumps(value) if isinstance(value, (dict, list, tuple)) else value)
    sets.append("updated_at=?")
    args.append(time.time())
    with _ready(project).transaction() as db:
        db.execute(f"UPDATE train_runs SET {', '.join(sets)} WHERE id=?", (*args, run_id))


def finish(project: Project, run_id: str, status: str, reason: str | None, **fields: Any) -> bool:
    """Record the end of a run unless it already ended; True if this call recorded it.

    Sets ``status``, ``reason``, ``finished_at`` and clears ``phase`` and ``eta_s`` (with ``fields``
    on top), in one transaction with the check.
    """
    now = time.time()
    with _ready(project).transaction() as db:
        row = db.execute("SELECT status FROM train_runs WHERE id=?", (run_id,)).fetchone()
        if row is None or row[0] in FINISHED:
            return False  # someone else (the worker or a cancel) already recorded the end
        update(project, run_id, status=status, reason=reason, phase=None, finished_at=now, eta_s=None, **fields)
    return True


def request_cancel(project: Project, run_id: str, queued_reason: str) -> bool:
    """Flag a run as cancel-requested; a still ``queued`` one is cancelled at once (with
    ``queued_reason``). True if it was queued (nothing runs, nothing more to stop)."""
    with _ready(project).transaction() as db:
        db.execute("UPDATE train_runs SET cancel_requested=1, updated_at=? WHERE id=?", (time.time(), run_id))
        queued = db.execute(
            "UPDATE train_runs SET status='cancelled', reason=?, finished_at=? WHERE id=? AND status='queued'",
            (queued_reason, time.time(), run_id),
        ).rowcount
    return bool(queued)


def requeue(project: Project, run_id: str) -> None:
    """Queue a run again to resume it: ``queued``, ``resume`` set, cancel flag, reason, pid and end cleared."""
    with _ready(project).transaction() as db:
        db.execute(
            "UPDATE train_runs SET status='queued', resume=1, cancel_requested=0, reason=NULL, pid=NULL,"
            " finished_at=NULL, updated_at=? WHERE id=?", (time.time(), run_id)
        )


def delete(project: Project, run_id: str) -> None:
    """Delete a run's row and its epochs."""
    with _ready(project).transaction() as db:
        db.execute("DELETE FROM train_epochs WHERE run_id=?", (run_id,))
        db.execute("DELETE FROM train_runs WHERE id=?", (run_id,))


# -------------------------------------------------------------------- epochs
def add_epoch(project: Project, run_id: str, epoch: int, metrics: dict[str, float], epoch_s: float | None) -> None:
    """Record (or replace) the metrics of one finished epoch."""
    with _ready(project).transaction() as db:
        db.execute(
            "INSERT INTO train_epochs(run_id, epoch, at, epoch_s, metrics) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(run_id, epoch) DO UPDATE SET at=excluded.at, epoch_s=excluded.epoch_s,"
            " metrics=excluded.metrics",
            (run_id, int(epoch), time.time(), epoch_s, json.dumps(metrics)),
        )


def epochs(project: Project, run_id: str) -> list[tuple[int, float, float | None, str]]:
    """``(epoch, at, epoch_s, metrics JSON)`` of a run's epochs, in order."""
    return _ready(project).query(
        "SELECT epoch, at, epoch_s, metrics FROM train_epochs WHERE run_id=? ORDER BY epoch", (run_id,)
    )
