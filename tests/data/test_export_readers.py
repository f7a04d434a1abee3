"""Exports read back by readers nobody here wrote: pycocotools, supervision, Ultralytics.

Each reader loads a COCO (polygons, and ``rle=True``) or YOLO (detect, segment) export of two
projects, and what it reads is compared with what the project holds:

- ``blobs``: ``make_project`` (64x48 images; per done image an ellipse, a ring with a hole and a
  mask in two parts; two good images, one unlabeled that is never exported).
- ``sample``: ``data.sample.generate`` (900x900 bottles), imported as images + ground_truth.json;
  its defect-free images come in unlabeled and are marked good here, so they export as backgrounds.

Targets: a polygon can hold no hole, so a polygon reader must give back the stored mask with its
holes filled (``fill_holes``), exactly; an RLE reader the stored mask exactly. A mask in several
parts is one COCO polygon per part, but one bridged YOLO polygon (only its box and count are
checked). Ultralytics must not reach the network: ``YOLO_OFFLINE`` and no font download.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("YOLO_OFFLINE", "1")  # before Ultralytics is first imported

import cv2
import numpy as np
import pytest
import supervision as sv
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from data.annotations import Annotations
from data.export import export_project
from data.geometry import fill_holes
from data.importers import import_sources
from data.sample import generate
from data.store import Project
from tests.data.conftest import make_project

KINDS = ("blobs", "sample")
VAL_FRACTION = 0.25


# ------------------------------------------------------------------ what the project holds
@dataclass(frozen=True)
class Expected:
    """One exported image as the project holds it."""

    name: str  # file name inside the export
    split: str
    height: int
    width: int
    background: bool  # a good image: no instances
    classes: np.ndarray  # (N,) class index 0..K-1 in project class order
    boxes: np.ndarray  # (N, 4) XYXY on pixel edges
    masks: np.ndarray  # (N, H, W) bool, as stored (holes and all)

    @property
    def filled(self) -> np.ndarray:
        return np.stack([fill_holes(m, m.size) for m in self.masks]) if len(self.masks) else self.masks


@dataclass(frozen=True)
class Export:
    project: Project
    root: Path
    class_names: list[str]
    images: dict[str, Expected]  # file name -> expected

    def split(self, s: str) -> dict[str, Expected]:
        return {n: e for n, e in self.images.items() if e.split == s}

    @property
    def splits(self) -> list[str]:
        return sorted({e.split for e in self.images.values()})


def _expected(project: Project, out: Path) -> dict[str, Expected]:
    """Every exported image file, found back by its content hash, with the project's labels."""
    by_sha = {rec.sha256: rec for rec in project.images()}
    index = {c.id: k for k, c in enumerate(project.classes())}
    out_images: dict[str, Expected] = {}
    for path in sorted((out / "images").glob("*/*")):
        rec = by_sha[hashlib.sha256(path.read_bytes()).hexdigest()]
        assert rec.status in ("done", "good"), f"{rec.name} ({rec.status}) must not be exported"
        ann = (project.annotations(rec, ("accepted",)) if rec.status == "done"
               else Annotations.empty(rec.height, rec.width))
        masks = ann.full_masks().astype(bool) if len(ann) else np.zeros((0, rec.height, rec.width), dtype=bool)
        out_images[path.name] = Expected(
            name=path.name, split=path.parent.name, height=rec.height, width=rec.width,
            background=rec.status == "good",
            classes=np.array([index[int(c)] for c in ann.class_id], dtype=np.int64),
            boxes=np.asarray(ann.xyxy, dtype=np.float64).reshape(-1, 4), masks=masks,
        )
    return out_images


def _parts(mask: np.ndarray) -> int:
    """8-connected parts of a mask (as OpenCV's outer contours count them)."""
    return int(cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0]) - 1


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _match(exp: Expected, classes, boxes, tol: float) -> list[int]:
    """For each instance a reader gives, the project instance of the same class and box (within
    ``tol`` px); one to one, so counts and classes agree as well."""
    classes, boxes = np.asarray(classes).reshape(-1), np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    assert len(classes) == len(exp.classes), f"{exp.name}: {len(classes)} instances read, project has {len(exp.classes)}"
    used: list[int] = []
    for c, b in zip(classes.tolist(), boxes, strict=True):
        err = np.abs(exp.boxes - b).max(axis=1) if len(exp.boxes) else np.zeros(0)
        cands = [i for i in range(len(exp.classes)) if i not in used and exp.classes[i] == c and err[i] <= tol]
        assert cands, f"{exp.name}: read class {c} box {b.round(3).tolist()} matches nothing in {exp.boxes.tolist()}"
        used.append(min(cands, key=lambda i: err[i]))
    return used


