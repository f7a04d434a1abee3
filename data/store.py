"""The project store: one folder with an SQLite database (WAL), the images, caches and runs.

All persistence goes through :class:`Project`, so a server database can replace
SQLite behind the same methods. Every public mutating method is one transaction:
killing the process loses at most the action in flight. SQL lives in the ``data``
package only: this module, and the data modules that keep their own tables in the
project database (:mod:`data.run_registry`, :mod:`data.autolabel_log`).

The schema is versioned (``meta.schema_version``, :data:`SCHEMA_VERSION`). Opening
an older project upgrades it in place, in one transaction, through the ordered
:data:`_MIGRATIONS`; a project written by a newer version is refused. Data modules
declare their tables as a :class:`TableSet` and hand it to :func:`register_tables`
(the schema hook): the store creates them with a new project, when it upgrades an
older one, and on their first use (:meth:`Project.ensure_tables`), adding columns
a later release declared to tables an older one created.

Layout of a project folder::

    project.db      SQLite database
    images/         stored image files, named by content hash
    cache/          embeddings and other derived data (safe to delete)
    runs/           training runs
    exports/        exports made from the UI
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NoReturn

import cv2
import numpy as np

from data.annotations import STATUSES, Annotations
from data.colors import PALETTE
from data.errors import InputError, NotFoundError, ProjectError
from data.geometry import crop_mask, decode_rle, encode_rle
from data.names import clean_name

ImageStatus = Literal["unlabeled", "done", "good"]
IMAGE_STATUSES: tuple[str, ...] = ("unlabeled", "done", "good")
DB_NAME = "project.db"
# Version history: 1 - images, classes, annotations (data modules created their own tables on first
# use); 2 - the tables of data modules (run registry, autolabel log) are created by the store;
# 3 - masks kept as crops: ``annotations.rle`` is the RLE of the mask cut to its box, whose top-left
# pixel is ``(crop_x, crop_y)`` (before: the RLE of the full-size mask).
SCHEMA_VERSION = 3
SUBFOLDERS: tuple[str, ...] = ("images", "cache", "runs", "exports")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    file TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL UNIQUE,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'unlabeled' CHECK (status IN ('unlabeled', 'done', 'good')),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS classes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    color TEXT NOT NULL,
    position INTEGER NOT NULL,
    prompts TEXT NOT NULL DEFAULT '[]'
);
CREATE TABLE IF NOT EXISTS annotations (
    id INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    class_id INTEGER NOT NULL REFERENCES classes(id),
    x0 REAL NOT NULL, y0 REAL NOT NULL, x1 REAL NOT NULL, y1 REAL NOT NULL,
    rle TEXT,
    crop_x INTEGER,
    crop_y INTEGER,
    source TEXT NOT NULL,
    score REAL,
    status TEXT NOT NULL CHECK (status IN ('proposed', 'accepted', 'rejected')),
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS annotations_by_image ON annotations(image_id, status);
"""


# ----------------------------------------------------------------- schema hook
@dataclass(frozen=True)
class TableSet:
    """Tables a data module keeps in the project database, created by the store (the schema hook).

    ``ddl`` holds ``CREATE TABLE/INDEX IF NOT EXISTS`` statements of the tables as they are now;
    ``added_columns`` lists ``(table, column, declaration)`` of columns added after the table was
    first released, which the store adds where an older database lacks them (declare them nullable
    or with a default, so older rows read as "not recorded").
    """

    name: str
    ddl: str
    added_columns: tuple[tuple[str, str, str], ...] = ()


_TABLE_SETS: dict[str, TableSet] = {}


def register_tables(tables: TableSet) -> TableSet:
    """Register a data module's tables (call it at the module's import); returns ``tables``.

    Registered sets are created with a new project, when an older project is upgraded, and on
    their first use through :meth:`Project.ensure_tables`. Registering the same name again
    replaces the earlier set (a module reload).
    """
    _TABLE_SETS[tables.name] = tables
    return tables


