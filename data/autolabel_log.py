"""The autolabel visited log: which images a proposer already proposed on (table ``autolabel_done``).

Batch auto-label (:mod:`annotate.autolabel`) marks an image in the same transaction as its
proposals, so a re-run after a crash or a cancel skips the images already done by the same
proposer. The table is a :class:`~data.store.TableSet` registered with the store, which creates
it; a row goes with its image (``ON DELETE CASCADE``).
"""

from __future__ import annotations

import time

from data.store import Project, TableSet, register_tables

TABLES = register_tables(TableSet(
    name="autolabel_log",
    ddl="""
CREATE TABLE IF NOT EXISTS autolabel_done (
    proposer TEXT NOT NULL,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    proposals INTEGER NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (proposer, image_id)
)
""",
))


def visited(project: Project, proposer: str) -> set[int]:
    """Ids of the images ``proposer`` already proposed on."""
    project.ensure_tables(TABLES)
    return {r[0] for r in project.query("SELECT image_id FROM autolabel_done WHERE proposer=?", (proposer,))}


def mark_visited(project: Project, proposer: str, image_id: int, proposals: int) -> None:
    """Record that ``proposer`` proposed on an image (``proposals`` kept); joins an open transaction."""
    project.ensure_tables(TABLES)
    with project.transaction() as db:
        db.execute(
            "INSERT OR REPLACE INTO autolabel_done(proposer, image_id, proposals, at) VALUES (?, ?, ?, ?)",
            (proposer, int(image_id), int(proposals), time.time()),
        )
