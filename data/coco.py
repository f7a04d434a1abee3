"""COCO instances files: per dataset and per file, on top of :class:`data.annotations.Annotations`.

Per object, reading and writing are the container's adapters (``Annotations.from_coco``,
``to_coco``, ``to_coco_results``): each COCO annotation becomes a mask (polygons, compressed or
uncompressed RLE) or a box-only row, or a reason why it was rejected; writing produces polygons
by default (holes filled, one polygon per part) or compressed RLE, ``area`` from the mask.
Here: reading a file (:func:`read_coco`, :func:`read_ground_truth`), image and annotation ids
from 1, and category ids ``1..K`` in project class order (stated in the file's ``info``).

Every COCO file the project writes is made here: exports (:func:`dataset_to_coco`), the
sample's ground truth (:func:`ground_truth_annotation`, :func:`write_ground_truth`) and
detection results (:func:`write_results`); every RLE goes through ``data.geometry``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from data.annotations import Annotations
from data.errors import InputError
from data.geometry import encode_rle, mask_to_box

CATEGORY_ID_NOTE = "category ids are 1..K in the project's class order"
EXPORT_DESCRIPTION = "Exported by Defect Studio"  # its images are done or good: one without annotations is good


# ------------------------------------------------------------------ reading
@dataclass(frozen=True)
class CocoFile:
    path: Path
    categories: dict[int, str]  # COCO category id -> name, in id order
    images: list[dict]
    annotations_by_image: dict[int, list[dict]]
    rejected: tuple[tuple[str, str], ...] = ()  # (where, why) of what the file holds but cannot be used
    exported_here: bool = False  # written by this app's export (its images without annotations are good ones)
    notes: tuple[tuple[str, str], ...] = ()  # (where, what) of what is read otherwise than written


def read_coco(path: Path) -> CocoFile:
    """Parse a COCO instances JSON; raises InputError when it is not one."""
    name = Path(path).name
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError, RecursionError) as err:  # ValueError: a 5,000-digit number too
        why = "nested too deeply" if isinstance(err, RecursionError) else str(err)[:200]
        raise InputError(f"{path}: not a readable COCO JSON file ({why}).") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("images"), list):
        raise InputError(f"{path}: not a COCO instances file (no 'images' list).")
    cats = doc.get("categories") or []
    if not isinstance(cats, list):
        raise InputError(f"{path}: 'categories' must be a list of {{'id', 'name'}} objects.")
    categories: dict[int, str] = {}
    for cat in cats:
        if not isinstance(cat, dict) or not _is_id(cat.get("id")) or not str(cat.get("name", "")).strip():
            raise InputError(f"{path}: category {str(cat)[:80]} needs an integer 'id' and a 'name'.")
        categories[cat["id"]] = str(cat["name"])
    categories = dict(sorted(categories.items()))
    rejected: list[tuple[str, str]] = []
    notes: list[tuple[str, str]] = []
    by_image: dict[int, list[dict]] = {}
    anns = doc.get("annotations") or []
    if not isinstance(anns, list):
        rejected.append((f"{name} annotations", f"'annotations' must be a list, got {type(anns).__name__}; "
                                                "no annotation of this file imported."))
        anns = []
    used = ({a.get("category_id") for a in anns if isinstance(a, dict) and _is_id(a.get("category_id"))}
            if isinstance(anns, list) else set())
    parents = {str(c.get("supercategory")) for c in cats if isinstance(c, dict)}
    for cid, cname in list(categories.items()):
        if cid not in used and cname in parents and len(categories) > 1:
            del categories[cid]  # Roboflow's category 0: the workspace, the supercategory of the others
            notes.append((f"{name} category {cid}", f"'{cname}' is the supercategory of the others and labels "
                                                    f"nothing: not made a class."))
    for k, ann in enumerate(anns if isinstance(anns, list) else []):
        if isinstance(ann, dict) and _is_id(ann.get("image_id")) and _is_id(ann.get("id", 0)):
            by_image.setdefault(ann["image_id"], []).append(ann)
        else:
            what = "an integer 'image_id' and 'id'" if isinstance(ann, dict) else "to be a JSON object"
            rejected.append((f"{name} annotation #{k + 1}", f"needs {what}; left out."))
    images = []
    for k, im in enumerate(doc["images"]):
        if isinstance(im, dict) and _is_id(im.get("id")) and isinstance(im.get("file_name"), str):
            images.append(im)
        else:
            rejected.append((f"{name} image #{k + 1}", "needs an integer 'id' and a 'file_name'; left out."))
    info = doc.get("info")
    ours = isinstance(info, dict) and str(info.get("description", "")).startswith(EXPORT_DESCRIPTION)
    return CocoFile(Path(path), categories, images, by_image, tuple(rejected), ours, tuple(notes))


def _is_id(v: Any) -> bool:
    """A COCO id: an integer (JSON has no other kind of key that pycocotools accepts)."""
    return isinstance(v, int) and not isinstance(v, bool)


# ------------------------------------------------------------------ writing
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
            "description": f"{EXPORT_DESCRIPTION}; {CATEGORY_ID_NOTE}.",
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
    """One image of a COCO ground-truth file: a thin view of its :class:`Annotations`.

    ``labels`` holds the instances (class names in ``data["name"]``, COCO ids in ``data["id"]``);
    ``masks`` is their full-size ``(N, H, W)`` stack (a box-only instance reads as its filled box),
    ``boxes`` their ``(N, 4)`` XYXY boxes, ``classes`` the names, ``ann_ids`` the COCO ids.
    """

    id: int
    file_name: str
    path: Path
    labels: Annotations

    @property
    def masks(self) -> np.ndarray:
        return self.labels.full_masks()

    @property
    def boxes(self) -> np.ndarray:
        return self.labels.xyxy

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(str(n) for n in self.labels.data["name"])

    @property
    def ann_ids(self) -> tuple[int, ...]:
        return tuple(int(i) for i in self.labels.ids)


def read_ground_truth(images_dir: str | Path, gt_path: str | Path) -> list[GroundTruthImage]:
    """Every image of a COCO instances file (``--images DIR --gt FILE``), sorted by id."""
    images_dir, gt_path = Path(images_dir), Path(gt_path)
    if not gt_path.is_file():
        raise InputError(f"ground truth {gt_path} not found; pass a COCO instances JSON with --gt.")
    if not images_dir.is_dir():
        raise InputError(f"image folder {images_dir} not found; pass the folder of the GT images with --images.")
    try:
        doc = json.loads(gt_path.read_text(encoding="utf-8"))
        cats = {int(c["id"]): str(c["name"]) for c in doc["categories"]}
        images = sorted(doc["images"], key=lambda im: im["id"])
        by_image: dict[int, list[dict]] = {}
        for a in doc.get("annotations", []):
            by_image.setdefault(a["image_id"], []).append(a)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise InputError(f"{gt_path} is not a COCO instances file ({err}).") from err
    out = []
    for im in images:
        try:
            h, w = int(im["height"]), int(im["width"])
            anns = by_image.get(im["id"], [])
            labels = Annotations.from_coco(anns, cats, h, w, source="ground_truth")
        except (ValueError, KeyError, TypeError) as err:
            raise InputError(f"{gt_path}: image {im.get('id')!r} cannot be read ({err}).") from err
        except InputError as err:
            raise InputError(f"{gt_path}: an annotation of image {im.get('id')!r}: {err}") from err
        labels = labels.with_data({"id": np.array([int(a["id"]) for a in anns], dtype=np.int64)})
        path = images_dir / im["file_name"]
        if not path.is_file():
            raise InputError(f"image {path} listed in {gt_path.name} is missing from {images_dir}.")
        out.append(GroundTruthImage(int(im["id"]), im["file_name"], path, labels))
    return out


def read_rgb(path: str | Path) -> np.ndarray:
    """An image file as RGB uint8 (for benchmarks reading ground-truth folders)."""
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read image {path}.")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
