"""Hostile values that used to kill the process (a pycocotools segfault, a request for gigabytes),
each run in a child process under a 4 GB address-space limit so that a crash is a failed test, not
a dead pytest: COCO polygons and RLE through an import, YOLO label lines, and the Label screen's
polygon and brush/eraser calls.

Every case must let the process exit 0, reject or clip that one shape (a rejection names the
fault), and keep the rest: the other annotations of the file, the other lines, the saved and
pending masks of the page. The cases of one reader share a child process, which prints one JSON
result per case; one that kills its child is named by the case it was running, and the cases
after it run in a new child.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MEMORY_LIMIT = 4 * 2**30  # address space of a child: a request for 25 GB fails instead of swapping
CHILD_TIMEOUT_S = 30  # a child still running then is hung on the case it printed last
NAN, INF = float("nan"), float("inf")
H, W = 48, 64  # the COCO and YOLO image (the Label screen's images are those of tests/ui: 80x60)


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a crash leaves no core file behind


# --------------------------------------------------------------------- the child
# argv: repository root, scratch folder; stdin: JSON [[group, id, params], ...]; stdout: "START id"
# before a case and "RESULT {json}" after it.
CHILD = r'''
import json, sys, tempfile, traceback
from pathlib import Path
sys.path.insert(0, sys.argv[1])
SCRATCH = Path(sys.argv[2])
import numpy as np

H, W = 48, 64


def iou(a, b):
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def inside(rows):
    """Every row's box and crop lie inside the image."""
    for i in range(len(rows)):
        x0, y0, x1, y1 = (float(v) for v in rows.xyxy[i])
        if not (0 <= x0 <= x1 <= rows.width and 0 <= y0 <= y1 <= rows.height):
            return False
        c = rows.crops[i]
        if c is not None:
            ox, oy = (int(v) for v in rows.origins[i])
            if ox < 0 or oy < 0 or ox + c.shape[1] > rows.width or oy + c.shape[0] > rows.height:
                return False
    return True


def coco(p):
    from data.annotations import Annotations
    from data.importers import import_sources
    from data.store import Project
    from tests.data.conftest import png_bytes, random_rgb

    root = Path(tempfile.mkdtemp(dir=SCRATCH))
    src = root / "src"
    src.mkdir()
    (src / "a.png").write_bytes(png_bytes(random_rgb(3, H, W)))
    good = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[40, 30, 60, 30, 60, 45, 40, 45]],
             "iscrowd": 0}]
    bad = {"id": 3, "image_id": 1, "category_id": 1, "iscrowd": 0, **p["bad"]}
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
           "categories": [{"id": 1, "name": "chip"}], "annotations": [good[0], bad, good[1]]}
    (src / "ann.json").write_text(json.dumps(doc), encoding="utf-8")  # NaN and Infinity as Python writes them
    project = Project.create(root / "proj")
    report = import_sources(project, [src])
    rows = project.annotations(project.images()[0].id) if report.imported else None
    out = {"imported": report.imported, "added": report.annotations_added,
           "rejected": [list(r) for r in report.rejected],
           "notes": [list(n) for n in getattr(report, "notes", ())],
           "inside": rows is not None and inside(rows)}
    if rows is not None:
        full = [rows.full_mask(i) for i in range(len(rows))]
        want = [Annotations.from_coco([g], {1: "chip"}, H, W).full_mask(0) for g in good]
        out["good_kept"] = [any(iou(f, w) == 1.0 for f in full) for w in want]
        if "ref" in p:  # the same shape with its far vertex at a finite, moderate distance
            ref = Annotations.from_coco([{**bad, **p["ref"]}], {1: "chip"}, H, W).full_mask(0)
            out["ref_iou"] = max([iou(f, ref) for f in full] or [0.0])
    return out


def yolo(p):
    from data.annotations import Annotations
    lines = ["0 0.25 0.25 0.2 0.2", p["line"], "1 0.6 0.6 0.9 0.6 0.75 0.9"]
    errors = []
    rows = Annotations.from_yolo(lines, ["chip", "crack"], H, W, source="import",
                                 on_error=lambda k, why: errors.append([k, why]))
    ref = Annotations.from_yolo([lines[0], lines[2]], ["chip", "crack"], H, W, source="import")
    kept = [any(iou(rows.full_mask(i), ref.full_mask(j)) == 1.0 for i in range(len(rows))) for j in range(len(ref))]
    return {"n": len(rows), "errors": errors, "good_kept": kept, "inside": inside(rows)}


