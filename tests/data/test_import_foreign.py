"""Datasets as other tools write them (tests/data/fixtures/foreign/, see its README.md) import as the
import rules say (issue 14), and import -> export -> import gives back the same images, classes,
statuses and labels.

Per fixture: the images and their statuses, the labels per class (and how many carry a mask), the
proposals, what is rejected (each named with its file), what is noted, the background and empty-image
counts. Then each is exported (COCO polygons / RLE, YOLO segment / detect as fits) and the export
imported into a fresh project: the same images (by sha256), class names, statuses, labels per class;
masks equal with RLE, IoU >= 0.99 against the hole-filled mask for polygons (single-part masks of
>= 50 px); boxes of box-only labels within 0.01 px.
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.ndimage import binary_fill_holes

from data.export import export_project
from data.importers import import_sources
from data.store import Project

FOREIGN = Path(__file__).parent / "fixtures" / "foreign"


@cache
def _maker():
    """tests/data/fixtures/foreign/make_foreign.py as a module (the generator of the fixtures)."""
    spec = importlib.util.spec_from_file_location("make_foreign", FOREIGN / "make_foreign.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _key(name: str) -> str:
    """A class name as the merge rule compares them (case and spaces aside)."""
    return " ".join(str(name).split()).casefold()


@dataclass(frozen=True)
class Case:
    source: str  # under fixtures/foreign/
    statuses: dict[str, tuple[str, int]]  # image name fragment -> (status, accepted labels); every image
    labels: dict[str, int]  # class -> accepted labels over all images
    masked: dict[str, int]  # class -> of those, the ones with a mask (the rest are box-only)
    classes: frozenset[str] | str  # the project's class names (compared by _key), or "coco80"
    exports: tuple[tuple[str, bool], ...]  # (format, rle) round trips
    rejected: tuple[str, ...] = ()  # each rejected entry names one of these, and each is named
    notes: tuple[tuple[str, ...], ...] = ()  # for each tuple, one note holds all its fragments
    crowd: int = 0  # crowd regions imported (and noted)
    empty_images: int = 0
    background: int = 0
    proposals: dict[str, int] = field(default_factory=dict)  # class -> proposed labels
    skipped: tuple[str, ...] = ()  # fragments of names in report.skipped


CASES = {
    "mmdet_coco_dummy": Case(
        "mmdet_coco_dummy",
        {"000000255917": ("done", 4), "000000000139": ("done", 3)},
        {"car": 2, "traffic light": 1, "person": 1, "potted plant": 1, "tv": 1, "dining table": 1},
        {"car": 2, "traffic light": 1, "person": 1, "potted plant": 1, "tv": 1, "dining table": 1},
        "coco80", (("coco", True), ("coco", False), ("yolo-segment", False)), crowd=1),
    "mmdet_coco_sample": Case(
        "mmdet_coco_sample",
        {"fake1.jpg": ("unlabeled", 0), "fake2.jpg": ("unlabeled", 0), "fake3.jpg": ("unlabeled", 0)},
        {}, {}, frozenset({"bus", "car"}), (("coco", False),),
        notes=(("fake3.jpg",),), empty_images=1, proposals={"bus": 2, "car": 1}),
    "datumaro_coco_instances": Case(
        "datumaro_coco_instances",
        {"a.jpg": ("done", 1), "b.jpg": ("done", 2)},
        {"a": 1, "b": 2}, {"b": 1}, frozenset({"a", "b", "c"}), (("coco", True), ("coco", False)), crowd=1),
    "roboflow_coco": Case(
        "roboflow_coco",
        {"panel-01": ("done", 2), "panel-02": ("done", 2), "panel-03": ("unlabeled", 0), "panel-04": ("done", 1),
         "panel-05": ("done", 1)},
        {"crack": 3, "scratch": 3}, {"crack": 2, "scratch": 2}, frozenset({"crack", "scratch"}),
        (("coco", True), ("coco", False)),  # category 0, the workspace, labels nothing: no class, a note
        notes=(("Crack", "crack"), ("panel-03",), ("surface-defects", "supercategory")), empty_images=1,
        skipped=("README.dataset.txt", "README.roboflow.txt")),
    "roboflow_yolo": Case(
        "roboflow_yolo",
        {"panel-01": ("done", 2), "panel-02": ("done", 2), "panel-03": ("good", 0), "panel-04": ("done", 1),
         "panel-05": ("done", 1)},
        {"crack": 3, "scratch": 3}, {"crack": 2, "scratch": 2}, frozenset({"crack", "scratch"}),
        (("yolo-segment", False), ("coco", True)), background=1),
    "labelstudio_yolo": Case(
        "labelstudio_yolo",
        {"IMG_0001": ("done", 2), "IMG_0002": ("done", 1), "IMG_0003": ("good", 0)},
        {"crack": 1, "scratch": 1, "porosity": 1}, {}, frozenset({"crack", "porosity", "scratch"}),
        (("yolo-detect", False), ("coco", True)), rejected=("e4a1c2d9-IMG_0004",), background=1),
    "labelstudio_coco": Case(
        "labelstudio_coco",
        {"IMG_0001": ("done", 2), "IMG_0002": ("done", 1)},
        {"crack": 1, "scratch": 1, "porosity": 1}, {"scratch": 1, "porosity": 1},
        frozenset({"crack", "porosity", "scratch"}), (("coco", False),), rejected=("e4a1c2d9-IMG_0004",)),
    "ultralytics_coco8_seg": Case(
        "ultralytics_coco8_seg/coco8-seg.yaml",
        {"000000000009": ("done", 3), "000000000025": ("done", 1), "000000000030": ("done", 2),
         "000000000034": ("unlabeled", 0), "000000000036": ("done", 2), "000000000042": ("good", 0),
         "000000000049": ("done", 3), "000000000061": ("done", 2)},
        {"bowl": 1, "orange": 1, "broccoli": 1, "giraffe": 1, "potted plant": 2, "vase": 1, "umbrella": 1,
         "person": 3, "horse": 1, "elephant": 1},
        {"bowl": 1, "orange": 1, "broccoli": 1, "giraffe": 1, "potted plant": 2, "vase": 1, "umbrella": 1,
         "person": 3, "horse": 1, "elephant": 1},
        "coco80", (("yolo-segment", False), ("coco", True)),
        notes=(("coco8-seg.yaml", "../datasets/coco8-seg"),), background=1),
    "supervision_coco": Case(
        "supervision_coco",
        {"sv_0.png": ("done", 3), "sv_1.png": ("done", 2), "sv_2.png": ("unlabeled", 0)},
        {"crack": 2, "pit": 2, "stain": 1}, {"crack": 1, "pit": 1, "stain": 1}, frozenset({"crack", "pit", "stain"}),
        (("coco", True), ("coco", False)), notes=(("sv_2.png",),), crowd=2, empty_images=1),
    "supervision_yolo": Case(
        "supervision_yolo",
        {"sv_0.png": ("done", 4), "sv_1.png": ("done", 2), "sv_2.png": ("good", 0)},
        {"crack": 2, "pit": 2, "stain": 2}, {"crack": 1, "pit": 1, "stain": 2}, frozenset({"crack", "pit", "stain"}),
        (("yolo-segment", False),), background=1),
}


# ------------------------------------------------------------------ helpers
def _import(tmp_path: Path, name: str, source: Path, **kwargs):
    project = Project.create(tmp_path / name)
    return project, import_sources(project, [source], **kwargs)


def _image(project: Project, fragment: str):
    found = [r for r in project.images() if fragment in r.name]
    assert len(found) == 1, f"{fragment!r} names {[r.name for r in found]} of {[r.name for r in project.images()]}"
    return found[0]


def _class_counts(project: Project, statuses: tuple[str, ...] = ("accepted",)) -> tuple[Counter, Counter]:
    """(labels per class, masked labels per class) over all images; classes by _key."""
    names = project.class_names()
    labels, masked = Counter(), Counter()
    for rec in project.images():
        ann = project.annotations(rec, statuses=statuses)
        for c, m in zip(ann.class_id.tolist(), ann.has_mask.tolist(), strict=True):
            labels[_key(names[int(c)])] += 1
            masked[_key(names[int(c)])] += bool(m)
    return labels, +masked


def _expected_classes(case: Case) -> set[str]:
    return {_key(n) for n in (_maker().COCO80 if case.classes == "coco80" else case.classes)}


def _text(entry: tuple[str, str]) -> str:
    return f"{entry[0]} {entry[1]}"


def _crowd_noted(notes: tuple, n: int) -> bool:
    """Crowd regions are counted in the notes: one note each, or one note holding the count."""
    crowd = [e for e in notes if "crowd" in _text(e).casefold()]
    return len(crowd) == n or any(str(n) in _text(e) for e in crowd)


def _check_report(case: Case, project: Project, report) -> None:
    assert report.imported == len(case.statuses), report
    for fragment, (status, n_labels) in case.statuses.items():
        rec = _image(project, fragment)
        assert rec.status == status, (fragment, rec.status)
        assert len(project.annotations(rec, statuses=("accepted",))) == n_labels, fragment
    assert {_key(c.name) for c in project.classes()} == _expected_classes(case)
    assert len(project.classes()) == len(_expected_classes(case))  # spellings of one class merged into one
    labels, masked = _class_counts(project)
    assert labels == Counter(case.labels)
    assert masked == Counter(case.masked)
    proposals, _ = _class_counts(project, ("proposed",))
    assert proposals == Counter(case.proposals)
    assert report.proposals_added == sum(case.proposals.values())
    for entry in report.rejected:  # every rejection names its file and why
        assert any(f in _text(entry) for f in case.rejected), entry
        assert entry[0].strip() and entry[1].strip(), entry
    for fragment in case.rejected:
        assert any(fragment in _text(e) for e in report.rejected), (fragment, report.rejected)
    for fragments in case.notes:
        assert any(all(f in _text(e) for f in fragments) for e in report.notes), (fragments, report.notes)
    assert _crowd_noted(report.notes, case.crowd), report.notes
    assert report.empty_images == case.empty_images
    assert report.background == case.background
    assert len(project.images(status="good")) == case.background
    for fragment in case.skipped:
        assert any(fragment in s for s in report.skipped), (fragment, report.skipped)


# ------------------------------------------------------------------ import
@pytest.mark.parametrize("name", list(CASES))
def test_foreign_dataset_imports_as_the_rules_say(tmp_path, name):
    case = CASES[name]
    project, report = _import(tmp_path, "p", FOREIGN / case.source)
    _check_report(case, project, report)


def test_mmdet_sample_scores_become_proposals_with_their_confidence(tmp_path):
    """mmdetection's coco_sample.json gives every box "score": 1.0: a results file, so proposals (rule 3)."""
    project, _ = _import(tmp_path, "p", FOREIGN / "mmdet_coco_sample")
    proposed = project.annotations(_image(project, "fake1.jpg"), statuses=("proposed",))
    assert len(proposed) == 2
    assert np.allclose(proposed.confidence, 1.0)
    assert (proposed.status == "proposed").all()


