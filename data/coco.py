"""COCO instances format: per object -> per image -> per dataset, on top of data.geometry.

Reading turns each COCO annotation into a mask (polygons, compressed or uncompressed
RLE) or a box-only annotation, or a reason why it was rejected. Writing produces
polygons by default (holes filled, one polygon per part) or compressed RLE, ``area``
from the mask, image and annotation ids from 1, and category ids ``1..K`` in project
class order (stated in the file's ``info``).

Every COCO file the project writes is made here: exports (:func:`dataset_to_coco`), the
sample's ground truth (:func:`ground_truth_annotation`, :func:`write_ground_truth`) and
detection results (:func:`result_to_coco`, :func:`write_results`); every RLE goes through
``data.geometry.encode_rle``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from data.errors import InputError
from data.geometry import (
    box_to_mask,
    decode_rle,
    encode_rle,
    mask_to_box,
    masks_to_boxes,
    polygons_to_mask,
    rle_area,
    rle_to_polygons,
)

CATEGORY_ID_NOTE = "category ids are 1..K in the project's class order"


# ------------------------------------------------------------------ reading
@dataclass(frozen=True)
class CocoObject:
    """One readable COCO annotation: a mask, or ``mask=None`` for a box-only one."""

    category_id: int
    xyxy: tuple[float, float, float, float]
    mask: np.ndarray | None


@dataclass(frozen=True)
class CocoFile:
    path: Path
    categories: dict[int, str]  # COCO category id -> name, in id order
    images: list[dict]
    annotations_by_image: dict[int, list[dict]]


def read_coco(path: Path) -> CocoFile:
    """Parse a COCO instances JSON; raises InputError when it is not one."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise InputError(f"{path}: not a readable COCO JSON file ({err}).") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise InputError(f"{path}: not a COCO instances file (no 'images' list).")
    categories: dict[int, str] = {}
    for cat in sorted(doc.get("categories") or [], key=lambda c: c.get("id", 0)):
        if not isinstance(cat, dict) or "id" not in cat or not str(cat.get("name", "")).strip():
            raise InputError(f"{path}: category {cat!r} needs an 'id' and a 'name'.")
        categories[int(cat["id"])] = str(cat["name"])
    by_image: dict[int, list[dict]] = {}
    for ann in doc.get("annotations") or []:
        if isinstance(ann, dict) and "image_id" in ann:
            by_image.setdefault(ann["image_id"], []).append(ann)
    images = [im for im in doc["images"] if isinstance(im, dict) and "file_name" in im and "id" in im]
    return CocoFile(Path(path), categories, images, by_image)


def parse_object(ann: dict, categories: dict[int, str], height: int, width: int) -> CocoObject:
    """One COCO annotation -> CocoObject; raises InputError with the reason it cannot be used."""
    if ann.get("iscrowd"):
        raise InputError("iscrowd (crowd region) annotations are not imported: they mark many objects as one.")
    cat = ann.get("category_id")
    if cat not in categories:
        raise InputError(f"unknown category id {cat!r} (not in 'categories').")
    seg = ann.get("segmentation")
    if seg:
        mask = _segmentation_to_mask(seg, height, width)
        if not mask.any():
            raise InputError("empty mask (the segmentation covers no pixel).")
        return CocoObject(int(cat), tuple(float(v) for v in mask_to_box(mask)), mask)
    bbox = ann.get("bbox")
    if isinstance(bbox, list) and len(bbox) == 4 and bbox[2] > 0 and bbox[3] > 0:
        x, y, w, h = (float(v) for v in bbox)
        x0, y0, x1, y1 = max(0.0, x), max(0.0, y), min(float(width), x + w), min(float(height), y + h)
        if x1 <= x0 or y1 <= y0:
            raise InputError(f"bbox {bbox} lies outside the {width}x{height} image.")
        return CocoObject(int(cat), (x0, y0, x1, y1), None)
    raise InputError("no segmentation and no usable bbox.")


