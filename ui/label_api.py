"""The Label screen's server side: prompts -> candidate masks -> saved annotations.

Plain Python, no Gradio: every public method takes JSON-like values from the page and
returns a JSON-able dict, so the handlers are unit-tested without a browser and the
``gr.HTML`` server functions (``ui.label_component``) are thin wrappers.

What crosses the wire on a click is only the overlay: each candidate mask as its bounding
box, a small transparent PNG of the box crop and its outline. The image itself is sent once,
when it is opened. The page never names a file: it names image and annotation ids, which
are checked against the project, and a session token, which is checked against the store.

Masks stay crops inside their boxes end to end (:class:`data.annotations.Annotations`): the
candidates, the hand edits (drawn in a window around the stroke and the mask), the undo
history and the saved rows. The one full-size mask made is the ``prev_mask`` a segmenter's
contract asks for, for the length of its call.
"""

from __future__ import annotations

import base64
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import cv2
import numpy as np

from annotate import review
from annotate.segmenters.base import Prompt, Segmenter
from annotate.segmenters.prefetch import Prefetcher
from annotate.segmenters.registry import default_segmenter_name
from data.annotations import NO_CLASS, Annotations
from data.errors import InputError, NotFoundError, StudioError
from data.geometry import crop_tight, crop_to_polygons, polygons_to_crop, stroke_crop
from data.store import Project
from runtime.weights import weights_dir as default_weights_dir
from ui.sessions import LabelSession, Pending, SessionStore, Undo

MANUAL = "manual"
MAX_POINTS = 64  # prompts per mask; more is a runaway client, not a user
MAX_STROKE = 4000  # points in one brush stroke or polygon
MAX_RADIUS = 200
MAX_INT = 2**53  # ids and indices: beyond this a number is no id (SQLite overflows at 2**63)
log = logging.getLogger(__name__)
PREFETCH_AHEAD = 3
JPEG_QUALITY = 92
PAYLOAD_CACHE_BYTES = 32 * 2**20  # overlays of saved annotations kept encoded (about, all pages together)


class LabelError(StudioError):
    """A request from the page that cannot be served (bad token, bad id, bad value)."""


def fallback_notice(segmenter: Segmenter, weights_dir: str | None = None) -> str:
    if not getattr(segmenter, "is_fallback", False):
        return ""
    try:
        # The same recommendation as 'python app.py models' and 'serve' (one source: the registry).
        _, reason = default_segmenter_name(weights_dir, getattr(segmenter, "device", "auto") or "auto")
    except (StudioError, OSError):
        reason = ""
    if "put '" in reason:
        return f"{reason} (see 'python app.py models')"
    # SAM weights are present but this fallback was chosen explicitly.
    folder = weights_dir or str(default_weights_dir(None))
    return (f"weight-free classical segmenter chosen; SAM weights are in {folder}: start with --segmenter NAME "
            f"to use one (see 'python app.py models')")


# --------------------------------------------------------------- encodings
def _b64(buf: np.ndarray) -> str:
    return base64.b64encode(buf.tobytes()).decode("ascii")


def image_data_url(rgb: np.ndarray) -> str:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise LabelError("the image could not be encoded for display.")
    return "data:image/jpeg;base64," + _b64(buf)