# ------------------------------------------------------------------ projects and exports
def _sample_project(root: Path) -> Project:
    src = root / "sample_src"
    generate(src, n=8, seed=0)
    project = Project.create(root / "sample_project", classes=[])
    rep = import_sources(project, [src / "images", src / "ground_truth.json"])
    assert not rep.rejected
    for rec in project.images(status="unlabeled"):  # the sample's defect-free images
        assert len(project.annotations(rec, ("accepted", "proposed"), with_masks=False)) == 0
        project.set_image_status(rec.id, "good")
    assert project.images(status="good") and project.images(status="done")
    return project


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("readers")
    projects: dict[str, Project] = {}
    cache: dict[tuple, Export] = {}

    def get(kind: str, fmt: str, rle: bool = False) -> Export:
        if kind not in projects:
            projects[kind] = (make_project(root / "blobs", n_done=6, n_good=2, n_unlabeled=1, size=(48, 64))
                              if kind == "blobs" else _sample_project(root))
        key = (kind, fmt, rle)
        if key not in cache:
            project = projects[kind]
            out = root / f"{kind}-{fmt}{'-rle' if rle else ''}"
            export_project(project, fmt, out, val_fraction=VAL_FRACTION, seed=0, rle=rle)
            cache[key] = Export(project, out, [c.name for c in project.classes()], _expected(project, out))
        return cache[key]

    return get


def _quiet_coco(path: Path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


# ------------------------------------------------------------------ pycocotools
@pytest.mark.parametrize("rle", [False, True], ids=["polygons", "rle"])
@pytest.mark.parametrize("kind", KINDS)
def test_pycocotools_reads_images_classes_and_counts(exports, kind, rle):
    ex = exports(kind, "coco", rle)
    assert ex.splits == ["train", "val"]
    for s in ex.splits:
        gt = _quiet_coco(ex.root / "annotations" / f"instances_{s}.json")
        cats = gt.loadCats(gt.getCatIds())
        assert [c["name"] for c in sorted(cats, key=lambda c: c["id"])] == ex.class_names
        expected = ex.split(s)
        imgs = gt.loadImgs(gt.getImgIds())
        assert sorted(im["file_name"] for im in imgs) == sorted(expected)
        for im in imgs:
            exp = expected[im["file_name"]]
            assert (im["height"], im["width"]) == (exp.height, exp.width)
            anns = gt.loadAnns(gt.getAnnIds(imgIds=[im["id"]], iscrowd=None))
            assert not exp.background or not anns
            x, y, w, h = (np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4).T)
            _match(exp, [a["category_id"] - 1 for a in anns], np.stack([x, y, x + w, y + h], 1), tol=1e-6)


@pytest.mark.parametrize("rle", [False, True], ids=["polygons", "rle"])
@pytest.mark.parametrize("kind", KINDS)
def test_pycocotools_area_is_the_pixel_count_it_draws(exports, kind, rle):
    ex = exports(kind, "coco", rle)
    for s in ex.splits:
        gt = _quiet_coco(ex.root / "annotations" / f"instances_{s}.json")
        bad = [(gt.imgs[a["image_id"]]["file_name"], a["id"], a["area"], int(gt.annToMask(a).sum()))
               for a in gt.loadAnns(gt.getAnnIds())
               if a["area"] != gt.annToMask(a).sum()]
        assert not bad, f"{s}: (image, ann id, area, annToMask pixels): {bad}"