def _segmentation_to_mask(seg: Any, height: int, width: int) -> np.ndarray:
    if isinstance(seg, dict):
        size = seg.get("size")
        if not size or [int(size[0]), int(size[1])] != [height, width]:
            raise InputError(f"RLE size {size} does not match the {width}x{height} image.")
        try:
            return decode_rle(seg)
        except (ValueError, TypeError, KeyError, UnicodeError) as err:
            raise InputError(f"unreadable RLE ({err}).") from err
    if isinstance(seg, list):
        polys = [p for p in seg if isinstance(p, list)]
        valid = [p for p in polys if len(p) >= 6 and len(p) % 2 == 0]
        if not valid:
            raise InputError("polygon with fewer than 3 points.")
        return polygons_to_mask(valid, height, width)
    raise InputError(f"segmentation of type {type(seg).__name__} is neither polygons nor RLE.")


# ------------------------------------------------------------------ writing
def object_to_coco(
    rle: dict | None, xyxy: tuple[float, ...], category_id: int, ann_id: int, image_id: int, as_rle: bool
) -> dict:
    """One stored annotation as COCO: polygons (default, holes filled) or its compressed RLE.

    ``area`` and ``bbox`` come from the mask. A box-only annotation (``rle`` None) is written
    as its bbox plus the box polygon, in both modes.
    """
    if rle is not None:
        segmentation: Any = dict(rle) if as_rle else rle_to_polygons(rle, xyxy)
        area = float(rle_area(rle))
        bbox = [round(float(v), 2) for v in mask_utils.toBbox(_rle_bytes(rle))]
    else:
        x0, y0, x1, y1 = (round(float(v), 2) for v in xyxy)
        segmentation = [[x0, y0, x1, y0, x1, y1, x0, y1]]
        area = round((x1 - x0) * (y1 - y0), 2)
        bbox = [x0, y0, round(x1 - x0, 2), round(y1 - y0, 2)]
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": segmentation,
        "area": area,
        "bbox": bbox,
        "iscrowd": 0,
    }


def _rle_bytes(rle: dict) -> dict:
    counts = rle["counts"]
    return {"size": list(rle["size"]), "counts": counts.encode("ascii") if isinstance(counts, str) else counts}


def image_to_coco(image_id: int, file_name: str, width: int, height: int) -> dict:
    return {"id": image_id, "file_name": file_name, "width": width, "height": height}


def categories_to_coco(class_names: list[str] | tuple[str, ...], supercategory: str | None = "defect") -> list[dict]:
    """Category ids ``1..K`` in ``class_names`` order (``supercategory`` None: id and name only)."""
    if supercategory is None:
        return [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]
    return [{"id": i + 1, "name": name, "supercategory": supercategory} for i, name in enumerate(class_names)]


def dataset_to_coco(images: list[dict], annotations: list[dict], class_names: list[str]) -> dict:
    return {
        "info": {
            "description": f"Exported by Defect Studio; {CATEGORY_ID_NOTE}.",
            "version": "1",
        },
        "licenses": [],
        "categories": categories_to_coco(class_names),
        "images": images,
        "annotations": annotations,
    }