def mask_payload(crop: np.ndarray, x0: int = 0, y0: int = 0) -> dict[str, Any] | None:
    """A mask kept as a bool crop ``(h, w)`` at ``(x0, y0)`` in image pixels (a full-size mask: at
    ``(0, 0)``) -> its box, a transparent PNG of the box crop (white where set) and its outline in
    image pixels; None for an empty mask."""
    crop, x0, y0 = crop_tight(np.asarray(crop, dtype=bool), int(x0), int(y0))
    if not crop.size:
        return None
    h, w = crop.shape
    gray = crop.astype(np.uint8) * 255
    bgra = np.dstack([gray, gray, gray, gray])
    ok, buf = cv2.imencode(".png", bgra, [cv2.IMWRITE_PNG_COMPRESSION, 1])
    contours, _ = cv2.findContours(gray, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = [(c.reshape(-1, 2) + (x0, y0)).astype(int).ravel().tolist() for c in contours if len(c) >= 2]
    return {"x": x0, "y": y0, "w": w, "h": h, "png": _b64(buf) if ok else "", "outline": outline,
            "area": int(np.count_nonzero(gray))}


class PayloadCache:
    """Overlays (:func:`mask_payload`) already encoded, by a key that names the mask itself, least
    recently used dropped first once they hold about ``max_bytes``. Thread-safe; a payload handed
    out is a shallow copy (its outline lists are shared: read them, do not change them)."""

    def __init__(self, max_bytes: int = PAYLOAD_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[dict[str, Any] | None, int]] = OrderedDict()
        self._bytes = 0

    def get_many(self, keys: list[Hashable], make: Callable[[int], dict[str, Any] | None],
                 key_bytes: list[int]) -> list[dict[str, Any] | None]:
        """The payload of each of ``keys``: the cached one, else ``make(index)``'s, cached then
        (``key_bytes``: what each key holds, counted with its payload)."""
        with self._lock:
            found = [self._items.get(k) for k in keys]
            for k, f in zip(keys, found, strict=True):
                if f is not None:
                    self._items.move_to_end(k)
        for i, f in enumerate(found):
            if f is None:
                payload = make(i)
                found[i] = (payload, key_bytes[i] + _payload_bytes(payload))
                self._put(keys[i], *found[i])
        return [None if payload is None else dict(payload) for payload, _ in found]

    def _put(self, key: Hashable, payload: dict[str, Any] | None, size: int) -> None:
        with self._lock:
            if key in self._items:
                return
            self._items[key] = (payload, size)
            self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def _payload_bytes(payload: dict[str, Any] | None) -> int:
    """About what a payload holds: its PNG text and its outline's integers."""
    if payload is None:
        return 64
    return 256 + len(payload["png"]) + 36 * sum(len(c) for c in payload["outline"])


def _shown(v: Any) -> str:
    """``repr(v)`` cut to a length a message can carry."""
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _num(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, str)) or isinstance(v, str) and len(v) > 32:
        raise LabelError(f"{name} must be a number, got {_shown(v)}.")
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError) as err:
        raise LabelError(f"{name} must be a number, got {_shown(v)}.") from err
    if not math.isfinite(f):
        raise LabelError(f"{name} must be finite.")
    return f


def _int(v: Any, name: str) -> int:
    """An id or index: a whole number of at most ``MAX_INT`` in size (SQLite and NumPy take it as it is)."""
    f = _num(v, name)
    if f != int(f):
        raise LabelError(f"{name} must be an integer, got {_shown(v)}.")
    if abs(f) > MAX_INT:
        raise LabelError(f"{name} {_shown(v)} is out of range (no such {name}).")
    return int(f)