_SERVICE = {}


def label(p):
    """A saved polygon and a pending brush stroke, then the hostile call; what is left of both."""
    from tests.ui.conftest import FakeSegmenter, add_image
    from data.store import Project
    from data.geometry import polygons_to_crop, stroke_crop
    from ui.label_api import LabelService
    from ui.label_component import dispatch

    if not _SERVICE:
        project = Project.create(Path(tempfile.mkdtemp(dir=SCRATCH)) / "proj", classes=["scratch", "stain"])
        add_image(project, "img0.png", 40)
        _SERVICE["s"] = LabelService(project, FakeSegmenter(), prefetch=False)
    service = _SERVICE["s"]
    project = service.project

    def fresh():
        token = service.open_page("crashes")
        service.open_image(token, 1)
        return token

    def pending(token):
        m = service.sessions.get(token).pending.mask
        return None if m is None else m.full_mask(0)

    project.delete_annotations(project.annotations(1).ids.tolist())
    token = fresh()
    service.polygon(token, [[5, 5], [25, 5], [25, 25], [5, 25]])
    saved_id = service.accept(token, 1)["saved"]
    saved = project.annotations(1).full_mask(0)
    service.stroke(token, "brush", [[40, 40], [60, 40]], 4)
    before = pending(token)
    answer = dispatch(service, [token, p["method"], *p["args"]])
    after = pending(token)
    now = project.annotations(1)
    out = {"error": answer.get("error"),
           "saved_kept": len(now) == 1 and int(now.ids[0]) == saved_id and bool((now.full_mask(0) == saved).all()),
           "pending_kept": after is not None and bool((after == before).all())}
    if "ref_args" in p and after is not None:
        ref_token = fresh()
        service.stroke(ref_token, "brush", [[40, 40], [60, 40]], 4)
        dispatch(service, [ref_token, p["method"], *p["ref_args"]])
        out["ref_iou"] = iou(after, pending(ref_token))
    return out


HANDLERS = {"coco": coco, "yolo": yolo, "label": label}
for group, cid, params in json.loads(sys.stdin.read()):
    print("START " + cid, flush=True)
    try:
        result = HANDLERS[group](params)
    except BaseException as err:  # an exception is a failure of its case, not of the others
        result = {"raised": f"{type(err).__name__}: {err}"[:300], "traceback": traceback.format_exc()[-1500:]}
    print("RESULT " + json.dumps({"id": cid, **result}), flush=True)