def dumps(doc: dict) -> bytes:
    """Deterministic JSON: sorted keys, no whitespace variance."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------- ground truth files
def ground_truth_annotation(ann_id: int, image_id: int, category_id: int, mask: np.ndarray) -> dict:
    """One ground-truth instance: compressed RLE, and integer ``area`` and ``bbox`` from the mask."""
    x0, y0, x1, y1 = (int(v) for v in mask_to_box(mask))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": encode_rle(mask),
        "area": int(mask.sum()),
        "bbox": [x0, y0, x1 - x0, y1 - y0],
        "iscrowd": 0,
    }


def ground_truth_to_coco(info: dict, images: list[dict], annotations: list[dict],
                         class_names: list[str] | tuple[str, ...]) -> dict:
    """A ground-truth instances file (the sample's): ``info`` as given, categories ``1..K``."""
    return {"info": info, "images": images, "annotations": annotations, "categories": categories_to_coco(class_names)}


def write_ground_truth(path: str | Path, doc: dict) -> None:
    """Write a ground-truth document as the sample has always written it (indent 1, sorted keys)."""
    Path(path).write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")


# ---------------------------------------------------------------- detection results
def result_to_coco(image_id: int, category_id: int, xyxy: Any, score: float, mask: np.ndarray | None = None,
                   rounded: bool = False) -> dict:
    """One detection in COCO results form (``loadRes``): XYWH ``bbox``, ``score``, RLE ``segmentation``
    when there is a mask. ``rounded``: bbox to 0.01 px and score to 5 decimals (files users read)."""
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    bbox = [x0, y0, x1 - x0, y1 - y0]
    score = float(score)
    if rounded:
        bbox = [round(v, 2) for v in bbox]
        score = round(score, 5)
    item: dict[str, Any] = {"image_id": image_id, "category_id": category_id, "bbox": bbox, "score": score}
    if mask is not None:
        item["segmentation"] = encode_rle(mask)
    return item


def write_results(out_dir: str | Path, images: list[dict], results: list[dict],
                  class_names: list[str] | tuple[str, ...]) -> None:
    """``results.json`` (the detections) and ``images.json`` (images and categories ``1..K``) in ``out_dir``."""
    out_dir = Path(out_dir)
    (out_dir / "results.json").write_text(json.dumps(results), encoding="utf-8")
    index = {"images": images, "categories": categories_to_coco(class_names, supercategory=None)}
    (out_dir / "images.json").write_text(json.dumps(index, indent=1), encoding="utf-8")


# ---------------------------------------------------------------- ground truth for benchmarks
@dataclass(frozen=True)
class GroundTruthImage:
    """One image of a COCO ground-truth file, masks decoded.

    ``masks`` is ``(N, H, W)`` bool (a box-only instance becomes its filled box), ``boxes``
    ``(N, 4)`` XYXY from the masks, ``classes`` the category names, ``ann_ids`` the COCO ids.
    """

    id: int
    file_name: str
    path: Path
    masks: np.ndarray
    boxes: np.ndarray
    classes: tuple[str, ...]
    ann_ids: tuple[int, ...]


def read_ground_truth(images_dir: str | Path, gt_path: str | Path) -> list[GroundTruthImage]:
    """Every image of a COCO instances file (``--images DIR --gt FILE``), sorted by id."""
    images_dir, gt_path = Path(images_dir), Path(gt_path)
    if not gt_path.is_file():
        raise InputError(f"ground truth {gt_path} not found; pass a COCO instances JSON with --gt.")
    if not images_dir.is_dir():
        raise InputError(f"image folder {images_dir} not found; pass the folder of the GT images with --images.")
    try:
        coco = json.loads(gt_path.read_text(encoding="utf-8"))
        cats = {c["id"]: c["name"] for c in coco["categories"]}
        images = sorted(coco["images"], key=lambda im: im["id"])
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(f"{gt_path} is not a COCO instances file ({err}).") from err
    by_image: dict[int, list[dict]] = {}
    for a in coco.get("annotations", []):
        by_image.setdefault(a["image_id"], []).append(a)
    out = []
    for im in images:
        h, w = int(im["height"]), int(im["width"])
        masks, classes, ids = [], [], []
        for a in by_image.get(im["id"], []):
            seg = a.get("segmentation")
            if isinstance(seg, dict):
                m = decode_rle(seg)
            elif isinstance(seg, list) and seg:
                m = polygons_to_mask(seg, h, w)
            else:
                x, y, bw, bh = a["bbox"]
                m = box_to_mask((x, y, x + bw, y + bh), h, w)
            masks.append(m)
            classes.append(cats[a["category_id"]])
            ids.append(int(a["id"]))
        path = images_dir / im["file_name"]
        if not path.is_file():
            raise InputError(f"image {path} listed in {gt_path.name} is missing from {images_dir}.")
        stack = np.stack(masks) if masks else np.zeros((0, h, w), dtype=bool)
        out.append(GroundTruthImage(int(im["id"]), im["file_name"], path, stack, masks_to_boxes(stack),
                                    tuple(classes), tuple(ids)))
    return out


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (for benchmarks reading ground-truth folders)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read image {path}.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