@pytest.mark.parametrize("name, image", [("mmdet_coco_sample", "fake3.jpg"), ("roboflow_coco", "panel-03"),
                                         ("supervision_coco", "sv_2.png")])
def test_coco_images_without_annotations_are_good_when_asked(tmp_path, name, image):
    case = CASES[name]
    project, report = _import(tmp_path, "p", FOREIGN / case.source, empty_as="good")
    assert _image(project, image).status == "good"
    assert report.empty_images == 1
    assert report.background == 1
    others = {f: s for f, (s, _) in case.statuses.items() if f != image}
    assert {f: _image(project, f).status for f in others} == others


@pytest.mark.parametrize("name, where", [("mmdet_coco_dummy", "900300255917"), ("datumaro_coco_instances", "b.jpg"),
                                         ("supervision_coco", "sv_0.png")])
def test_skip_crowd_leaves_crowd_regions_out_each_named(tmp_path, name, where):
    case = CASES[name]
    project, report = _import(tmp_path, "p", FOREIGN / case.source, skip_crowd=True)
    crowd = [e for e in report.rejected if "crowd" in _text(e).casefold()]
    assert len(crowd) == case.crowd and all(where in _text(e) for e in crowd), report.rejected
    assert not [e for e in report.notes if "crowd" in _text(e).casefold()]
    labels, _ = _class_counts(project)
    assert sum(labels.values()) == sum(case.labels.values()) - case.crowd


