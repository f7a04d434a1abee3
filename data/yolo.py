"""YOLO detect and segment formats: per object (label line) -> per image (label file) -> per dataset.

Coordinates are normalised to 0..1 and written with ``PRECISION`` decimals everywhere.
A segment line holds one polygon per instance: a mask in several parts is joined by
``geometry.merge_polygons`` so Ultralytics reads it back as one instance. Reading a
detect line gives a box-only annotation (stored without a mask).

``data.yaml`` is written without a ``path`` key: Ultralytics (``check_det_dataset``)
then takes the yaml's own folder as the dataset root, so the export trains from any
working directory and after being moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from data.errors import InputError
from data.geometry import mask_to_box, merge_polygons, polygons_to_mask, rle_to_polygons

PRECISION = 6
YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")


def _fmt(values: np.ndarray) -> str:
    vals = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0).tolist()
    return " ".join([f"%.{PRECISION}f"] * len(vals)) % tuple(vals)


# ------------------------------------------------------------------ reading
@dataclass(frozen=True)
class YoloObject:
    """One label line: class index and a box (pixels); ``mask`` None for a detect line."""

    class_index: int
    xyxy: tuple[float, float, float, float]
    mask: np.ndarray | None


def parse_line(line: str, n_classes: int, height: int, width: int) -> YoloObject:
    """One YOLO label line -> YoloObject; raises InputError with the reason it cannot be used."""
    parts = line.split()
    try:
        cls = int(parts[0])
        values = np.array([float(v) for v in parts[1:]], dtype=np.float64)
    except (ValueError, IndexError) as err:
        raise InputError(f"malformed line '{line[:40]}' (expected 'class x y ...').") from err
    if not 0 <= cls < n_classes:
        raise InputError(f"class id {cls} out of range (data.yaml has {n_classes} names: 0..{n_classes - 1}).")
    if not np.all(np.isfinite(values)) or values.min(initial=0) < 0 or values.max(initial=0) > 1:
        raise InputError("coordinates out of range (normalised values must be within 0..1).")
    scale = np.array([width, height], dtype=np.float64)
    if len(values) == 4:
        cx, cy, w, h = values
        if w <= 0 or h <= 0:
            raise InputError("box with zero width or height.")
        x0, y0 = max(0.0, (cx - w / 2) * width), max(0.0, (cy - h / 2) * height)
        x1, y1 = min(float(width), (cx + w / 2) * width), min(float(height), (cy + h / 2) * height)
        return YoloObject(cls, (x0, y0, x1, y1), None)
    if len(values) < 6 or len(values) % 2:
        raise InputError(f"a line needs 4 box values or an even number (>= 6) of polygon values, got {len(values)}.")
    poly = (values.reshape(-1, 2) * scale).reshape(-1).tolist()
    mask = polygons_to_mask([poly], height, width)
    if not mask.any():
        raise InputError("empty mask (the polygon covers no pixel).")
    return YoloObject(cls, tuple(float(v) for v in mask_to_box(mask)), mask)


@dataclass(frozen=True)
class YoloDataset:
    root: Path
    yaml_path: Path
    names: list[str]


def read_data_yaml(path: Path) -> YoloDataset:
    """Read a data.yaml with ``names`` as a list or a ``{index: name}`` dict."""
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
        raise InputError(f"{path}: not a readable YAML file ({err}).") from err
    names = doc.get("names") if isinstance(doc, dict) else None
    if isinstance(names, dict):
        try:
            keys = sorted(int(k) for k in names)
        except (TypeError, ValueError) as err:
            raise InputError(f"{path}: 'names' keys must be class indices 0..K-1.") from err
        if keys != list(range(len(keys))):
            raise InputError(f"{path}: 'names' keys must be 0..{len(keys) - 1} without gaps, got {keys}.")
        names = [str(names[k] if k in names else names[str(k)]) for k in keys]
    if not isinstance(names, list) or not names:
        raise InputError(f"{path}: needs a 'names' list or dict of class names.")
    root = Path(path).parent.resolve()
    if isinstance(doc.get("path"), str) and (root / doc["path"]).is_dir():
        # A dataset root may sit below the yaml, never outside it: an uploaded yaml must not
        # make the server read images from anywhere on its disk.
        candidate = (root / doc["path"]).resolve()
        if candidate == root or root in candidate.parents:
            root = candidate
    return YoloDataset(root, Path(path), [str(n) for n in names])


def find_data_yaml(folder: Path) -> Path | None:
    return next((folder / n for n in YAML_NAMES if (folder / n).is_file()), None)


def label_path_for(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder in the path becomes ``labels``, extension ``.txt``."""
    parts = list(image.parts)
    idx = max((i for i, p in enumerate(parts[:-1]) if p == "images"), default=None)
    if idx is None:
        return image.with_suffix(".txt")
    parts[idx] = "labels"
    return Path(*parts).with_suffix(".txt")


# ------------------------------------------------------------------ writing
def segment_line(rle: dict, xyxy: tuple[float, ...], class_index: int) -> str | None:
    """One stored instance (RLE) as a segment line, several parts merged into one polygon; None if empty."""
    h, w = rle["size"]
    polys = rle_to_polygons(rle, xyxy)
    if not polys:
        return None
    poly = merge_polygons(polys) if len(polys) > 1 else polys[0]
    pts = np.asarray(poly, dtype=np.float64).reshape(-1, 2) / np.array([w, h], dtype=np.float64)
    return f"{class_index} {_fmt(pts.reshape(-1))}"


def box_segment_line(xyxy: np.ndarray, class_index: int, height: int, width: int) -> str:
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    pts = np.array([x0, y0, x1, y0, x1, y1, x0, y1], dtype=np.float64) / np.array([width, height] * 4)
    return f"{class_index} {_fmt(pts)}"


def detect_line(xyxy: np.ndarray, class_index: int, height: int, width: int) -> str:
    x0, y0, x1, y1 = (float(v) for v in xyxy)
    vals = np.array([(x0 + x1) / 2 / width, (y0 + y1) / 2 / height, (x1 - x0) / width, (y1 - y0) / height])
    return f"{class_index} {_fmt(vals)}"


def label_file(lines: list[str]) -> bytes:
    """A label file; an empty file marks a background image."""
    return "".join(f"{line}\n" for line in lines).encode("ascii")


def data_yaml(class_names: list[str], has_val: bool) -> bytes:
    """data.yaml without ``path`` (root = the yaml's folder); without a val split, val reuses train."""
    doc = {
        "train": "images/train",
        "val": "images/val" if has_val else "images/train",
        "nc": len(class_names),
        "names": {i: n for i, n in enumerate(class_names)},
    }
    header = "# Defect Studio export. Class indices follow the project's class order.\n"
    return (header + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)).encode("utf-8")