@pytest.mark.parametrize("rle", [False, True], ids=["polygons", "rle"])
@pytest.mark.parametrize("kind", KINDS)
def test_pycocotools_masks_are_the_stored_masks(exports, kind, rle):
    """RLE: the stored mask exactly. Polygons: the stored mask with holes filled, exactly, one
    polygon per 8-connected part, each part drawn on its own exactly as well."""
    ex = exports(kind, "coco", rle)
    bad, checked = [], 0
    for s in ex.splits:
        gt = _quiet_coco(ex.root / "annotations" / f"instances_{s}.json")
        for im in gt.loadImgs(gt.getImgIds()):
            exp = ex.images[im["file_name"]]
            anns = gt.loadAnns(gt.getAnnIds(imgIds=[im["id"]]))
            x, y, w, h = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4).T
            order = _match(exp, [a["category_id"] - 1 for a in anns], np.stack([x, y, x + w, y + h], 1), tol=1e-6)
            for a, i in zip(anns, order, strict=True):
                got = gt.annToMask(a).astype(bool)
                want = exp.masks[i] if rle else exp.filled[i]
                checked += 1
                if not np.array_equal(got, want):
                    bad.append((im["file_name"], a["id"], int((got != want).sum())))
                    continue
                if not rle:
                    polys = a["segmentation"]
                    assert len(polys) == _parts(want), (im["file_name"], a["id"], len(polys), _parts(want))
                    union = np.zeros_like(want)
                    for p in polys:
                        part = mask_utils.decode(mask_utils.frPyObjects([p], exp.height, exp.width)).any(2)
                        assert _parts(part) == 1 and not (part & union).any(), (im["file_name"], a["id"])
                        union |= part
                    assert np.array_equal(union, want)
    assert checked == sum(len(e.classes) for e in ex.images.values()) > 0
    assert not bad, f"(image, ann id, pixels that differ): {bad}"


