"""Per-page labeling state, keyed by a server-generated token.

The Label screen's clicks go through ``gr.HTML`` server functions, which run outside
Gradio's queue and ``gr.State``. Each page gets a random token when it loads
(``demo.load``); the token maps to one :class:`LabelSession` here, and ``demo.unload``
drops the sessions of the closing browser tab. Nothing is shared between sessions
except the project (SQLite, one transaction per action) and the segmenter (its own lock).
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from data.annotations import Annotations, PackedAnnotations

MAX_UNDO = 30
# The bounds of the pages one server keeps, each overridable by its variable: live sessions (the
# longest idle one is closed for a new page), idle minutes before a session is dropped, and the
# undo history's bytes per session (the oldest steps go first).
MAX_SESSIONS = int(os.environ.get("DEFECT_STUDIO_MAX_SESSIONS", "16"))
IDLE_TTL_S = 60 * float(os.environ.get("DEFECT_STUDIO_SESSION_IDLE_MIN", "30"))
UNDO_BYTES = int(float(os.environ.get("DEFECT_STUDIO_UNDO_MB", "64")) * 2**20)
_CLOSED_KEPT = 1024  # tokens of closed sessions remembered, to tell a returning page why


@dataclass
class Pending:
    """What the user is building on the current image and has not accepted yet.

    No full-size array is kept: the candidates are crops inside their boxes (an image of
    12 MP costs the session its masks' pixels, not 12 MB per candidate and undo step).
    """

    points: list[tuple[float, float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: tuple[float, float, float, float] | None = None
    # C candidates, best first, as crops in image pixels; ``confidence``: the segmenter's
    # scores (nan for a hand-made or hand-edited mask). Never written in place.
    masks: Annotations | None = None
    # The segmenter's ``(C, 1, 256, 256)`` logits of the candidates (SAM backends), kept as
    # float16 (half the bytes; refinement feeds them back as float32), or None.
    low_res: np.ndarray | None = None
    chosen: int = 0
    manual: bool = False  # hand-made or hand-edited: stored with source "manual"
    editing_id: int | None = None  # an existing annotation being edited

    @property
    def mask(self) -> Annotations | None:
        """The chosen candidate as a one-row container (a crop), or None."""
        return None if self.masks is None else self.masks[self.chosen]

    def copy(self) -> Pending:
        # Candidates are never mutated in place (edits build new containers), so sharing them is safe.
        return Pending(list(self.points), list(self.labels), self.box, self.masks, self.low_res,
                       self.chosen, self.manual, self.editing_id)

    def pack(self) -> PackedPending:
        """This state for the undo history: the candidates RLE-packed (a mask as large as the image
        costs its runs, not 12 MB), the rest as it is."""
        state = self.copy()
        state.masks = None
        return PackedPending(state, None if self.masks is None else self.masks.pack())


@dataclass(frozen=True)
class PackedPending:
    """A :class:`Pending` kept in the undo history; :meth:`unpack` gives it back."""

    state: Pending  # without its candidates
    masks: PackedAnnotations | None

    def unpack(self) -> Pending:
        out = self.state.copy()
        out.masks = None if self.masks is None else self.masks.unpack()
        return out

    @property
    def nbytes(self) -> int:
        """About what this step holds: the logits, the packed masks and a fixed overhead."""
        low = self.state.low_res
        rles = 0 if self.masks is None else sum(len(t or "") for t in self.masks.rles)
        return 512 + (0 if low is None else int(low.nbytes)) + rles


@dataclass
class Undo:
    """One undoable step: a pending state to restore, or an accepted annotation to take back.

    Annotations are held as one-row containers (crops), never as full-size masks.
    """

    pending: PackedPending | None = None
    created_id: int | None = None  # annotation created by an accept
    # The state of an annotation updated by an accept, from before it: its row (``ids[0]``, class,
    # mask, ``source``, ``status``), to write back with ``Project.update_annotation``.
    restored: PackedAnnotations | None = None
    deleted: PackedAnnotations | None = None  # a deleted annotation (one row) to put back
    reviewed: tuple[int, str] | None = None  # a proposal accepted or rejected: (its id, the status before)

    @property
    def nbytes(self) -> int:
        packed = [p for p in (self.restored, self.deleted) if p is not None]
        return (256 + (0 if self.pending is None else self.pending.nbytes)
                + sum(len(t or "") for p in packed for t in p.rles))


@dataclass
class LabelSession:
    token: str
    owner: str  # Gradio session hash of the page (for unload cleanup)
    image_id: int | None = None
    key: str = ""  # segmenter key (image content hash) of the current image
    pending: Pending = field(default_factory=Pending)
    undo: list[Undo] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    seen: float = field(default_factory=time.monotonic)
    undo_bytes: int = UNDO_BYTES
    # The version (``updated_at``) of each annotation of the open image as this page last showed it.
    versions: dict[int, float] = field(default_factory=dict)

    def push(self, step: Undo) -> None:
        """Keep ``step``; the oldest steps go past ``MAX_UNDO`` steps or ``undo_bytes`` bytes."""
        self.undo.append(step)
        del self.undo[:-MAX_UNDO]
        total = sum(u.nbytes for u in self.undo)
        while len(self.undo) > 1 and total > self.undo_bytes:
            total -= self.undo.pop(0).nbytes

    def push_pending(self) -> None:
        self.push(Undo(pending=self.pending.pack()))


class SessionStore:
    """Token -> LabelSession. Thread-safe; tokens are unguessable. At most ``max_sessions`` live
    (a new page closes the one idle longest), each dropped after ``idle_s`` idle seconds;
    :meth:`closed_reason` tells a page that comes back why its session is gone."""

    def __init__(self, max_sessions: int = MAX_SESSIONS, idle_s: float = IDLE_TTL_S,
                 undo_bytes: int = UNDO_BYTES) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, LabelSession] = {}
        self._closed: dict[str, str] = {}
        self.max_sessions = max(1, int(max_sessions))
        self.idle_s = float(idle_s)
        self.undo_bytes = int(undo_bytes)

    def open(self, owner: str = "") -> LabelSession:
        token = secrets.token_urlsafe(18)
        s = LabelSession(token=token, owner=owner, undo_bytes=self.undo_bytes)
        with self._lock:
            self._expire()
            while len(self._sessions) >= self.max_sessions:
                oldest = min(self._sessions.values(), key=lambda x: x.seen)
                self._forget(oldest.token, f"it was closed for a newer page (this server keeps at most "
                                            f"{self.max_sessions} pages open; DEFECT_STUDIO_MAX_SESSIONS)")
            self._sessions[token] = s
        return s

    def closed_reason(self, token: object) -> str | None:
        """Why the session of ``token`` was closed by the server, or None (never known, or closed by its page)."""
        with self._lock:
            return self._closed.get(token) if isinstance(token, str) else None

    def _idle_reason(self) -> str:
        return f"it was idle for more than {self.idle_s / 60:.0f} minutes (DEFECT_STUDIO_SESSION_IDLE_MIN)"

    def _forget(self, token: str, reason: str) -> None:
        self._sessions.pop(token, None)
        self._closed[token] = reason
        while len(self._closed) > _CLOSED_KEPT:
            self._closed.pop(next(iter(self._closed)))

    def get(self, token: object) -> LabelSession | None:
        if not isinstance(token, str) or not token or len(token) > 64:
            return None
        with self._lock:
            s = self._sessions.get(token)
            if s is not None and time.monotonic() - s.seen > self.idle_s:
                self._forget(token, self._idle_reason())
                s = None
        if s is not None:
            s.seen = time.monotonic()
        return s

    def close_owner(self, owner: str) -> int:
        with self._lock:
            gone = [t for t, s in self._sessions.items() if s.owner == owner]
            for t in gone:
                del self._sessions[t]
        return len(gone)

    def close(self, token: str) -> None:
        with self._lock:
            self._sessions.pop(token, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def _expire(self) -> None:
        now = time.monotonic()
        for t in [t for t, s in self._sessions.items() if now - s.seen > self.idle_s]:
            self._forget(t, self._idle_reason())