class Conflict(LabelError):
    """A change made against a state of an annotation that another page or a job has changed since;
    ``reply`` is the page's screen as it is now."""

    def __init__(self, message: str, reply: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.reply = reply or {}


class LabelService:
    """Server side of the Label screen, shared by every page of one server."""

    def __init__(self, project: Project, segmenter: Segmenter, sessions: SessionStore | None = None,
                 weights_dir: str | None = None, prefetch: bool = True) -> None:
        self.project = project
        self.segmenter = segmenter
        self.sessions = sessions if sessions is not None else SessionStore()  # an empty store is falsy
        self.notice = fallback_notice(segmenter, weights_dir)
        self.payloads = PayloadCache()
        # "Next image" (D): None, the next in order; else a function of the image ids not yet done
        # after the current one (in order) that picks one (the assist's "least sure first").
        self.next_chooser: Callable[[list[int]], int | None] | None = None
        self._prefetcher = None
        if prefetch:
            self._prefetcher = Prefetcher(segmenter)

    def close(self) -> None:
        if self._prefetcher is not None:
            self._prefetcher.close()

    # ------------------------------------------------------------ sessions
    def open_page(self, owner: str = "") -> str:
        return self.sessions.open(owner).token

    def _session(self, token: Any) -> LabelSession:
        s = self.sessions.get(token)
        if s is None:
            why = self.sessions.closed_reason(token)
            raise LabelError("this page's session has expired" + (f": {why}" if why else "") +
                             ". Reload the page; everything accepted is saved.")
        return s

    def _require_image(self, s: LabelSession) -> int:
        if s.image_id is None:
            raise LabelError("open an image first.")
        return s.image_id

    # ---------------------------------------------------------------- boot
    def boot(self, token: Any) -> dict[str, Any]:
        self._session(token)
        return {
            "segmenter": {"name": self.segmenter.name, "device": self.segmenter.device,
                          "fallback": bool(getattr(self.segmenter, "is_fallback", False)), "notice": self.notice},
            "classes": self.classes(),
            "images": self.image_list(),
        }

    def classes(self) -> list[dict[str, Any]]:
        return [{"id": c.id, "name": c.name, "color": c.color} for c in self.project.classes()]

    def image_list(self) -> list[dict[str, Any]]:
        return [{"id": r.id, "name": r.name, "status": r.status} for r in self.project.images()]

    # ---------------------------------------------------------- open image
    def open_image(self, token: Any, image_id: Any) -> dict[str, Any]:
        s = self._session(token)
        image_id = _int(image_id, "image id")
        try:
            rec = self.project.image(image_id)
        except NotFoundError as err:
            raise LabelError(str(err)) from err
        rgb = self.project.load_image(rec.id)
        if not self.segmenter.is_ready(rec.sha256):
            self.segmenter.set_image(rgb, rec.sha256)
        with s.lock:
            s.image_id, s.key = rec.id, rec.sha256
            s.pending = Pending()
            # Undo of prompts is per image; undo of accepts stays possible only on their own image.
            s.undo = []
        self._prefetch_after(rec.id)
        images = self.project.images()
        index = next((k for k, r in enumerate(images) if r.id == rec.id), 0)
        return {
            "image": {"id": rec.id, "name": rec.name, "width": rec.width, "height": rec.height,
                      "status": rec.status, "index": index, "total": len(images),
                      "prev": images[index - 1].id if index > 0 else None,
                      "next": self._next_image(images, index)},
            "src": image_data_url(rgb),
            "annotations": self._annotations(rec.id, s),
            "pending": self._pending_view(s, 0.0),
        }

    def _next_image(self, images: list, index: int) -> int | None:
        """The image D opens: the next in order, or the chooser's pick among those not yet done
        (wrapping around past the last, so the least sure one anywhere is reachable)."""
        in_order = images[index + 1].id if index + 1 < len(images) else None
        if self.next_chooser is None:
            return in_order
        rest = images[index + 1:] + images[:index]
        todo = [r.id for r in rest if r.status == "unlabeled"]
        return (self.next_chooser(todo) if todo else None) or in_order

    def _prefetch_after(self, image_id: int) -> None:
        if self._prefetcher is None:
            return
        images = self.project.images()
        ids = [r.id for r in images]
        k = ids.index(image_id) if image_id in ids else -1
        todo = images[k + 1:k + 1 + PREFETCH_AHEAD]
        self._prefetcher.prefetch([(r.sha256, self._loader(r.id)) for r in todo])

    def _loader(self, image_id: int) -> Callable[[], np.ndarray]:
        return lambda: self.project.load_image(image_id)

    def _annotations(self, image_id: int, s: LabelSession | None = None) -> list[dict[str, Any]]:
        """The image's accepted and proposed annotations as the page lists them.

        The rows are read without their masks; only the masks of rows not seen at their version
        before are read (one row each) and encoded (:class:`PayloadCache`, keyed by id and version):
        an accept on an image with many annotations costs about what it costs on an image with one.
        """
        rows = self.project.annotations(image_id, statuses=("accepted", "proposed"), with_masks=False)
        ids = rows.ids.tolist()
        keys = list(zip(ids, rows.data.get("updated_at", np.zeros(0)).tolist(), strict=True))
        if s is not None:  # the versions this page now shows: a change made against another one is refused
            s.versions = dict(keys)
        payloads = self.payloads.get_many(keys, lambda i: self._payload_of(ids[i]), [64] * len(keys))
        return [{"id": i, "class_id": c, "status": st, "source": src, "score": None if math.isnan(sc) else round(sc, 3),
                 "mask": payload}
                for i, c, st, src, sc, payload in zip(ids, rows.class_id.tolist(), rows.status.tolist(),
                                                     rows.source.tolist(), rows.confidence.tolist(), payloads,
                                                     strict=True)]

    def _payload_of(self, annotation_id: int) -> dict[str, Any] | None:
        """The overlay of one stored annotation (its crop; a box-only one's filled box)."""
        try:
            _, one = self.project.annotation(annotation_id)
        except NotFoundError:  # deleted by another session meanwhile
            return None
        return mask_payload(*one.crop(0))

    # ------------------------------------------------------------- prompts
    def prompt(self, token: Any, kind: Any, coords: Any) -> dict[str, Any]:
        """Add a prompt and predict. ``kind``: "pos" or "neg" with ``[x, y]``, "box" with ``[x0, y0, x1, y1]``."""
        t0 = time.perf_counter()
        s = self._session(token)
        with s.lock:
            self._require_image(s)
            h, w = self.project.image(s.image_id).height, self.project.image(s.image_id).width
            new = s.pending.copy()
            if kind in ("pos", "neg"):
                if not isinstance(coords, (list, tuple)) or len(coords) != 2:
                    raise LabelError("a point prompt is [x, y].")
                x, y = (_num(coords[0], "x"), _num(coords[1], "y"))
                if not (0 <= x < w and 0 <= y < h):
                    raise LabelError(f"point ({x:.0f}, {y:.0f}) is outside the {w}x{h} image.")
                if len(new.points) >= MAX_POINTS:
                    raise LabelError(f"at most {MAX_POINTS} points per mask; accept or clear (Esc) first.")
                new.points.append((x, y))
                new.labels.append(1 if kind == "pos" else 0)
            elif kind == "box":
                if not isinstance(coords, (list, tuple)) or len(coords) != 4:
                    raise LabelError("a box prompt is [x0, y0, x1, y1].")
                x0, y0, x1, y1 = (_num(v, "box") for v in coords)
                x0, x1 = sorted((min(max(x0, 0), w), min(max(x1, 0), w)))
                y0, y1 = sorted((min(max(y0, 0), h), min(max(y1, 0), h)))
                if x1 - x0 < 2 or y1 - y0 < 2:
                    raise LabelError("the box is too small; drag a larger box.")
                new.box = (x0, y0, x1, y1)
            else:
                raise LabelError(f"unknown prompt kind {kind!r}; use pos, neg or box.")
            ms = self._predict(s, new)
            s.push_pending()
            s.pending = new
            return self._pending_view(s, ms, t0)

    def _predict(self, s: LabelSession, p: Pending) -> float:
        """Predict ``p``'s prompts into ``p.masks`` (non-empty candidates as crops, best first).

        The segmenter's contract is full size: the pending mask is expanded for the call only
        (``prev_mask``), and the ``(C, H, W)`` result is cut to crops at once.
        """
        prev = s.pending
        # Refine whenever a mask is already there: a second prompt, or the first click on an
        # annotation being edited (or on a hand-drawn mask), which must start from that mask.
        refine = prev.masks is not None or len(p.points) + (p.box is not None) > 1
        prompt = Prompt.make(
            points=p.points, labels=p.labels, box=p.box,
            mask_input=(prev.low_res[prev.chosen].astype(np.float32)
                        if refine and prev.low_res is not None else None),
            prev_mask=(prev.mask.full_mask(0) if refine and prev.masks is not None else None),
        )
        try:
            pred = self.segmenter.predict(s.key, prompt)
        except KeyError:
            # Evicted from the segmenter's cache (another session's images pushed it out): set it again.
            self.segmenter.set_image(self.project.load_image(s.image_id), s.key)
            pred = self.segmenter.predict(s.key, prompt)
        cands = Annotations.from_sam(pred.masks, pred.scores, source=self.segmenter.name)
        keep = [i for i in range(len(cands)) if cands.crops[i].any()]
        if not keep:
            p.masks, p.low_res = None, None
        else:
            p.masks = cands[keep]
            p.low_res = None if pred.low_res is None else np.asarray(pred.low_res)[keep].astype(np.float16)
        p.chosen = 0
        # A segmenter result replaces a hand edit, unless an existing annotation is being refined.
        p.manual = False
        return float(pred.ms)

    def choose(self, token: Any, index: Any) -> dict[str, Any]:
        s = self._session(token)
        with s.lock:
            k = _int(index, "candidate")
            if s.pending.masks is None or not 0 <= k < len(s.pending.masks):
                raise LabelError("no such candidate.")
            s.push_pending()
            s.pending = s.pending.copy()
            s.pending.chosen = k
            return self._pending_view(s, 0.0)

    def clear(self, token: Any) -> dict[str, Any]:
        s = self._session(token)
        with s.lock:
            if s.pending.masks is not None or s.pending.points or s.pending.box is not None:
                s.push_pending()
            s.pending = Pending()
            return self._pending_view(s, 0.0)

    def _pending_view(self, s: LabelSession, predict_ms: float, t0: float | None = None) -> dict[str, Any]:
        p = s.pending
        cands = []
        if p.masks is not None:
            for i in range(len(p.masks)):
                score = float(p.masks.confidence[i])
                cands.append({"score": None if math.isnan(score) else round(score, 3),
                              "mask": mask_payload(*p.masks.crop(i))})
        view = {"points": [[x, y, lbl] for (x, y), lbl in zip(p.points, p.labels, strict=True)],
                "box": list(p.box) if p.box else None, "candidates": cands, "chosen": p.chosen,
                "manual": p.manual, "editing": p.editing_id, "predict_ms": round(predict_ms, 2),
                "can_undo": bool(s.undo)}
        if t0 is not None:
            view["server_ms"] = round((time.perf_counter() - t0) * 1000, 2)
        return view

    # ------------------------------------------------------------- accept
    def accept(self, token: Any, class_id: Any) -> dict[str, Any]:
        s = self._session(token)
        with s.lock:
            image_id = self._require_image(s)
            cid = _int(class_id, "class id")
            try:
                self.project.get_class(cid)
            except NotFoundError as err:
                raise LabelError(f"{err} Pick a class (number keys) first.") from err
            one = s.pending.mask
            if one is None or not one.crops[0].any():
                raise LabelError("nothing to accept: click on a defect (or draw a box or polygon) first.")
            source = MANUAL if s.pending.manual else self.segmenter.name
            score = float("nan") if s.pending.manual else float(one.confidence[0])
            if s.pending.editing_id is not None:
                with self.project.transaction():  # the version check and the write are one step
                    ann_id, old = self._own_annotation(s, s.pending.editing_id)  # as this page saw it, or a Conflict
                    self.project.update_annotation(ann_id, class_id=cid, shape=one, source=source, status="accepted")
                s.push(Undo(pending=s.pending.pack(), restored=old.with_box_masks().pack()))
            else:
                crop, x0, y0 = one.crop(0)
                ann = Annotations.from_crops(one.height, one.width, [crop], [(x0, y0)], cid, confidence=score,
                                             source=source, status="accepted")
                ann_id = self.project.add_annotations(image_id, ann)[0]
                s.push(Undo(pending=s.pending.pack(), created_id=ann_id))
            s.pending = Pending()
            return self._after_change(s, saved=ann_id)

    def _after_change(self, s: LabelSession, saved: int | None = None) -> dict[str, Any]:
        rec = self.project.image(s.image_id)
        return {"annotations": self._annotations(rec.id, s), "pending": self._pending_view(s, 0.0),
                "saved": saved, "image_status": rec.status}

    def undo(self, token: Any) -> dict[str, Any]:
        s = self._session(token)
        with s.lock:
            self._require_image(s)
            if not s.undo:
                raise LabelError("nothing to undo on this image.")
            step = s.undo.pop()
            undone = _undone_pending(step.pending, s.pending)
            if step.created_id is not None:
                self.project.delete_annotations([step.created_id])
                undone = f"annotation #{step.created_id} removed"
            elif step.deleted is not None:
                old_id = int(step.deleted.ids[0])
                new_id = self.project.add_annotations(s.image_id, step.deleted.unpack())[0]
                for older in s.undo:  # earlier steps name the annotation by its old id
                    if older.created_id == old_id:
                        older.created_id = new_id
                    if older.restored is not None and int(older.restored.ids[0]) == old_id:
                        older.restored = older.restored.with_data({"id": [new_id]})
                undone = f"annotation #{old_id} restored as #{new_id}"
            elif step.reviewed is not None:
                rid, before = step.reviewed
                try:
                    self.project.update_annotation(rid, status=before)
                except NotFoundError as err:
                    raise LabelError(f"annotation #{rid} was deleted meanwhile; nothing to undo.") from err
                if before == "proposed" and self.project.image(s.image_id).status in ("done", "good"):
                    self.project.set_image_status(s.image_id, "unlabeled")  # a proposal to review again: not done
                undone = f"review of #{rid} (it is {before} again)"
            elif step.restored is not None:
                r = step.restored.unpack()
                rid = int(r.ids[0])
                self.project.update_annotation(rid, class_id=int(r.class_id[0]), shape=r, source=str(r.source[0]),
                                               status=str(r.status[0]))
                undone = f"annotation #{rid} restored"
            s.pending = step.pending.unpack() if step.pending is not None else Pending()
            out = self._after_change(s)
            out["undone"] = undone
            return out

    # ---------------------------------------------------- annotation list
    def _own_annotation(self, s: LabelSession, ann_id: Any) -> tuple[int, Annotations]:
        """The annotation ``ann_id`` of the open image, as this page last saw it; one that another page
        or a job changed or deleted since is a :class:`Conflict` (the page then shows it as it is)."""
        aid = _int(ann_id, "annotation id")
        try:
            image_id, ann = self.project.annotation(aid)
        except NotFoundError as err:
            if aid in s.versions:
                raise Conflict(f"#{aid} was deleted by another page or a job since this page showed it; nothing "
                               f"changed.", self._after_change(s)) from err
            raise LabelError(str(err)) from err
        if image_id != s.image_id:
            raise LabelError(f"annotation #{aid} is not on the open image.")
        seen = s.versions.get(aid)
        now = ann.data.get("updated_at")
        if seen is not None and now is not None and float(now[0]) != seen:
            raise Conflict(f"#{aid} was changed by another page or a job since this page showed it (it is "
                           f"{ann.status[0]} now); nothing changed. The screen shows it as it is now.",
                           self._after_change(s))
        return aid, ann

    def delete(self, token: Any, ann_id: Any) -> dict[str, Any]:
        s = self._session(token)
        with s.lock:
            with self.project.transaction():  # the version check and the write are one step
                aid, ann = self._own_annotation(s, ann_id)
                self.project.delete_annotations([aid])
            s.push(Undo(pending=s.pending.pack(), deleted=ann.pack()))
            if s.pending.editing_id == aid:
                s.pending = Pending()
            return self._after_change(s)

    def set_class(self, token: Any, ann_id: Any, class_id: Any) -> dict[str, Any]:
        s = self._session(token)
        with s.lock:
            cid = _int(class_id, "class id")
            try:
                with self.project.transaction():  # the version check and the write are one step
                    aid, _ = self._own_annotation(s, ann_id)
                    self.project.update_annotation(aid, class_id=cid)
            except NotFoundError as err:
                raise LabelError(str(err)) from err
            return self._after_change(s, saved=aid)

    def review(self, token: Any, ann_id: Any, status: Any) -> dict[str, Any]:
        """Accept or reject a proposal shown on the Label screen."""
        s = self._session(token)
        with s.lock:
            if status not in ("accepted", "rejected"):
                raise LabelError("status must be accepted or rejected.")
            with self.project.transaction():  # the version check and the write are one step
                aid, ann = self._own_annotation(s, ann_id)
                res = (review.accept if status == "accepted" else review.reject)(self.project, [aid])
            if res.changed or res.dropped_duplicates:
                s.push(Undo(pending=s.pending.pack(), reviewed=(aid, str(ann.status[0]))))
            out = self._after_change(s, saved=aid)
            now = str(self.project.annotation(aid)[1].status[0])
            out["reviewed"] = now  # rejected when it covered a label
            if res.skipped:  # another page or a background job decided first: its decision stands
                out["conflict"] = (f"#{aid} was {now} already (another page or a job reviewed it first); nothing "
                                   f"changed. The screen shows it as it is now.")
            return out

    def edit(self, token: Any, ann_id: Any) -> dict[str, Any]:
        """Load an annotation's mask as the pending mask, to refine with clicks, brush or polygon."""
        s = self._session(token)
        with s.lock:
            aid, ann = self._own_annotation(s, ann_id)
            s.push_pending()
            s.pending = Pending(masks=ann.with_box_masks(), manual=str(ann.source[0]) == MANUAL, editing_id=aid)
            view = self._pending_view(s, 0.0)
            view["class_id"] = int(ann.class_id[0])
            return view

    def set_image_status(self, token: Any, status: Any) -> dict[str, Any]:
        s = self._session(token)
        with s.lock:
            image_id = self._require_image(s)
            if status not in ("unlabeled", "done", "good"):
                raise LabelError("image status must be unlabeled, done or good.")
            self.project.set_image_status(image_id, status)  # the store's rules: no proposals left, no defect if good
            return {"image_status": status}

    # ------------------------------------------------------ hand editing
    def stroke(self, token: Any, mode: Any, points: Any, radius: Any) -> dict[str, Any]:
        """Paint (``brush``) or erase (``eraser``) a polyline of ``radius`` pixels on the pending mask."""
        s = self._session(token)
        with s.lock:
            self._require_image(s)
            rec = self.project.image(s.image_id)
            if mode not in ("brush", "eraser"):
                raise LabelError("stroke mode must be brush or eraser.")
            r = _num(radius, "radius")
            if not 0.5 <= r <= MAX_RADIUS:
                raise LabelError(f"brush radius must be between 0.5 and {MAX_RADIUS} pixels.")
            pts = self._points(points, rec.height, rec.width)
            if s.pending.masks is None and mode == "eraser":
                raise LabelError("nothing to erase: there is no mask yet.")
            base = s.pending.mask.crop(0) if s.pending.mask is not None else None
            crop, x0, y0 = stroke_crop(base, rec.height, rec.width, pts, r, paint=mode == "brush")
            self._set_manual(s, rec.height, rec.width, crop, x0, y0)
            return self._pending_view(s, 0.0)

    def polygon(self, token: Any, points: Any) -> dict[str, Any]:
        """Replace the pending mask by a polygon ``[[x, y], ...]`` (at least 3 vertices)."""
        s = self._session(token)
        with s.lock:
            self._require_image(s)
            rec = self.project.image(s.image_id)
            pts = self._points(points, rec.height, rec.width)
            if len(pts) < 3:
                raise LabelError("a polygon needs at least 3 points.")
            crop, x0, y0 = polygons_to_crop([pts.ravel().tolist()], rec.height, rec.width)
            if not crop.size:
                raise LabelError("the polygon covers no pixel of the image.")
            self._set_manual(s, rec.height, rec.width, crop, x0, y0)
            return self._pending_view(s, 0.0)

    def polygon_of(self, token: Any) -> dict[str, Any]:
        """The pending mask's outline as an editable polygon (its largest part)."""
        s = self._session(token)
        with s.lock:
            one = s.pending.mask
            if one is None:
                raise LabelError("no mask to edit: click a defect or pick an annotation's Edit first.")
            polys = crop_to_polygons(*one.crop(0))
            if not polys:
                raise LabelError("the mask is too small to edit as a polygon; use the brush.")
            flat = max(polys, key=len)
            pts = np.asarray(flat, dtype=np.float32).reshape(-1, 2)
            approx = cv2.approxPolyDP(pts.reshape(-1, 1, 2), 0.8, True).reshape(-1, 2)
            if len(approx) >= 3:
                pts = approx
            return {"points": [[round(float(x), 1), round(float(y), 1)] for x, y in pts]}

    def _points(self, points: Any, height: int, width: int) -> np.ndarray:
        """``[[x, y], ...]`` as an ``(N, 2)`` array, every point in the image or at most one image
        size beyond its edges (a stroke or vertex dragged past the edge); farther ones are refused
        before any library sees them (a vertex at 1e9 crashed the mask rasteriser)."""
        if not isinstance(points, (list, tuple)) or not points or len(points) > MAX_STROKE:
            raise LabelError(f"expected 1 to {MAX_STROKE} points.")
        if not all(isinstance(p, (list, tuple)) and len(p) == 2 and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in p) for p in points):
            raise LabelError("points must be [[x, y], ...] with numbers.")
        arr = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        if not np.isfinite(arr).all():
            raise LabelError("points must be finite numbers.")
        x, y = arr[:, 0], arr[:, 1]
        far = (x < -width) | (x > 2 * width) | (y < -height) | (y > 2 * height)
        if far.any():
            fx, fy = arr[int(np.argmax(far))]
            raise LabelError(f"point ({fx:.4g}, {fy:.4g}) is far outside the {width}x{height} image; points must lie "
                             f"in it or just past its edges.")
        return arr

    def _set_manual(self, s: LabelSession, height: int, width: int, crop: np.ndarray, x0: int, y0: int) -> None:
        """Make a hand-made mask (a crop at ``(x0, y0)`` of a ``height x width`` image) the pending one."""
        s.push_pending()
        editing = s.pending.editing_id
        masks = Annotations.from_crops(height, width, [crop], [(x0, y0)], NO_CLASS, source=MANUAL, status="proposed")
        s.pending = Pending(masks=masks, manual=True, editing_id=editing)


def _undone_pending(before: Any, now: Pending) -> str:
    """What undoing back to the pending state ``before`` takes back, in the user's words."""
    if now.manual:
        return "brush, eraser or polygon edit"
    if before is not None and now.chosen != before.state.chosen and now.points == before.state.points:
        return "candidate choice"
    if now.box is not None and (before is None or before.state.box != now.box):
        return "box"
    return "point" if now.points else "edit"


def safe_call(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run a handler for the page: expected failures become ``{"error": message}``, never a 500."""
    try:
        return fn(*args)
    except Conflict as err:  # the page redraws what is there now and says why nothing changed
        return {**err.reply, "conflict": str(err)}
    except (StudioError, InputError) as err:
        return {"error": str(err)}
    except Exception as err:  # noqa: BLE001 - a bug must cost one reply, not the page (or a 500)
        log.exception("label API %s failed", getattr(fn, "__name__", fn))
        return {"error": f"the server could not handle this request ({type(err).__name__}); it is logged. "
                         f"Reload the page if the screen looks wrong."}