# ------------------------------------------------------------------ round trips
def _state(project: Project, exported_only: bool) -> dict[str, tuple[str, list[tuple]]]:
    """sha256 -> (status, [(class key, has_mask, xyxy, full mask or None)]) of the accepted labels."""
    names = project.class_names()
    out = {}
    for rec in project.images():
        if exported_only and rec.status not in ("done", "good"):
            continue
        ann = project.annotations(rec, statuses=("accepted",))
        masks = ann.full_masks() if len(ann) else np.zeros((0, rec.height, rec.width), bool)
        rows = [(_key(names[int(ann.class_id[i])]), bool(ann.has_mask[i]), ann.xyxy[i].astype(np.float64),
                 masks[i] if ann.has_mask[i] else None) for i in range(len(ann))]
        out[rec.sha256] = (rec.status, rows)
    return out


def _parts(mask: np.ndarray) -> int:
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _match(before: list[tuple], after: list[tuple], score) -> list[tuple[tuple, tuple]]:
    """Pairs (before row, after row) of one class, one to one, best score first."""
    pairs = sorted(((score(b, a), i, j) for i, b in enumerate(before) for j, a in enumerate(after)
                    if b[0] == a[0]), key=lambda t: -t[0])
    used_b, used_a, out = set(), set(), []
    for _s, i, j in pairs:
        if i not in used_b and j not in used_a:
            used_b.add(i)
            used_a.add(j)
            out.append((before[i], after[j]))
    return out


