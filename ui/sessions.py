"""Per-page labeling state, keyed by a server-generated token.

The Label screen's clicks go through ``gr.HTML`` server functions, which run outside
Gradio's queue and ``gr.State``. Each page gets a random token when it loads
(``demo.load``); the token maps to one :class:`LabelSession` here, and ``demo.unload``
drops the sessions of the closing browser tab. Nothing is shared between sessions
except the project (SQLite, one transaction per action) and the segmenter (its own lock).
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from data.annotations import Annotations, PackedAnnotations

MAX_UNDO = 30
# Sessions a tab never closed cleanly (browser killed) are dropped after this many idle seconds.
IDLE_TTL_S = 6 * 3600


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

    def push(self, step: Undo) -> None:
        self.undo.append(step)
        del self.undo[:-MAX_UNDO]

    def push_pending(self) -> None:
        self.push(Undo(pending=self.pending.pack()))


class SessionStore:
    """Token -> LabelSession. Thread-safe; tokens are unguessable."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, LabelSession] = {}

    def open(self, owner: str = "") -> LabelSession:
        token = secrets.token_urlsafe(18)
        s = LabelSession(token=token, owner=owner)
        with self._lock:
            self._expire()
            self._sessions[token] = s
        return s

    def get(self, token: object) -> LabelSession | None:
        if not isinstance(token, str) or not token or len(token) > 64:
            return None
        with self._lock:
            s = self._sessions.get(token)
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
        for t in [t for t, s in self._sessions.items() if now - s.seen > IDLE_TTL_S]:
            del self._sessions[t]