def _apply_tables(db: sqlite3.Connection, tables: TableSet) -> None:
    """Create ``tables`` and add their missing columns; idempotent, inside the caller's transaction."""
    # Statement by statement: executescript() would COMMIT the surrounding transaction.
    for stmt in tables.ddl.split(";"):
        if stmt.strip():
            db.execute(stmt)
    for table, column, decl in tables.added_columns:
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        if column not in have:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")


def _to_v2(db: sqlite3.Connection) -> None:
    """1 -> 2: create the registered tables of the data modules (those a v1 project already has, made
    by the modules themselves on first use, gain their later columns: ``train_runs.class_ids``)."""
    for tables in _TABLE_SETS.values():
        _apply_tables(db, tables)


def _to_v3(db: sqlite3.Connection) -> None:
    """2 -> 3: each full-size mask RLE becomes the RLE of the mask cut to its box, at ``(crop_x, crop_y)``."""
    have = {r[1] for r in db.execute("PRAGMA table_info(annotations)")}
    for column in ("crop_x", "crop_y"):
        if column not in have:
            db.execute(f"ALTER TABLE annotations ADD COLUMN {column} INTEGER")
    rows = db.execute("SELECT id, rle FROM annotations WHERE rle IS NOT NULL AND crop_x IS NULL").fetchall()
    for ann_id, text in rows:
        crop, x0, y0 = crop_mask(decode_rle(json.loads(text)))
        db.execute("UPDATE annotations SET rle=?, crop_x=?, crop_y=? WHERE id=?",
                   (json.dumps(encode_rle(crop)), x0, y0, ann_id))


# In order: _MIGRATIONS[i] upgrades a database of version i + 1 to version i + 2.
_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_to_v2, _to_v3)
assert len(_MIGRATIONS) == SCHEMA_VERSION - 1, "one migration per schema version"


@dataclass(frozen=True)
class ImageRecord:
    id: int
    name: str
    file: str
    sha256: str
    width: int
    height: int
    status: str


@dataclass(frozen=True)
class ClassRecord:
    id: int
    name: str
    color: str
    position: int
    prompts: tuple[str, ...]