def _check_same_labels(fmt: str, rle: bool, before: list[tuple], after: list[tuple], where: str) -> None:
    assert Counter(r[0] for r in after) == Counter(r[0] for r in before), where
    if fmt == "coco":  # box-only rows stay box-only (rule 12), masks stay masks
        assert Counter((r[0], r[1]) for r in after) == Counter((r[0], r[1]) for r in before), where
    if fmt == "yolo-detect":
        assert not any(r[1] for r in after), where
    # Boxes: of the box-only rows in COCO, of every row in a detect export (a segment export draws a
    # box-only row as its rectangle: test_box_only_labels_come_back_from_yolo_segment_as_their_box).
    boxes_kept = [b for b in before if fmt == "yolo-detect" or (fmt == "coco" and not b[1])]
    if boxes_kept:
        candidates = [a for a in after if fmt == "yolo-detect" or not a[1]]
        pairs = _match(boxes_kept, candidates, lambda b, a: -float(np.abs(b[2] - a[2]).max()))
        assert len(pairs) == len(boxes_kept), where
        for b, a in pairs:
            assert np.abs(b[2] - a[2]).max() <= 0.01, (where, b[0], b[2], a[2])
    masked = [b for b in before if b[1]]
    if fmt == "yolo-detect" or not masked:
        return
    after_masked = [a for a in after if a[1]]
    if rle:  # exact, holes included
        pairs = _match(masked, after_masked, lambda b, a: float(np.array_equal(b[3], a[3])))
        assert len(pairs) == len(masked), where
        for b, a in pairs:
            assert np.array_equal(b[3], a[3]), (where, b[0], int(b[3].sum()), int(a[3].sum()))
        return
    checked = [b for b in masked if _parts(b[3]) == 1 and b[3].sum() >= 50]
    pairs = _match(checked, after_masked, lambda b, a: _iou(binary_fill_holes(b[3]), a[3]))
    assert len(pairs) == len(checked), where
    for b, a in pairs:
        iou = _iou(binary_fill_holes(b[3]), a[3])
        assert iou >= 0.99, (where, b[0], int(b[3].sum()), int(a[3].sum()), iou)


ROUND_TRIPS = [(name, fmt, rle) for name, case in CASES.items() for fmt, rle in case.exports]


