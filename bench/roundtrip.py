"""``bench roundtrip``: what each export format keeps of the stored masks, read back by that
format's own reader (not by this project's importer).

- COCO polygons and COCO RLE: ``pycocotools`` (``COCO.annToMask``), as COCO evaluation reads them.
- YOLO segment: Ultralytics' ``polygon2mask`` (vertices truncated to integers, ``cv2.fillPoly``)
  at the image's own size, as its segmentation trainer draws a label.

For every stored mask: the IoU between it and what the reader draws from the exported file,
split into single-part instances of at least ``MIN_PIXELS`` pixels (the target: mean >= 0.99,
min >= 0.95) and masks in several parts (reported apart: YOLO holds one polygon an instance);
how many masks had holes (polygons fill them); whether ``area`` is the pixel count the file's
own segmentation draws; and whether a second cycle (import the export into a new project,
export again) writes the same labels as the first.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools.coco import COCO

from data.annotations import Annotations
from data.errors import InputError
from data.export import export_project
from data.geometry import crop_topology
from data.importers import import_sources
from data.store import Project

MIN_PIXELS = 50
READERS = {"coco": "pycocotools annToMask", "coco-rle": "pycocotools annToMask",
           "yolo-segment": "ultralytics polygon2mask"}
Say = Callable[[str], None]


def run_roundtrip(images: Path, gt: Path, say: Say = print) -> dict[str, Any]:
    """Import ``images`` with the COCO ground truth ``gt`` (images without annotations as good)
    into a new project, then measure every polygon format on it."""
    if not Path(gt).is_file():
        raise InputError(f"ground truth {gt} not found; pass a COCO instances JSON with --gt.")
    if not Path(images).is_dir():
        raise InputError(f"image folder {images} not found; pass the folder of the GT images with --images.")
    tmp = Path(tempfile.mkdtemp(prefix="bench-roundtrip-"))
    try:
        project = Project.create(tmp / "project")
        rep = import_sources(project, [Path(images), Path(gt)], empty_as="good")
        if rep.rejected:
            say(f"{len(rep.rejected)} labels or files could not be imported; the first: {rep.rejected[0]}")
        say(f"imported {len(project.images())} images with {rep.annotations_added} labels from {gt}")
        return measure_project(project, tmp, say)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure_project(project: Project, tmp: Path, say: Say = print) -> dict[str, Any]:
    """Export ``project`` as COCO polygons, COCO RLE and YOLO segment under ``tmp`` and measure each."""
    stored = _stored(project)
    out: dict[str, Any] = {}
    for name, fmt, rle in (("coco", "coco", False), ("coco-rle", "coco", True), ("yolo-segment", "yolo-segment", False)):
        first = tmp / f"rt-{name}-1"
        export_project(project, fmt, first, val_fraction=0.2, seed=0, rle=rle)
        drawn = _read_coco(first) if fmt == "coco" else _read_yolo(first)
        row = _score(stored, drawn)
        again = Project.create(tmp / f"rt-{name}-project")
        import_sources(again, [first])
        second = tmp / f"rt-{name}-2"
        export_project(again, fmt, second, val_fraction=0.2, seed=0, rle=rle)
        changed = diff_cycles(first, second, fmt)
        row["second_cycle_same"] = not changed
        row["second_cycle_changed_images"] = changed
        row["reader"] = READERS[name]
        out[name] = row
        say(_line(name, row))
    return out


def _line(name: str, r: dict[str, Any]) -> str:
    single = (f"single-part >= {MIN_PIXELS} px: {r['single_n']} masks, IoU mean {r['single_mean']:.4f} "
              f"min {r['single_min']:.4f}" if r["single_n"] else "no single-part masks")
    multi = (f"; {r['multi_n']} multi-part: mean {r['multi_mean']:.4f} min {r['multi_min']:.4f}"
             if r["multi_n"] else "")
    return (f"{name:<13} ({r['reader']}) {r['n']} masks; {single}{multi}; {r['with_holes']} with holes; "
            f"area = drawn pixels: {r['area_ok']}/{r['n']}; second cycle same: {r['second_cycle_same']}")


def _stored(project: Project) -> dict[str, Annotations]:
    """sha256 -> the accepted annotations of each done image (the export's order)."""
    return {rec.sha256: project.annotations(rec, ("accepted",))
            for rec in project.images() if rec.status == "done"}


def _export_images(root: Path) -> dict[str, str]:
    """Exported image file name -> sha256 (the name ends with the hash's first 10 hex)."""
    return {p.name: p.stem.rsplit("_", 1)[-1] for p in (root / "images").rglob("*") if p.is_file()}


def _read_coco(root: Path) -> dict[str, list[tuple[np.ndarray, float]]]:
    """sha prefix -> [(mask pycocotools draws, the file's area)] in file order."""
    out: dict[str, list[tuple[np.ndarray, float]]] = {}
    for path in sorted((root / "annotations").glob("instances_*.json")):
        with contextlib.redirect_stdout(io.StringIO()):
            gt = COCO(str(path))
        for im in gt.dataset["images"]:
            key = Path(im["file_name"]).stem.rsplit("_", 1)[-1]
            anns = sorted(gt.imgToAnns[im["id"]], key=lambda a: a["id"])
            out[key] = [(gt.annToMask(a).astype(bool), float(a["area"])) for a in anns]
    return out


def _read_yolo(root: Path) -> dict[str, list[tuple[np.ndarray, float]]]:
    """sha prefix -> [(mask Ultralytics' polygon2mask draws, its pixel count)] in line order."""
    from ultralytics.data.utils import polygon2mask

    out: dict[str, list[tuple[np.ndarray, float]]] = {}
    for image in sorted(p for p in (root / "images").rglob("*") if p.is_file()):
        h, w = cv2.imread(str(image), cv2.IMREAD_UNCHANGED).shape[:2]
        label = root / "labels" / image.parent.name / f"{image.stem}.txt"
        masks = []
        for line in label.read_text().splitlines():
            pts = np.array(line.split()[1:], dtype=np.float64).reshape(-1, 2) * (w, h)
            m = polygon2mask((h, w), [pts.reshape(-1)]).astype(bool)
            masks.append((m, float(m.sum())))
        out[image.stem.rsplit("_", 1)[-1]] = masks
    return out


def _score(stored: dict[str, Annotations], drawn: dict[str, list[tuple[np.ndarray, float]]]) -> dict[str, Any]:
    single, multi = [], []
    holes = area_ok = n = 0
    for sha, ann in stored.items():
        got = drawn.get(sha[:10], [])
        if len(got) != len(ann):
            raise RuntimeError(f"image {sha[:10]}: {len(ann)} masks stored, {len(got)} read back")
        for i, (mask, area) in enumerate(got):
            if not ann.has_mask[i]:
                continue
            n += 1
            ref = ann.full_mask(i)
            parts, n_holes = crop_topology(ann.crop(i)[0])
            holes += n_holes > 0
            area_ok += abs(area - float(mask.sum())) < 0.5
            union = np.logical_or(ref, mask).sum()
            iou = float(np.logical_and(ref, mask).sum() / union) if union else 1.0
            if parts > 1:
                multi.append(iou)
            elif ref.sum() >= MIN_PIXELS:
                single.append(iou)
    return {"n": n, "single_n": len(single), "single_mean": _mean(single), "single_min": _min(single),
            "multi_n": len(multi), "multi_mean": _mean(multi), "multi_min": _min(multi),
            "with_holes": holes, "area_ok": area_ok}


def _mean(v: list[float]) -> float:
    return round(float(np.mean(v)), 4) if v else float("nan")


def _min(v: list[float]) -> float:
    return round(float(np.min(v)), 4) if v else float("nan")


def _labels_by_image(root: Path, fmt: str) -> dict[str, Any]:
    """sha prefix -> the image's labels as the file holds them (class and geometry), to compare cycles."""
    out: dict[str, Any] = {}
    if fmt == "coco":
        for path in sorted((root / "annotations").glob("instances_*.json")):
            doc = json.loads(path.read_text())
            names = {c["id"]: c["name"] for c in doc["categories"]}
            by_image: dict[int, list] = {}
            for a in doc["annotations"]:
                by_image.setdefault(a["image_id"], []).append(
                    (names[a["category_id"]], json.dumps(a["segmentation"], sort_keys=True), a["area"], a["bbox"]))
            for im in doc["images"]:
                out[Path(im["file_name"]).stem.rsplit("_", 1)[-1]] = sorted(by_image.get(im["id"], []))
        return out
    for label in sorted((root / "labels").rglob("*.txt")):
        out[label.stem.rsplit("_", 1)[-1]] = sorted(label.read_text().splitlines())
    return out


def diff_cycles(first: Path, second: Path, fmt: str) -> list[str]:
    """The images whose labels differ between two exports (for a report when a cycle is not the identity)."""
    a, b = _labels_by_image(first, fmt), _labels_by_image(second, fmt)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