'''


# --------------------------------------------------------------------- cases
@dataclass(frozen=True)
class Case:
    group: str  # coco | yolo | label
    id: str
    params: dict[str, Any]
    outcome: str  # clip | reject | reject_or_clip | reject_or_note
    words: tuple[str, ...] = ()  # a rejection (or note) names the fault with one of these

    @property
    def key(self) -> str:
        return f"{self.group}-{self.id}"


def _poly(v0: float, v1: float | None = None) -> list[list[float]]:
    """A 28 px square whose second vertex is moved to ``(v0, 2)`` (or ``(v0, v1)``)."""
    return [[2, 2, v0, 2 if v1 is None else v1, 30, 30, 2, 30]]


NOT_FINITE = ("finite",)
FAULTY_VALUE = ("finite", "range", "outside", "far", "pixel")
COCO = [
    Case("coco", "polygon-x-1e9", {"bad": {"segmentation": _poly(1e9)}, "ref": {"segmentation": _poly(1e6)}}, "clip"),
    Case("coco", "polygon-x-1e308", {"bad": {"segmentation": _poly(1e308)}, "ref": {"segmentation": _poly(1e6)}},
         "clip"),
    Case("coco", "polygon-x-minus-1e308", {"bad": {"segmentation": _poly(-1e308)}, "ref": {"segmentation": _poly(-1e6)}},
         "clip"),
    Case("coco", "polygon-xy-1e308", {"bad": {"segmentation": _poly(1e308, 1e308)},
                                      "ref": {"segmentation": _poly(1e6, 1e6)}}, "clip"),
    Case("coco", "polygon-edge-minus-1e308-to-1e308", {"bad": {"segmentation": [[-1e308, 2, 1e308, 2, 30, 30]]},
                                                        "ref": {"segmentation": [[-1e6, 2, 1e6, 2, 30, 30]]}},
         "reject_or_clip", FAULTY_VALUE),
    Case("coco", "polygon-x-nan", {"bad": {"segmentation": _poly(NAN)}}, "reject", NOT_FINITE),
    Case("coco", "polygon-x-infinity", {"bad": {"segmentation": _poly(INF)}}, "reject", NOT_FINITE),
    Case("coco", "polygon-x-minus-infinity", {"bad": {"segmentation": _poly(-INF)}}, "reject", NOT_FINITE),
    Case("coco", "polygon-y-nan-x-infinity", {"bad": {"segmentation": _poly(INF, NAN)}}, "reject", NOT_FINITE),
    Case("coco", "polygon-all-vertices-at-1e9", {"bad": {"segmentation": [[1e9, 1e9, 2e9, 1e9, 2e9, 2e9]]}},
         "reject", ("pixel", "outside")),
    # A NaN in one polygon of two: the annotation is rejected, or kept with a note naming the fault;
    # never silently kept without that part.
    Case("coco", "second-polygon-nan", {"bad": {"segmentation": [[2, 2, 30, 2, 30, 30, 2, 30], [1, 1, NAN, 1, 5, 5]]}},
         "reject_or_note", NOT_FINITE),
    Case("coco", "bbox-width-1e308", {"bad": {"bbox": [1, 1, 1e308, 5]}, "ref": {"bbox": [1, 1, 1e6, 5]}}, "clip"),
    # pycocotools' string decoder reads past a NUL (or past the end after a continuation character)
    # and writes runs beyond the array it allocated: a heap overflow, a segfault or an abort.
    Case("coco", "rle-string-nul-then-runs", {"bad": {"segmentation": {"size": [H, W], "counts": "P\0" + "1" * 1000}}},
         "reject", ("RLE",)),
    Case("coco", "rle-string-ends-mid-run", {"bad": {"segmentation": {"size": [H, W], "counts": "0" + "P" * 40}}},
         "reject", ("RLE",)),
    # Runs that cover less than H x W: pycocotools leaves the rest of the mask uninitialised memory.
    Case("coco", "rle-runs-cover-100-pixels", {"bad": {"segmentation": {"size": [H, W], "counts": [0, 100]}}},
         "reject", ("RLE",)),
    Case("coco", "rle-string-empty", {"bad": {"segmentation": {"size": [H, W], "counts": ""}}}, "reject", ("RLE",)),
    Case("coco", "rle-list-empty", {"bad": {"segmentation": {"size": [H, W], "counts": []}}}, "reject", ("RLE",)),
    Case("coco", "rle-runs-cover-more-than-the-image", {"bad": {"segmentation": {"size": [H, W], "counts": [0, 5000]}}},
         "reject", ("RLE",)),
]

OUT_OF_RANGE = ("range", "finite")
YOLO = [
    Case("yolo", "box-width-1e9", {"line": "0 0.5 0.5 1e9 0.2"}, "reject_or_clip", OUT_OF_RANGE),
    Case("yolo", "box-centre-1e308", {"line": "0 1e308 0.5 0.2 0.2"}, "reject_or_clip", OUT_OF_RANGE),
    Case("yolo", "box-centre-minus-1e308", {"line": "0 -1e308 0.5 0.2 0.2"}, "reject_or_clip", OUT_OF_RANGE),
    Case("yolo", "box-1e400-reads-as-infinity", {"line": "0 0.5 0.5 1e400 0.2"}, "reject", OUT_OF_RANGE),
    Case("yolo", "box-nan", {"line": "0 nan 0.5 0.2 0.2"}, "reject", OUT_OF_RANGE),
    Case("yolo", "box-infinity", {"line": "0 0.5 inf 0.2 0.2"}, "reject", OUT_OF_RANGE),
    Case("yolo", "polygon-vertex-1e9", {"line": "0 0.1 0.1 1e9 0.1 0.5 0.5"}, "reject_or_clip", OUT_OF_RANGE),
    Case("yolo", "polygon-vertex-1e308", {"line": "0 0.1 0.1 0.9 1e308 0.5 0.5"}, "reject_or_clip", OUT_OF_RANGE),
    Case("yolo", "polygon-vertex-minus-infinity", {"line": "0 0.1 0.1 -inf 0.1 0.5 0.5"}, "reject", OUT_OF_RANGE),
    Case("yolo", "polygon-vertex-nan", {"line": "1 0.1 0.1 0.9 nan 0.5 0.5"}, "reject", OUT_OF_RANGE),
    Case("yolo", "class-1e9", {"line": "1e9 0.5 0.5 0.2 0.2"}, "reject", ("class", "malformed")),
    Case("yolo", "class-10-to-the-30", {"line": "1" + "0" * 30 + " 0.5 0.5 0.2 0.2"}, "reject", ("class",)),
]

_BASE = [[5, 30], [30, 30], [30, 50], [5, 50]]  # a polygon away from the saved one and the brush stroke


def _vertex(v: Any, axis: int = 0) -> list[list[Any]]:
    pts = [list(p) for p in _BASE]
    pts[1][axis] = v
    return pts


LABEL = [
    Case("label", "polygon-vertex-1e9", {"method": "polygon", "args": [_vertex(1e9)], "ref_args": [_vertex(1e4)]},
         "reject_or_clip", FAULTY_VALUE),
    Case("label", "polygon-vertex-1e308", {"method": "polygon", "args": [_vertex(1e308)], "ref_args": [_vertex(1e4)]},
         "reject_or_clip", FAULTY_VALUE),
    Case("label", "polygon-vertex-minus-1e308", {"method": "polygon", "args": [_vertex(-1e308, 1)],
                                                 "ref_args": [_vertex(-1e4, 1)]}, "reject_or_clip", FAULTY_VALUE),
    Case("label", "polygon-vertex-nan", {"method": "polygon", "args": [_vertex(NAN)]}, "reject", NOT_FINITE),
    Case("label", "polygon-vertex-infinity", {"method": "polygon", "args": [_vertex(INF)]}, "reject", NOT_FINITE),
    Case("label", "polygon-vertex-null", {"method": "polygon", "args": [_vertex(None)]}, "reject",
         ("finite", "number")),  # what the page's JSON makes of NaN
    Case("label", "polygon-all-vertices-at-1e9", {"method": "polygon", "args": [[[1e9, 1e9], [2e9, 1e9], [2e9, 2e9]]]},
         "reject", ("pixel", "outside")),
    Case("label", "brush-to-1e9", {"method": "stroke", "args": ["brush", [[10, 10], [1e9, 10]], 3],
                                   "ref_args": ["brush", [[10, 10], [1000, 10]], 3]}, "reject_or_clip", FAULTY_VALUE),
    # Past 2**31 the stroke's integer points wrap around: it must not paint somewhere else.
    Case("label", "brush-to-1e12", {"method": "stroke", "args": ["brush", [[10, 10], [1e12, 10]], 3],
                                    "ref_args": ["brush", [[10, 10], [1000, 10]], 3]}, "reject_or_clip", FAULTY_VALUE),
    Case("label", "brush-to-1e308", {"method": "stroke", "args": ["brush", [[10, 10], [1e308, 10]], 3],
                                     "ref_args": ["brush", [[10, 10], [1000, 10]], 3]}, "reject_or_clip", FAULTY_VALUE),
    Case("label", "brush-diagonal-to-1e308", {"method": "stroke", "args": ["brush", [[10, 10], [1e308, 1e308]], 3],
                                              "ref_args": ["brush", [[10, 10], [1000, 1000]], 3]},
         "reject_or_clip", FAULTY_VALUE),
    Case("label", "brush-from-minus-1e308", {"method": "stroke", "args": ["brush", [[-1e308, 10], [10, 10]], 3],
                                             "ref_args": ["brush", [[-1000, 10], [10, 10]], 3]},
         "reject_or_clip", FAULTY_VALUE),
    Case("label", "brush-nan", {"method": "stroke", "args": ["brush", [[10, 10], [NAN, 10]], 3]}, "reject", NOT_FINITE),
    Case("label", "brush-infinity", {"method": "stroke", "args": ["brush", [[10, 10], [10, INF]], 3]}, "reject",
         NOT_FINITE),
    Case("label", "eraser-to-1e308", {"method": "stroke", "args": ["eraser", [[50, 40], [1e308, 40]], 2],
                                      "ref_args": ["eraser", [[50, 40], [1000, 40]], 2]}, "reject_or_clip",
         FAULTY_VALUE),
    Case("label", "eraser-nan", {"method": "stroke", "args": ["eraser", [[50, 40], [NAN, NAN]], 2]}, "reject",
         NOT_FINITE),
]
CASES = COCO + YOLO + LABEL


# --------------------------------------------------------------------- running the children
def _run_child(cases: list[Case], scratch: Path) -> tuple[dict[str, dict], str | None, str]:
    """Run ``cases`` in one child: ``(results by id, id of the case it died or hung on, what it said)``."""
    payload = json.dumps([[c.group, c.key, c.params] for c in cases])  # NaN and Infinity as Python writes them
    env = {**os.environ, "PYTHONFAULTHANDLER": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(REPO), str(scratch)], cwd=REPO, env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_limit_child)
    try:
        out, err = proc.communicate(payload, timeout=CHILD_TIMEOUT_S)
        how = f"exit status {proc.returncode}"
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        how = f"hung (killed after {CHILD_TIMEOUT_S} s)"
    results, running = {}, None
    for line in out.splitlines():
        if line.startswith("START "):
            running = line[6:]
        elif line.startswith("RESULT "):
            r = json.loads(line[7:])
            results[r["id"]] = r
            running = None
    if proc.returncode == 0 and len(results) == len(cases):
        return results, None, ""
    said = f"{how}; stderr: {err[-2000:]}"
    if running is None:  # died after its last case (a corrupted heap found at exit): whose is unknown
        running = next((c.key for c in cases if c.key not in results), "")
    return results, running, said


def _run_group(cases: list[Case], scratch: Path) -> dict[str, dict]:
    """Every case of a group, a new child after each one that dies."""
    results: dict[str, dict] = {}
    todo = list(cases)
    while todo:
        got, died, said = _run_child(todo, scratch)
        results.update(got)
        if died is None:
            break
        if died == "" or died in results:  # exited badly after every case had answered
            for c in todo:
                results.setdefault(c.key, {})["died"] = f"the child running this group died: {said}"
            break
        results[died] = {"died": f"the process died on this case: {said}"}
        todo = todo[[c.key for c in todo].index(died) + 1:]
    return results


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory) -> dict[str, dict]:
    scratch = tmp_path_factory.mktemp("crashes")
    groups = [[c for c in CASES if c.group == g] for g in ("coco", "yolo", "label")]
    with ThreadPoolExecutor(len(groups)) as pool:
        done = list(pool.map(lambda g: _run_group(g, scratch), groups))
    return {k: v for d in done for k, v in d.items()}


# --------------------------------------------------------------------- the checks
def _rejection(case: Case, out: dict) -> str | None:
    """The reason this case's shape was rejected with, or None when it was kept."""
    if case.group == "coco":
        why = [r for w, r in out["rejected"] if "annotation 3" in w or "annotation #2" in w]
        assert len(why) <= 1, out["rejected"]
        return why[0] if why else None
    if case.group == "yolo":
        assert all(k == 1 for k, _ in out["errors"]), out["errors"]
        return out["errors"][0][1] if out["errors"] else None
    return out["error"]


def _names_fault(reason: str, words: tuple[str, ...]) -> bool:
    return any(w.lower() in reason.lower() for w in words)


@pytest.mark.parametrize("case", CASES, ids=[c.key for c in CASES])
def test_a_hostile_value_rejects_or_clips_its_shape_and_keeps_the_rest(outcomes, case):
    out = outcomes[case.key]
    assert "died" not in out, out["died"]
    assert "raised" not in out, f"{out['raised']}\n{out.get('traceback', '')}"
    if case.group == "coco":  # the rest of the file: the image and both good annotations
        assert out["imported"] == 1 and all(out["good_kept"]), out
        assert out["inside"], "a stored annotation reaches outside the image"
        assert all("annotation 1" not in w and "annotation #1" not in w for w, _ in out["rejected"]), out["rejected"]
    elif case.group == "yolo":  # the other two lines
        assert all(out["good_kept"]), out
        assert out["inside"], "a row reaches outside the image"
    else:  # the saved annotation, and the pending mask when the call is refused
        assert out["saved_kept"], "the saved annotation changed"
    reason = _rejection(case, out)
    if reason is not None:
        assert case.outcome != "clip", f"rejected instead of clipped: {reason}"
        assert _names_fault(reason, case.words), f"the reason does not name the fault ({case.words}): {reason}"
        if case.group == "coco":
            assert out["added"] == 2, out
        elif case.group == "label":
            assert out["pending_kept"], "a refused call changed the pending mask"
        return
    assert case.outcome != "reject", f"kept instead of rejected: {out}"
    if case.outcome == "reject_or_note":
        notes = out.get("notes", [])
        assert any(_names_fault(what, case.words) for _, what in notes), \
            f"kept without that part and without a note naming the fault: {notes}"
    if case.group == "coco":
        assert out["added"] == 3, out
    elif case.group == "yolo":
        assert out["n"] == 3, out
    if "ref_iou" in out or "ref" in case.params or "ref_args" in case.params:
        assert out.get("ref_iou", 0.0) >= 0.98, \
            f"clipped to other pixels than the same shape with a finite far vertex (IoU {out.get('ref_iou')})"