class Project:
    """A labeling project on disk. Cheap to construct; safe to share between threads.

    Opening a project written by an older version upgrades its database in place (one
    transaction) and creates the project's missing folders (git keeps no empty ones).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()
        self.db_path = self.root / DB_NAME
        if not self.db_path.is_file():
            raise ProjectError(
                f"{self.root} is not a Defect Studio project (no {DB_NAME}). "
                f"Create one with 'python app.py import --project {root} IMAGES...'."
            )
        self._local = threading.local()
        self._tables_ready: set[str] = set()
        why = _cannot_write(self.root)
        if why:  # SQLite (WAL) writes beside the database even to read it
            raise ProjectError(f"the project folder {self.root} cannot be written ({why}). Defect Studio writes its "
                               f"database even to read it; make the folder writable, or copy the project to a "
                               f"writable folder and open the copy.")
        try:
            with self.transaction() as db:
                self._upgrade(db)
        except sqlite3.DatabaseError as err:
            raise ProjectError(f"{self.db_path} cannot be read as a project database ({err}).") from err
        for sub in SUBFOLDERS:
            with contextlib.suppress(OSError):  # a read-only copy still opens
                (self.root / sub).mkdir(exist_ok=True)

    def _upgrade(self, db: sqlite3.Connection) -> None:
        """Check the schema version and run the migrations from it to :data:`SCHEMA_VERSION`."""
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        version = None if row is None else int(row[0])
        if version is None or version > SCHEMA_VERSION:
            raise ProjectError(f"{self.db_path} was written by a newer or unknown version of Defect Studio.")
        if version == SCHEMA_VERSION:
            return
        for migrate in _MIGRATIONS[max(version, 1) - 1:]:
            migrate(db)
        db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION),))
        self._tables_ready.update(_TABLE_SETS)

    @property
    def schema_version(self) -> int:
        """The schema version of the database (:data:`SCHEMA_VERSION` once opened)."""
        return int(self.query("SELECT value FROM meta WHERE key='schema_version'")[0][0])

    def ensure_tables(self, tables: TableSet) -> None:
        """Create a registered table set (and its added columns) unless this object already did.

        Data modules call it before they touch their tables, so a set registered after the
        project was opened, or missing from a database upgraded without it, is still created.
        Idempotent: each :class:`Project` object checks the database once per set.
        """
        if tables.name in self._tables_ready:
            return
        # No lock: two threads may both apply the set, each in its own transaction, harmlessly.
        with self.transaction() as db:
            _apply_tables(db, tables)
        self._tables_ready.add(tables.name)

    # ------------------------------------------------------------- lifecycle
    @classmethod
    def create(cls, root: str | Path, classes: list[str] | tuple[str, ...] = ()) -> Project:
        """Create a project folder (or open it if it already is one)."""
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise ProjectError(f"{root} exists and is not a folder; choose another --project path.")
        for sub in SUBFOLDERS:
            (root / sub).mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(root / DB_NAME)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_SCHEMA)
            new = db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            ).rowcount
            if new:  # a new database gets the registered tables now; an older one is upgraded on opening
                for tables in _TABLE_SETS.values():
                    _apply_tables(db, tables)
            db.commit()
        finally:
            db.close()
        project = cls(root)
        for name in classes:
            if project.class_by_name(name) is None:
                project.add_class(name)
        return project

    @classmethod
    def open_or_create(cls, root: str | Path) -> Project:
        return cls(root) if (Path(root) / DB_NAME).is_file() else cls.create(root)

    def _connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
            try:
                conn.execute("PRAGMA foreign_keys=ON")
                conn.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.OperationalError as err:
                conn.close()
                self._raise_unwritable(err)
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (the next call opens a new one)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One atomic unit of work (BEGIN IMMEDIATE ... COMMIT, rolled back on error)."""
        conn = self._connection()
        if getattr(self._local, "snapshot", False):
            # Joining the read transaction would write over a stale state (and fail at once when
            # another session wrote since): reading code must not write.
            raise RuntimeError("a write inside Project.snapshot(); write before or after it")
        if conn.in_transaction:  # nested: join the outer transaction
            yield conn
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            self._raise_unwritable(err)
        try:
            yield conn
        except BaseException as err:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(err, sqlite3.OperationalError):
                self._raise_unwritable(err)
            raise
        else:
            try:
                conn.execute("COMMIT")
            except sqlite3.OperationalError as err:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
                self._raise_unwritable(err)

    def _raise_unwritable(self, err: sqlite3.OperationalError) -> NoReturn:
        """Raise ``err``, in words when it says the project cannot be written."""
        translated = self._unwritable(err)
        if translated is None:
            raise err
        raise translated from err

    def _unwritable(self, err: sqlite3.OperationalError) -> ProjectError | None:
        """``err`` in words when it says the database cannot be written (read-only, disk full), else None."""
        text = str(err).lower()
        if not any(k in text for k in ("readonly", "read-only", "disk is full", "disk i/o", "unable to open")):
            return None
        why = "the disk is full" if "full" in text else "its folder or database is read-only or was removed"
        return ProjectError(f"the project {self.root} cannot be written now ({why}; SQLite: {err}). This change was "
                            f"not saved; everything saved before is kept. Make the folder writable and try again.")

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Reads inside see one state of the project, whatever other sessions write meanwhile.

        A read transaction (the database is in WAL mode, so writers are not blocked): an export
        that runs while the user keeps labelling writes the labels as they were when it started,
        never half of a later edit (or an annotation of a class its class list does not have).
        """
        conn = self._connection()
        if conn.in_transaction:  # nested: the outer transaction already holds one state
            yield
            return
        conn.execute("BEGIN")
        self._local.snapshot = True
        try:
            yield
        finally:
            self._local.snapshot = False
            conn.execute("COMMIT")  # it only read: nothing to roll back

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
        """The rows of one read statement (for the data modules that keep tables in this database).

        Runs on this thread's connection, so inside :meth:`transaction` it sees that transaction's
        writes, and inside :meth:`snapshot` the snapshot's state.
        """
        return self._connection().execute(sql, tuple(params)).fetchall()

    def path(self, *parts: str) -> Path:
        return self.root.joinpath(*parts)

    # --------------------------------------------------------------- settings
    def get_setting(self, key: str, default: Any = None) -> Any:
        row = self._connection().execute("SELECT value FROM meta WHERE key=?", (f"setting:{key}",)).fetchone()
        return default if row is None else json.loads(row[0])

    def set_setting(self, key: str, value: Any) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value=excluded.value",
                (f"setting:{key}", json.dumps(value, sort_keys=True)),
            )

    # ---------------------------------------------------------------- classes
    def classes(self) -> list[ClassRecord]:
        rows = self._connection().execute(
            "SELECT id, name, color, position, prompts FROM classes ORDER BY position, id"
        ).fetchall()
        return [ClassRecord(r[0], r[1], r[2], r[3], tuple(json.loads(r[4]))) for r in rows]

    def class_by_name(self, name: str) -> ClassRecord | None:
        return next((c for c in self.classes() if c.name == name), None)

    def get_class(self, class_id: int) -> ClassRecord:
        c = next((c for c in self.classes() if c.id == int(class_id)), None)
        if c is None:
            raise NotFoundError(f"class id {class_id} does not exist in this project.")
        return c

    def add_class(self, name: str, color: str | None = None, prompts: tuple[str, ...] = ()) -> ClassRecord:
        name = _clean_class_name(name)
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM classes WHERE name=?", (name,)).fetchone():
                raise InputError(f"a class named '{name}' already exists; pick another name.")
            n = db.execute("SELECT COUNT(*), COALESCE(MAX(position), -1) FROM classes").fetchone()
            color = _check_color(color or PALETTE[n[0] % len(PALETTE)])
            cur = db.execute(
                "INSERT INTO classes(name, color, position, prompts) VALUES (?, ?, ?, ?)",
                (name, color, n[1] + 1, json.dumps(list(prompts))),
            )
            class_id = cur.lastrowid
        return self.get_class(class_id)

    def add_classes(self, names: Sequence[str]) -> list[ClassRecord]:
        """Add the classes of ``names`` this project lacks, in order, in one transaction (an import's
        thousands of categories); returns every class."""
        with self.transaction() as db:
            have = {r[0] for r in db.execute("SELECT name FROM classes")}
            n, last = db.execute("SELECT COUNT(*), COALESCE(MAX(position), -1) FROM classes").fetchone()
            rows: list[tuple] = []
            for name in dict.fromkeys(_clean_class_name(x) for x in names):
                if name not in have:
                    color = _check_color(PALETTE[(n + len(rows)) % len(PALETTE)])
                    rows.append((name, color, last + 1 + len(rows), "[]"))
            db.executemany("INSERT INTO classes(name, color, position, prompts) VALUES (?, ?, ?, ?)", rows)
        return self.classes()

    def update_class(
        self, class_id: int, name: str | None = None, color: str | None = None, prompts: tuple[str, ...] | None = None
    ) -> ClassRecord:
        current = self.get_class(class_id)
        with self.transaction() as db:
            if name is not None and _clean_class_name(name) != current.name:
                name = _clean_class_name(name)
                if db.execute("SELECT 1 FROM classes WHERE name=?", (name,)).fetchone():
                    raise InputError(f"a class named '{name}' already exists; pick another name.")
                db.execute("UPDATE classes SET name=? WHERE id=?", (name, class_id))
            if color is not None:
                db.execute("UPDATE classes SET color=? WHERE id=?", (_check_color(color), class_id))
            if prompts is not None:
                clean = [p.strip() for p in prompts if p.strip()]
                db.execute("UPDATE classes SET prompts=? WHERE id=?", (json.dumps(clean), class_id))
        return self.get_class(class_id)

    def delete_class(self, class_id: int, move_to: int | None = None) -> int:
        """Delete a class. Its annotations move to ``move_to`` or are deleted; returns how many were affected."""
        self.get_class(class_id)
        with self.transaction() as db:
            if move_to is not None:
                self.get_class(move_to)
                n = db.execute(
                    "UPDATE annotations SET class_id=?, updated_at=? WHERE class_id=?", (move_to, time.time(), class_id)
                ).rowcount
            else:
                n = db.execute("DELETE FROM annotations WHERE class_id=?", (class_id,)).rowcount
            db.execute("DELETE FROM classes WHERE id=?", (class_id,))
        return n

    def class_names(self) -> dict[int, str]:
        return {c.id: c.name for c in self.classes()}

    # ----------------------------------------------------------------- images
    def add_image(
        self,
        content: bytes,
        name: str,
        sha256: str,
        width: int,
        height: int,
        ext: str,
        annotations: Annotations | None = None,
        status: ImageStatus | None = None,
    ) -> tuple[int, bool]:
        """Store an already validated and normalised image (and its labels) in one transaction.

        Returns ``(image_id, created)``; an image whose content is already stored is not
        added again (``created`` is False) and its labels are not duplicated.
        """
        existing = self.image_by_hash(sha256)
        if existing is not None:
            return existing.id, False
        file = f"images/{sha256[:20]}{ext}"
        atomic_write_bytes(self.root / file, content)
        now = time.time()
        with self.transaction() as db:
            row = db.execute("SELECT id FROM images WHERE sha256=?", (sha256,)).fetchone()
            if row:  # another thread stored it meanwhile
                return row[0], False
            if status is None:
                status = "done" if annotations is not None and len(annotations) else "unlabeled"
            cur = db.execute(
                "INSERT INTO images(name, file, sha256, width, height, status, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (name, file, sha256, width, height, status, now, now),
            )
            image_id = cur.lastrowid
            if annotations is not None and len(annotations):
                self._insert_annotations(db, image_id, annotations, height, width)
        return image_id, True

    def images(self, status: str | None = None) -> list[ImageRecord]:
        sql = "SELECT id, name, file, sha256, width, height, status FROM images"
        args: tuple = ()
        if status is not None:
            sql += " WHERE status=?"
            args = (status,)
        return [ImageRecord(*r) for r in self._connection().execute(sql + " ORDER BY id", args).fetchall()]

    def image(self, image_id: int) -> ImageRecord:
        row = self._connection().execute(
            "SELECT id, name, file, sha256, width, height, status FROM images WHERE id=?", (int(image_id),)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"image id {image_id} does not exist in this project.")
        return ImageRecord(*row)

    def image_by_hash(self, sha256: str) -> ImageRecord | None:
        row = self._connection().execute(
            "SELECT id, name, file, sha256, width, height, status FROM images WHERE sha256=?", (sha256,)
        ).fetchone()
        return None if row is None else ImageRecord(*row)

    def image_path(self, image_id: int) -> Path:
        return self.root / self.image(image_id).file

    def load_image(self, image_id: int) -> np.ndarray:
        """The stored image as RGB uint8 ``(H, W, 3)``."""
        rec = self.image(image_id)
        bgr = cv2.imread(str(self.root / rec.file), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
        if bgr is None:
            raise ProjectError(f"stored image {rec.file} is missing or unreadable; re-import '{rec.name}'.")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def set_image_status(self, image_id: int, status: ImageStatus) -> None:
        """Mark an image (``good``: defect-free; accepting a defect on it later un-marks it,
        :meth:`_unmark_good`).

        What is trained and exported can never surprise: an image with unreviewed proposals is
        not marked ``done`` or ``good`` (they would be silent false negatives), and one with
        accepted defects is not ``good``. Each refusal says what to do instead."""
        if status not in IMAGE_STATUSES:
            raise InputError(f"image status must be one of {', '.join(IMAGE_STATUSES)}, not '{status}'.")
        with self.transaction() as db:
            row = db.execute("SELECT name FROM images WHERE id=?", (int(image_id),)).fetchone()
            if row is None:
                raise NotFoundError(f"image id {image_id} does not exist in this project.")
            if status in ("done", "good"):
                counts = dict(db.execute("SELECT status, COUNT(*) FROM annotations WHERE image_id=? "
                                         "AND status IN ('proposed', 'accepted') GROUP BY status",
                                         (int(image_id),)).fetchall())
                if counts.get("proposed"):
                    n = counts["proposed"]
                    raise InputError(f"'{row[0]}' has {n} unreviewed proposal{'s' * (n > 1)}: accept or reject "
                                     f"{'them' if n > 1 else 'it'} before marking the image {status}.")
                if status == "good" and counts.get("accepted"):
                    raise InputError(f"'{row[0]}' has accepted defects, so it cannot be marked good; "
                                     f"delete them first (or mark it done).")
            db.execute("UPDATE images SET status=?, updated_at=? WHERE id=?", (status, time.time(), int(image_id)))

    def labels_not_done(self) -> list[tuple[int, int, int]]:
        """``(image id, accepted annotations, unreviewed proposals)`` of every ``unlabeled`` image that
        holds accepted annotations: labels that neither export nor train until the image is done."""
        rows = self._connection().execute(
            "SELECT i.id, SUM(a.status='accepted'), SUM(a.status='proposed') FROM images i "
            "JOIN annotations a ON a.image_id=i.id WHERE i.status='unlabeled' GROUP BY i.id "
            "HAVING SUM(a.status='accepted') > 0 ORDER BY i.id").fetchall()
        return [(int(r[0]), int(r[1]), int(r[2])) for r in rows]

    def mark_labeled_done(self) -> tuple[int, int]:
        """Mark ``done`` every image of :meth:`labels_not_done` whose proposals are all reviewed;
        ``(images marked, images left for their proposals)``."""
        marked = waiting = 0
        with self.transaction():
            for image_id, _, proposed in self.labels_not_done():
                if proposed:
                    waiting += 1
                else:
                    self.set_image_status(image_id, "done")
                    marked += 1
        return marked, waiting

    def delete_image(self, image_id: int) -> None:
        rec = self.image(image_id)
        with self.transaction() as db:
            db.execute("DELETE FROM annotations WHERE image_id=?", (rec.id,))
            db.execute("DELETE FROM images WHERE id=?", (rec.id,))
        with contextlib.suppress(FileNotFoundError):
            (self.root / rec.file).unlink()

    # ------------------------------------------------------------ annotations
    def annotations(
        self, image_id: int | ImageRecord, statuses: tuple[str, ...] = ("accepted", "proposed"), with_masks: bool = True
    ) -> Annotations:
        """The image's annotations of these statuses, ordered by id, masks as stored (crops), each row's
        version in ``data["updated_at"]`` (it changes whenever the row is written).

        ``with_masks=False`` reads the rows without their masks (all box-only): for counting, boxes, and
        telling which rows changed since a version was seen. ``image_id`` may be the image's record
        (read in the same snapshot), which saves looking it up.
        """
        rec = image_id if isinstance(image_id, ImageRecord) else self.image(image_id)
        marks = ",".join("?" * len(statuses))
        rle = "rle" if with_masks else "NULL"
        rows = self._connection().execute(
            f"SELECT id, class_id, x0, y0, x1, y1, {rle}, crop_x, crop_y, source, score, status, updated_at"
            f" FROM annotations WHERE image_id=? AND status IN ({marks}) ORDER BY id",
            (rec.id, *statuses),
        ).fetchall()
        return Annotations.from_rows(rows, rec.height, rec.width)

    def add_annotations(self, image_id: int, annotations: Annotations) -> list[int]:
        """Store annotations on an image in one transaction; returns their new ids.

        The user says when an image is ``done``; accepting a defect on a ``good`` image
        makes it ``unlabeled`` again, since it evidently was not defect-free.
        """
        rec = self.image(image_id)
        with self.transaction() as db:
            ids = self._insert_annotations(db, rec.id, annotations, rec.height, rec.width)
            self._unmark_good(db, [i for i, s in zip(ids, annotations.status, strict=True) if s == "accepted"])
        return ids

    @staticmethod
    def _unmark_good(db: sqlite3.Connection, accepted_ids: list[int]) -> None:
        """The one rule: an accepted defect on a ``good`` image makes it ``unlabeled`` again, since it
        evidently was not defect-free (the user says when an image is ``done``)."""
        if accepted_ids:
            db.execute(
                "UPDATE images SET status='unlabeled', updated_at=? WHERE status='good' AND id IN"
                f" (SELECT image_id FROM annotations WHERE id IN ({','.join('?' * len(accepted_ids))}))",
                (time.time(), *(int(i) for i in accepted_ids)),
            )

    def _insert_annotations(
        self, db: sqlite3.Connection, image_id: int, ann: Annotations, height: int, width: int
    ) -> list[int]:
        known = {r[0] for r in db.execute("SELECT id FROM classes")}
        if ann.has_mask.any() and ann.shape != (height, width):
            raise InputError(f"mask size {ann.shape} does not match the image ({height}, {width}).")
        ann = ann.tight()
        now = time.time()
        ids = []
        for i in range(len(ann)):
            class_id = int(ann.class_id[i])
            if class_id not in known:
                raise InputError(f"class id {class_id} does not exist in this project; add the class first.")
            status = str(ann.status[i])
            if status not in STATUSES:
                raise InputError(f"annotation status must be one of {', '.join(STATUSES)}, not '{status}'.")
            score = float(ann.confidence[i])
            x0, y0, x1, y1 = (float(v) for v in ann.xyxy[i])
            cx, cy = (int(v) for v in ann.origins[i]) if ann.crops[i] is not None else (None, None)
            cur = db.execute(
                "INSERT INTO annotations(image_id, class_id, x0, y0, x1, y1, rle, crop_x, crop_y, source, score,"
                " status, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (image_id, class_id, x0, y0, x1, y1, ann.crop_json(i), cx, cy, str(ann.source[i]),
                 None if np.isnan(score) else score, status, now, now),
            )
            ids.append(cur.lastrowid)
        return ids

    def annotation(self, annotation_id: int) -> tuple[int, Annotations]:
        """``(image_id, one-row container)``: only this annotation's row is read and decoded."""
        row = self._connection().execute(
            "SELECT a.image_id, i.height, i.width, a.id, a.class_id, a.x0, a.y0, a.x1, a.y1, a.rle, a.crop_x,"
            " a.crop_y, a.source, a.score, a.status, a.updated_at FROM annotations a JOIN images i ON i.id = a.image_id"
            " WHERE a.id=?", (int(annotation_id),)
        ).fetchone()
        if row is None:
            raise NotFoundError(f"annotation id {annotation_id} does not exist.")
        return row[0], Annotations.from_rows([row[3:]], row[1], row[2])

    def update_annotation(
        self,
        annotation_id: int,
        *,
        class_id: int | None = None,
        status: str | None = None,
        shape: Annotations | None = None,
        source: str | None = None,
    ) -> None:
        """Change one annotation in one transaction. ``shape``: a one-row container whose mask (cut to
        its box) and box replace the annotation's."""
        sets, args = [], []
        if class_id is not None:
            self.get_class(class_id)
            sets.append("class_id=?")
            args.append(int(class_id))
        if status is not None:
            if status not in STATUSES:
                raise InputError(f"annotation status must be one of {', '.join(STATUSES)}, not '{status}'.")
            sets.append("status=?")
            args.append(status)
        if shape is not None:
            if len(shape) != 1 or not shape.has_mask[0]:
                raise InputError("an annotation's new shape is one row with a mask.")
            one = shape.tight()
            if not one.crops[0].any():
                raise InputError("the edited mask is empty; delete the annotation instead.")
            sets.append("rle=?, crop_x=?, crop_y=?, x0=?, y0=?, x1=?, y1=?")
            (h, w), (x, y) = one.crops[0].shape, (int(v) for v in one.origins[0])
            args.extend([one.crop_json(0), x, y, float(x), float(y), float(x + w), float(y + h)])
        if source is not None:
            sets.append("source=?")
            args.append(source)
        if not sets:
            return
        sets.append("updated_at=?")
        args.append(time.time())
        with self.transaction() as db:
            if not db.execute(f"UPDATE annotations SET {', '.join(sets)} WHERE id=?", (*args, int(annotation_id))).rowcount:
                raise NotFoundError(f"annotation id {annotation_id} does not exist.")
            if status == "accepted":
                self._unmark_good(db, [int(annotation_id)])

    def set_annotation_status(self, annotation_ids: list[int], status: str) -> int:
        if status not in STATUSES:
            raise InputError(f"annotation status must be one of {', '.join(STATUSES)}, not '{status}'.")
        ids = [int(i) for i in annotation_ids]
        if not ids:
            return 0
        with self.transaction() as db:
            n = db.execute(
                f"UPDATE annotations SET status=?, updated_at=? WHERE id IN ({','.join('?' * len(ids))})",
                (status, time.time(), *ids),
            ).rowcount
            if status == "accepted":
                self._unmark_good(db, ids)
            return n

    def delete_annotations(self, annotation_ids: list[int], only_status: str | None = None) -> int:
        """Delete these annotations; with ``only_status``, only those still of that status (a background
        writer's ``"proposed"``: one a user accepted or rejected meanwhile stays). Returns how many went."""
        ids = [int(i) for i in annotation_ids]
        if not ids:
            return 0
        where = f"id IN ({','.join('?' * len(ids))})" + (" AND status=?" if only_status else "")
        with self.transaction() as db:
            return db.execute(f"DELETE FROM annotations WHERE {where}", [*ids, *([only_status] if only_status else [])]
                              ).rowcount

    # ------------------------------------------------------------------ stats
    def annotation_counts(self) -> dict[int, dict[str, int]]:
        """Per image id, the number of annotations by status (images without any are absent)."""
        counts: dict[int, dict[str, int]] = {}
        for image_id, status, n in self._connection().execute(
            "SELECT image_id, status, COUNT(*) FROM annotations GROUP BY image_id, status"
        ):
            counts.setdefault(image_id, {})[status] = n
        return counts

    def class_ids_by_image(self, statuses: tuple[str, ...] = ("accepted",)) -> dict[int, frozenset[int]]:
        """Per image id, the class ids of its annotations of these statuses (images without any are absent)."""
        marks = ",".join("?" * len(statuses))
        out: dict[int, set[int]] = {}
        for image_id, class_id in self._connection().execute(
            f"SELECT DISTINCT image_id, class_id FROM annotations WHERE status IN ({marks})", tuple(statuses)
        ):
            out.setdefault(image_id, set()).add(class_id)
        return {k: frozenset(v) for k, v in out.items()}

    def stats(self) -> dict[str, Any]:
        db = self._connection()
        images = dict(db.execute("SELECT status, COUNT(*) FROM images GROUP BY status").fetchall())
        proposals = db.execute(
            "SELECT COUNT(DISTINCT image_id) FROM annotations WHERE status='proposed'"
        ).fetchone()[0]
        by_class = {c.name: {s: 0 for s in STATUSES} for c in self.classes()}
        for name, status, n in db.execute(
            "SELECT c.name, a.status, COUNT(*) FROM annotations a JOIN classes c ON c.id=a.class_id"
            " GROUP BY c.name, a.status"
        ):
            by_class[name][status] = n
        return {
            "project": str(self.root),
            "images": {"total": sum(images.values()), **{s: images.get(s, 0) for s in IMAGE_STATUSES},
                       "with_proposals": proposals},
            "classes": [c.name for c in self.classes()],
            "annotations": by_class,
        }


def _clean_class_name(name: str) -> str:
    name = clean_name(name)
    if not name:
        raise InputError("a class name cannot be empty.")
    if len(name) > 64:
        raise InputError(f"class name '{name[:20]}...' is longer than 64 characters; shorten it.")
    return name


def _check_color(color: str) -> str:
    c = color.strip()
    if len(c) == 7 and c[0] == "#" and all(ch in "0123456789abcdefABCDEF" for ch in c[1:]):
        return c.upper()
    raise InputError(f"colour '{color}' is not a #RRGGBB hex colour.")


def _cannot_write(folder: Path) -> str | None:
    """Why nothing can be written in ``folder`` (read-only file system, permissions, disk full), or None."""
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".write-probe-")
    except OSError as err:
        return err.strerror or str(err)
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return None


def atomic_write_bytes(path: Path, content: bytes) -> None:
    """Write a file so readers see the old or the new content, never a partial one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))
