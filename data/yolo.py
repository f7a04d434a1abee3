"""YOLO detect and segment formats: per image (label file) and per dataset (``data.yaml``).

Per object (label line), reading and writing are the container's adapters
(``Annotations.from_yolo``, ``Annotations.to_yolo``): coordinates are normalised to 0..1 and
written with ``data.annotations.YOLO_PRECISION`` decimals everywhere; a segment line holds one
polygon per instance (a mask in several parts is joined by ``geometry.merge_polygons`` so
Ultralytics reads it back as one instance); a detect line reads as a box-only row.

``data.yaml`` is written without a ``path`` key: Ultralytics (``check_det_dataset``)
then takes the yaml's own folder as the dataset root, so the export trains from any
working directory and after being moved.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from data.annotations import YOLO_PRECISION as PRECISION  # noqa: F401  (the decimals of every label line)
from data.errors import InputError

YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")
CLASSES_TXT = "classes.txt"  # labelImg and Label Studio's YOLO export: one name a line, no data.yaml


# ------------------------------------------------------------------ reading
@dataclass(frozen=True)
class YoloDataset:
    root: Path  # where images/ and labels/ (or the images with their label files beside them) are
    yaml_path: Path  # the data.yaml or classes.txt the names come from
    names: list[str]
    note: str | None = None  # what the reader chose that the user should know (a path it would not follow)


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
    note = None
    given = doc.get("path")
    if isinstance(given, str) and given.strip():
        # A dataset root may sit below the yaml, never outside it: an uploaded yaml must not
        # make the server read images from anywhere on its disk.
        candidate = (root / given).resolve()
        if (candidate == root or root in candidate.parents) and candidate.is_dir():
            root = candidate
        else:
            where = "points outside its folder" if candidate != root and root not in candidate.parents \
                else "names no folder"
            note = (f"its 'path: {given}' {where}, so the images were read from the yaml's own folder "
                    f"{root.name}/. To read them from elsewhere, move the yaml into the dataset folder "
                    f"or set 'path: .' (or a folder inside it).")
    return YoloDataset(root, Path(path), [str(n) for n in names], note)


def read_classes_txt(path: Path) -> YoloDataset:
    """A ``classes.txt`` (one class name a line, index = line number) and the folder it is in."""
    try:
        lines = Path(path).read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: not a readable classes.txt ({err}).") from err
    names = [line.strip() for line in lines]
    while names and not names[-1]:
        names.pop()
    if not names or not all(names):
        raise InputError(f"{path}: needs one class name on each line (no blank lines between names).")
    return YoloDataset(Path(path).parent.resolve(), Path(path), names)


def find_data_yaml(folder: Path) -> Path | None:
    """``data.yaml`` (or ``data.yml``, ``dataset.yaml``); else the folder's one other YAML file that has
    ``names`` (Ultralytics' datasets ship as ``coco8-seg.yaml`` and the like)."""
    named = next((folder / n for n in YAML_NAMES if (folder / n).is_file()), None)
    if named is not None:
        return named
    others = [p for p in sorted(folder.glob("*.y*ml")) if p.suffix in (".yaml", ".yml") and p.is_file()
              and not p.is_symlink() and p.stat().st_size < 1 << 20 and _has_names(p)]
    return others[0] if len(others) == 1 else None


def _has_names(path: Path) -> bool:
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(doc, dict) and "names" in doc


def find_classes_txt(folder: Path) -> Path | None:
    """``classes.txt`` in the folder or in its ``labels/`` (where labelImg saves it), beside YOLO label files."""
    for path in (folder / CLASSES_TXT, folder / "labels" / CLASSES_TXT):
        if path.is_file() and any(p.suffix == ".txt" and p.name != CLASSES_TXT for p in folder.rglob("*.txt")):
            return path
    return None


def label_path_for(image: Path) -> Path:
    """Ultralytics' rule: the last ``images`` folder in the path becomes ``labels``, extension ``.txt``
    (an image outside any ``images`` folder has its label file beside it, as labelImg writes it)."""
    parts = list(image.parts)
    idx = max((i for i, p in enumerate(parts[:-1]) if p == "images"), default=None)
    if idx is None:
        return image.with_suffix(".txt")
    parts[idx] = "labels"
    return Path(*parts).with_suffix(".txt")


# ------------------------------------------------------------------ writing
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