@pytest.mark.parametrize("name, fmt, rle", ROUND_TRIPS,
                         ids=[f"{n}-{f}{'-rle' if r else ''}" for n, f, r in ROUND_TRIPS])
def test_import_export_import_is_the_identity(tmp_path, name, fmt, rle):
    case = CASES[name]
    coco_source = bool(case.empty_images)  # its empty images become good ones here, so they are exported too
    first, _ = _import(tmp_path, "first", FOREIGN / case.source, **({"empty_as": "good"} if coco_source else {}))
    export_project(first, fmt, tmp_path / "out", rle=rle)
    before = _state(first, exported_only=True)
    # A COCO export marks good images as images without annotations: read them back as such.
    has_good = any(status == "good" for status, _ in before.values())
    second, report = _import(tmp_path, "second", tmp_path / "out",
                             **({"empty_as": "good"} if fmt == "coco" and has_good else {}))
    assert not report.rejected, report.rejected
    after = _state(second, exported_only=False)
    assert set(after) == set(before)  # the same images, by content
    assert {_key(c.name) for c in second.classes()} == {_key(c.name) for c in first.classes()}
    assert len(second.classes()) == len(first.classes())
    for sha, (status, rows) in before.items():
        assert after[sha][0] == status, (sha[:10], status, after[sha][0])
        _check_same_labels(fmt, rle, rows, after[sha][1], f"{name} {sha[:10]}")


@pytest.mark.parametrize("name", ["roboflow_yolo", "supervision_yolo"])
def test_box_only_labels_come_back_from_yolo_segment_as_their_box(tmp_path, name):
    """YOLO segment lines are all polygons (Ultralytics reads them so), so a box-only label is written as
    its rectangle and comes back as a mask: the pixels of its box (``geometry.box_to_mask``), not a pixel
    more, as rule 10 asks of masks (read here as rule 11 for box-only rows)."""
    from data.geometry import box_to_mask

    first, _ = _import(tmp_path, "first", FOREIGN / CASES[name].source)
    export_project(first, "yolo-segment", tmp_path / "out")
    second, _ = _import(tmp_path, "second", tmp_path / "out")
    before, after = _state(first, exported_only=True), _state(second, exported_only=False)
    boxes = [(sha, row) for sha, (_s, rows) in before.items() for row in rows if not row[1]]
    assert boxes
    for sha, (cls, _m, xyxy, _mask) in boxes:
        rec = next(r for r in first.images() if r.sha256 == sha)
        pixels = box_to_mask(xyxy, rec.height, rec.width)
        best = max((_iou(pixels, a[3]) for a in after[sha][1] if a[0] == cls and a[1]), default=0.0)
        assert best >= 0.99, (name, cls, xyxy.tolist(), best)


# ------------------------------------------------------------------ the fixtures themselves
def test_make_foreign_regenerates_the_committed_files(tmp_path):
    """make_foreign.py writes exactly what is committed (images: with the Pillow they were written with;
    the supervision fixtures: with that supervision too)."""
    import PIL

    maker = _maker()
    same_pillow = PIL.__version__ == maker.PILLOW_VERSION
    try:
        import supervision

        same_sv = supervision.__version__ == maker.SUPERVISION_VERSION
    except ImportError:
        same_sv = False
    names = tuple(n for n in maker.FIXTURES if same_sv or n not in maker.SUPERVISION_FIXTURES)
    maker.build(tmp_path, names)
    for name in names:
        committed = {p.relative_to(FOREIGN / name) for p in (FOREIGN / name).rglob("*") if p.is_file()}
        written = {p.relative_to(tmp_path / name) for p in (tmp_path / name).rglob("*") if p.is_file()}
        assert written == committed, name
        for rel in sorted(written):
            if rel.suffix in (".jpg", ".png") and not same_pillow:
                continue
            assert (tmp_path / name / rel).read_bytes() == (FOREIGN / name / rel).read_bytes(), f"{name}/{rel}"


def test_fixtures_stay_small():
    total = sum(p.stat().st_size for p in FOREIGN.rglob("*") if p.is_file())
    assert total < 400_000, total
