"""``bench store``: what one edit costs on a large image, and what a session's undo history holds.

On one ``width x height`` image (default 4000x3000) holding ``n`` annotations (default 1 and
50), through the Label screen's server side (:class:`ui.label_api.LabelService`) and the store:

- ``accept``: a polygon made pending, then Enter (the saved row and the page's refreshed list);
- ``delete``: one annotation deleted (and the refreshed list);
- ``undo_accept`` / ``undo_delete``: undoing each of them (the row removed, or put back);
- ``annotation``: ``Project.annotation(id)``, one annotation read by id;
- ``load``: ``Project.annotations(image_id)``, the image's annotations read;
- ``undo_mb``: the bytes a session's undo history (and pending state) holds after ``edits``
  edits (two clicks and an accept, repeated), counted object by object.

Each time is the median of ``repeats`` runs, in milliseconds, the images taking turns run by run
(so a noisy spell of the machine falls on both). The annotations are random ellipses (radii 20
to 200 px) drawn with a seeded generator.
"""

from __future__ import annotations

import hashlib
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from annotate.segmenters.base import Segmenter
from data.annotations import Annotations
from data.errors import InputError
from data.store import Project
from ui.label_api import LabelService

CLASS = "defect"


def build_image_project(root: Path, n: int, width: int, height: int, seed: int) -> tuple[Project, int, np.ndarray]:
    """A project with one ``width x height`` image holding ``n`` accepted ellipse masks.

    Returns the project, the image id and the ``(k, 2)`` centres of dark blobs drawn on the image
    (where clicks land)."""
    rng = np.random.default_rng(seed)
    project = Project.create(root, classes=[CLASS])
    cid = project.class_by_name(CLASS).id
    rgb = rng.integers(110, 150, (height // 8, width // 8, 3), dtype=np.uint8)
    rgb = cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)
    centres = np.stack([rng.integers(300, width - 300, 12), rng.integers(300, height - 300, 12)], axis=1)
    for cx, cy in centres:
        cv2.circle(rgb, (int(cx), int(cy)), int(rng.integers(40, 120)), (40, 40, 40), -1)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise InputError("the bench image could not be encoded.")
    content = buf.tobytes()
    image_id, _ = project.add_image(content, "bench_store.jpg", hashlib.sha256(content).hexdigest(), width, height,
                                    ".jpg")
    masks = []
    for _ in range(n):
        m = np.zeros((height, width), dtype=np.uint8)
        cx, cy = int(rng.integers(0, width)), int(rng.integers(0, height))
        axes = (int(rng.integers(20, 200)), int(rng.integers(20, 200)))
        cv2.ellipse(m, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        masks.append(m.astype(bool))
        if len(masks) == 10 or _ == n - 1:  # add in batches: n full masks at once would be n x 12 MB
            project.add_annotations(image_id, Annotations.from_masks(np.stack(masks), cid, source="bench"))
            masks = []
    return project, image_id, centres


def held_bytes(obj: Any) -> int:
    """Bytes held by ``obj`` and everything it references: array buffers once each, plus the
    containers and objects around them (``sys.getsizeof``)."""
    seen: set[int] = set()
    total = 0
    stack = [obj]
    while stack:
        o = stack.pop()
        if o is None or id(o) in seen or isinstance(o, type) or callable(o):
            continue
        seen.add(id(o))
        if isinstance(o, np.ndarray):
            base = o
            while isinstance(base.base, np.ndarray):
                base = base.base
            if base is o or id(base) not in seen:  # a buffer counts once, whoever views it
                seen.add(id(base))
                total += base.nbytes
            if o.dtype == object:
                stack.extend(o.ravel().tolist())
            continue
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif is_dataclass(o):
            stack.extend(getattr(o, f.name) for f in fields(o))
        elif hasattr(o, "__dict__") and not isinstance(o, (str, bytes)):
            stack.extend(vars(o).values())
    return total


def _square(cx: float, cy: float, r: float) -> list[list[float]]:
    return [[cx - r, cy - r], [cx + r, cy - r], [cx + r, cy + r], [cx - r, cy + r]]


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 2)


TIMINGS = ("accept", "undo_accept", "delete", "undo_delete", "annotation", "load")


class _Side:
    """One image holding ``n`` annotations, served by its own Label service, and its timings."""

    def __init__(self, segmenter: Segmenter, n: int, width: int, height: int, seed: int, tmp: Path) -> None:
        self.n, self.width, self.height = n, width, height
        self.project, self.image_id, self.centres = build_image_project(tmp / f"project-{n}", n, width, height, seed)
        self.cid = self.project.class_by_name(CLASS).id
        self.service = LabelService(self.project, segmenter, prefetch=False)
        self.token = self.service.open_page()
        self.service.open_image(self.token, self.image_id)
        self.rng = np.random.default_rng(seed + 1)
        self.times: dict[str, list[float]] = {k: [] for k in TIMINGS}

    def _timed(self, key: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        out = fn()
        self.times[key].append(time.perf_counter() - t0)
        return out

    def once(self) -> None:
        """One run of every timing; the image holds ``n`` annotations again afterwards."""
        s, token, rng = self.service, self.token, self.rng
        cx, cy = rng.integers(300, self.width - 300), rng.integers(300, self.height - 300)
        s.polygon(token, _square(float(cx), float(cy), 60.0))
        out = self._timed("accept", lambda: s.accept(token, self.cid))
        self._timed("undo_accept", lambda: s.undo(token))
        target = out["annotations"][int(rng.integers(0, self.n))]["id"]
        self._timed("delete", lambda: s.delete(token, target))
        self._timed("undo_delete", lambda: s.undo(token))
        ids = self.project.annotations(self.image_id, with_masks=False).ids
        one = int(ids[int(rng.integers(0, len(ids)))])
        self._timed("annotation", lambda: self.project.annotation(one))
        self._timed("load", lambda: self.project.annotations(self.image_id))

    def undo_history_bytes(self, edits: int) -> tuple[int, int]:
        """``(steps, bytes)`` of a fresh session's undo history (and pending state) after ``edits``
        edits: two clicks and an accept, repeated."""
        s = self.service
        token = s.open_page()
        s.open_image(token, self.image_id)
        session = s.sessions.get(token)
        done = k = 0
        view: dict[str, Any] = {}
        while done < edits:
            cx, cy = (float(v) for v in self.centres[k % len(self.centres)])
            for step in ("click", "click", "accept"):
                if done >= edits:
                    break
                if step == "click":
                    view = s.prompt(token, "pos", [cx + 5 * (done % 3), cy])
                elif view.get("candidates"):
                    s.accept(token, self.cid)
                else:
                    s.clear(token)
                done += 1
            k += 1
        return len(session.undo), held_bytes([session.undo, session.pending])

    def result(self, edits: int) -> dict[str, Any]:
        steps, held = self.undo_history_bytes(edits)
        return {"n": self.n, **{f"{k}_ms": _median_ms(v) for k, v in self.times.items()},
                "edits": edits, "undo_steps": steps, "undo_mb": round(held / 2**20, 2)}


def run_bench(segmenter: Segmenter, ns: tuple[int, ...] = (1, 50), width: int = 4000, height: int = 3000,
              repeats: int = 15, edits: int = 30, seed: int = 0,
              say: Callable[[str], None] = print) -> dict[str, Any]:
    if width < 800 or height < 800:
        raise InputError(f"--size must be at least 800x800, got {width}x{height}.")
    if repeats < 1 or edits < 1 or any(k < 1 for k in ns):
        raise InputError("--repeats, --edits and every --n must be at least 1.")
    tmp = Path(tempfile.mkdtemp(prefix="bench-store-"))
    out: dict[str, Any] = {"width": width, "height": height, "repeats": repeats, "seed": seed,
                           "segmenter": segmenter.name, "random_weights": bool(getattr(segmenter, "random_weights", False)),
                           "results": []}
    try:
        say(f"{width}x{height} image, segmenter {segmenter.name}; medians of {repeats} runs (ms), the images"
            f" taking turns")
        sides = [_Side(segmenter, n, width, height, seed, tmp) for n in ns]
        try:
            for _ in range(repeats):
                for side in sides:
                    side.once()
            say(f"{'n':>4} {'accept':>8} {'undo acc':>9} {'delete':>8} {'undo del':>9} {'by id':>8} {'load':>8}"
                f"  undo history after {edits} edits")
            for side in sides:
                r = side.result(edits)
                out["results"].append(r)
                say(f"{r['n']:>4} {r['accept_ms']:>8} {r['undo_accept_ms']:>9} {r['delete_ms']:>8}"
                    f" {r['undo_delete_ms']:>9} {r['annotation_ms']:>8} {r['load_ms']:>8}  {r['undo_mb']} MB"
                    f" ({r['undo_steps']} steps)")
        finally:
            for side in sides:
                side.service.close()
        if len(out["results"]) >= 2:
            first, last = out["results"][0], out["results"][-1]
            ratio = round(last["accept_ms"] / max(first["accept_ms"], 1e-9), 2)
            out["accept_ratio"] = ratio
            say(f"accept with {last['n']} annotations / with {first['n']}: {ratio}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