@pytest.mark.parametrize("rle", [False, True], ids=["polygons", "rle"])
@pytest.mark.parametrize("kind", KINDS)
def test_pycocotools_self_evaluation_scores_ap_one(exports, kind, rle):
    """The ground truth handed back as detections (score 1.0) scores AP = 1.0, boxes and masks."""
    ex = exports(kind, "coco", rle)
    evaluated = 0
    for s in ex.splits:
        gt = _quiet_coco(ex.root / "annotations" / f"instances_{s}.json")
        anns = gt.loadAnns(gt.getAnnIds())
        if not anns:
            continue
        for iou_type in ("bbox", "segm"):
            dets = []
            for a in anns:
                d = {"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0}
                if iou_type == "bbox":
                    d["bbox"] = list(a["bbox"])
                else:
                    d["segmentation"] = gt.annToRLE(a)
                dets.append(d)
            with contextlib.redirect_stdout(io.StringIO()):
                dt = gt.loadRes(dets)
                ev = COCOeval(gt, dt, iou_type)
                ev.evaluate()
                ev.accumulate()
                ev.summarize()
            assert ev.stats[0] == pytest.approx(1.0), (s, iou_type, ev.stats[:3].tolist())
            assert ev.stats[1] == pytest.approx(1.0), (s, iou_type)  # AP50
            evaluated += 1
    assert evaluated >= 2


# ------------------------------------------------------------------ supervision
@pytest.mark.parametrize("rle", [False, True], ids=["polygons", "rle"])
@pytest.mark.parametrize("kind", KINDS)
def test_supervision_from_coco(exports, kind, rle):
    """Every image (backgrounds too), classes 0-based in project order, boxes; RLE masks exact.

    Polygons: supervision rounds the vertices and draws with ``cv2.fillPoly``, which also fills
    the outline's pixels, so a polygon on pixel edges reads as the mask (holes filled) grown by
    at most one pixel to the right and below: never less, never more."""
    ex = exports(kind, "coco", rle)
    counts, masks = {"backgrounds": 0}, 0
    for s in ex.splits:
        ds = sv.DetectionDataset.from_coco(
            images_directory_path=str(ex.root / "images" / s),
            annotations_path=str(ex.root / "annotations" / f"instances_{s}.json"),
            force_masks=True,
        )
        for exp, det in _read_by_supervision(ds, ex, s, counts):
            order = _match(exp, det.class_id, det.xyxy, tol=1e-3)
            assert det.mask is not None and det.mask.shape == (len(det), exp.height, exp.width)
            for k, i in enumerate(order):
                got = det.mask[k]
                if rle:
                    assert np.array_equal(got, exp.masks[i]), (exp.name, k, int((got != exp.masks[i]).sum()))
                else:
                    want = exp.filled[i]
                    grown = want.copy()
                    grown[:, 1:] |= want[:, :-1]
                    grown[1:, :] |= want[:-1, :]
                    grown[1:, 1:] |= want[:-1, :-1]
                    assert (got >= want).all() and (got <= grown).all(), (exp.name, k)
                masks += 1
    assert counts["backgrounds"] == sum(e.background for e in ex.images.values()) > 0
    assert masks


def _read_by_supervision(ds, ex, split: str, counts: dict):
    """(what the project exported, what supervision read) per image of ``split`` that has detections;
    images, classes and counts checked on the way, backgrounds counted in ``counts``."""
    expected = ex.split(split)
    assert ds.classes == ex.class_names
    assert len(ds) == len(expected)
    assert sorted(Path(p).name for p in ds.image_paths) == sorted(expected)
    for path in ds.image_paths:
        exp, det = expected[Path(path).name], ds.annotations[path]
        assert len(det) == len(exp.classes)
        if not len(det):
            counts["backgrounds"] += exp.background
            continue
        yield exp, det


@pytest.mark.parametrize("fmt", ["yolo-detect", "yolo-segment"], ids=["detect", "segment"])
@pytest.mark.parametrize("kind", KINDS)
def test_supervision_from_yolo(exports, kind, fmt):
    """Every image (empty label file: no detections), classes, boxes; segment: a one-part mask of
    50 px or more reads back at IoU >= 0.99 with the stored mask, holes filled.

    supervision rounds the vertices (``np.round``: halves to even) and draws with ``cv2.fillPoly``;
    Ultralytics truncates them. Vertices on boundary-pixel centres (``x + 0.5``) are exact for
    Ultralytics but land a pixel out for supervision wherever they round up; ``x + 0.25`` is exact
    for both."""
    ex = exports(kind, fmt)
    low, checked, counts = [], 0, {"backgrounds": 0}
    for s in ex.splits:
        ds = sv.DetectionDataset.from_yolo(
            images_directory_path=str(ex.root / "images" / s),
            annotations_directory_path=str(ex.root / "labels" / s),
            data_yaml_path=str(ex.root / "data.yaml"),
            force_masks=True,
        )
        for exp, det in _read_by_supervision(ds, ex, s, counts):
            # detect: 6 decimals of the image size; segment: the extremes of the outline, within the edge pixels
            order = _match(exp, det.class_id, det.xyxy, tol=0.01 if fmt == "yolo-detect" else 1.0)
            if fmt == "yolo-detect":
                continue
            for k, i in enumerate(order):
                want = exp.filled[i]
                if _parts(want) == 1 and want.sum() >= 50:
                    checked += 1
                    iou = _iou(det.mask[k], want)
                    if iou < 0.99:
                        low.append((exp.name, i, int(want.sum()), round(iou, 4)))
    assert counts["backgrounds"] == sum(e.background for e in ex.images.values()) > 0
    assert checked or fmt == "yolo-detect"
    assert not low, f"(image, instance, pixels, IoU) below 0.99: {low}"


# ------------------------------------------------------------------ Ultralytics
@pytest.fixture
def offline_ultralytics(monkeypatch):
    """Ultralytics' data utilities with the font download (the one network call of
    ``check_det_dataset`` on a local dataset) replaced by a no-op that is recorded."""
    import ultralytics.data.utils as ul_utils

    fonts: list[str] = []
    monkeypatch.setattr(ul_utils, "check_font", lambda font="Arial.ttf", *a, **k: fonts.append(font))
    monkeypatch.setattr(ul_utils, "is_online", lambda: False, raising=False)
    return ul_utils, fonts


def _yolo_datasets(ex: Export, ul_utils, task: str):
    """check_det_dataset on the export's data.yaml, then a YOLODataset per split folder."""
    from ultralytics.data import YOLODataset
    from ultralytics.utils import DEFAULT_CFG

    with contextlib.redirect_stdout(io.StringIO()):
        data = ul_utils.check_det_dataset(str(ex.root / "data.yaml"))
        out = {}
        for s in ex.splits:
            ds = YOLODataset(img_path=str(ex.root / "images" / s), data=data, task=task,
                             imgsz=64, augment=False, hyp=DEFAULT_CFG, prefix=f"{s}: ")
            out[s] = ds
    return data, out


@pytest.mark.parametrize("fmt", ["yolo-detect", "yolo-segment"], ids=["detect", "segment"])
@pytest.mark.parametrize("kind", KINDS)
def test_ultralytics_check_det_dataset(exports, offline_ultralytics, kind, fmt):
    ul_utils, fonts = offline_ultralytics
    ex = exports(kind, fmt)
    with contextlib.redirect_stdout(io.StringIO()):
        data = ul_utils.check_det_dataset(str(ex.root / "data.yaml"))
    assert data["nc"] == len(ex.class_names)
    assert data["names"] == dict(enumerate(ex.class_names))
    assert Path(data["path"]).resolve() == ex.root.resolve()  # no 'path' key: the yaml's folder
    assert Path(data["train"]) == (ex.root / "images" / "train").resolve()
    assert Path(data["val"]) == (ex.root / "images" / "val").resolve()
    assert fonts  # the download it would have made was stopped


@pytest.mark.parametrize("fmt", ["yolo-detect", "yolo-segment"], ids=["detect", "segment"])
@pytest.mark.parametrize("kind", KINDS)
def test_ultralytics_loader_reads_the_project_labels(exports, offline_ultralytics, kind, fmt, tmp_path):
    """Per image the instances (class, box) the project holds; good images are backgrounds
    (empty label files), none missing or corrupt."""
    ul_utils, _ = offline_ultralytics
    ex = exports(kind, fmt)
    task = "segment" if fmt == "yolo-segment" else "detect"
    _, datasets = _yolo_datasets(ex, ul_utils, task)
    backgrounds = 0
    for s, ds in datasets.items():
        expected = ex.split(s)
        labels = {Path(lb["im_file"]).name: lb for lb in ds.labels}
        assert sorted(labels) == sorted(expected)
        with contextlib.redirect_stdout(io.StringIO()):
            nf, nm, ne, nc, total = ds.cache_labels(tmp_path / f"{s}.cache")["results"]
        n_background = sum(1 for e in expected.values() if not len(e.classes))
        assert (nf, nm, ne, nc, total) == (len(expected), 0, n_background, 0, len(expected))
        backgrounds += ne
        for name, lb in labels.items():
            exp = expected[name]
            assert tuple(lb["shape"]) == (exp.height, exp.width)
            xc, yc, bw, bh = np.asarray(lb["bboxes"], dtype=np.float64).reshape(-1, 4).T * np.array(
                [[exp.width], [exp.height], [exp.width], [exp.height]])
            boxes = np.stack([xc - bw / 2, yc - bh / 2, xc + bw / 2, yc + bh / 2], 1)
            _match(exp, np.asarray(lb["cls"]).reshape(-1).astype(int), boxes,
                   tol=0.01 if task == "detect" else 1.0)
            if task == "segment":
                assert len(lb["segments"]) == len(exp.classes)
    assert backgrounds == sum(e.background for e in ex.images.values()) > 0


@pytest.mark.parametrize("kind", KINDS)
def test_ultralytics_polygon2mask_gives_back_one_part_masks(exports, offline_ultralytics, kind):
    """A one-part mask's segment, as Ultralytics reads it, drawn by ``polygon2mask`` at native size
    is the stored mask with holes filled, exactly."""
    ul_utils, _ = offline_ultralytics
    ex = exports(kind, "yolo-segment")
    _, datasets = _yolo_datasets(ex, ul_utils, "segment")
    bad, checked = [], 0
    for ds in datasets.values():
        for lb in ds.labels:
            exp = ex.images[Path(lb["im_file"]).name]
            h, w = exp.height, exp.width
            segs = lb["segments"]
            boxes = np.array([[p[:, 0].min() * w, p[:, 1].min() * h, p[:, 0].max() * w, p[:, 1].max() * h]
                              for p in segs]).reshape(-1, 4)
            order = _match(exp, np.asarray(lb["cls"]).reshape(-1).astype(int), boxes, tol=1.0)
            for seg, i in zip(segs, order, strict=True):
                want = exp.filled[i]
                if _parts(want) != 1:
                    continue
                got = ul_utils.polygon2mask((h, w), [seg * (w, h)]).astype(bool)
                checked += 1
                if not np.array_equal(got, want):
                    bad.append((exp.name, i, int(want.sum()), int((got != want).sum())))
    assert checked
    assert not bad, f"(image, instance, pixels, pixels that differ): {bad}"
