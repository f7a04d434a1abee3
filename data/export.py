"""Export a project as a COCO or YOLO (detect / segment) dataset.

- Only ``done`` and ``good`` images; ``good`` ones are background images (empty YOLO
  label file, no COCO annotations). An ``unlabeled`` image is never exported.
- Only accepted annotations unless ``include_proposed``.
- Seeded train/val split, stratified by class (every class on 2 or more images lands in
  both splits); background images are split by the same fraction.
- Deterministic (same project -> same bytes) and atomic: everything is written into a
  temporary folder beside ``out`` and renamed at the end.
- Images are hard-linked or copied, never re-encoded.

Layout::

    out/images/{train,val}/NAME          all formats
    out/labels/{train,val}/NAME.txt      YOLO
    out/data.yaml                        YOLO
    out/annotations/instances_{train,val}.json   COCO
    out/.defect_studio_export            marks the folder as ours (safe to replace)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import uuid
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from data import coco, scratch, yolo
from data.annotations import Annotations
from data.errors import InputError, ProjectError
from data.store import ImageRecord, Project

Format = Literal["coco", "yolo-detect", "yolo-segment"]
FORMATS: tuple[str, ...] = ("coco", "yolo-detect", "yolo-segment")
MARKER = ".defect_studio_export"
ZIP_DATE = (1980, 1, 1, 0, 0, 0)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class ExportResult:
    out_path: Path
    n_images: dict[str, int]  # split -> number of images
    n_annotations: int
    class_names: tuple[str, ...]
    content_hash: str  # sha256 over label files and image hashes: identifies the dataset snapshot
    holes_filled: int = 0  # polygon formats: masks whose holes the polygons fill (--rle keeps them)
    multi_part: int = 0  # polygon formats: masks in several parts (COCO: one polygon each; YOLO: joined)
    not_done: tuple[int, int] = (0, 0)  # (images, accepted annotations) left out: on images not marked done


@dataclass(frozen=True)
class _Item:
    record: ImageRecord
    file_name: str  # name inside the export
    class_ids: frozenset[int]


# -------------------------------------------------------------------- split
def stratified_split(
    labels: dict[int, frozenset[int]], val_fraction: float, seed: int
) -> dict[int, str]:
    """image id -> 'train' | 'val'. Greedy by rarest class first, then a repair pass.

    Every class present on two or more images ends in both splits (when val_fraction > 0);
    images without classes (background) are split by the fraction alone.
    """
    rng = np.random.default_rng(seed)
    ids = sorted(labels)
    split = {i: "train" for i in ids}
    if val_fraction <= 0 or not ids:
        return split
    order = [ids[k] for k in rng.permutation(len(ids))]
    background = [i for i in order if not labels[i]]
    for i in background[: int(round(val_fraction * len(background)))]:
        split[i] = "val"
    labeled = [i for i in order if labels[i]]
    per_class: dict[int, list[int]] = {}
    for i in labeled:
        for c in sorted(labels[i]):
            per_class.setdefault(c, []).append(i)
    assigned: set[int] = set()
    for c in sorted(per_class, key=lambda c: (len(per_class[c]), c)):
        members = per_class[c]
        n_val_goal = 0 if len(members) < 2 else min(len(members) - 1, max(1, int(round(val_fraction * len(members)))))
        have_val = sum(1 for i in members if i in assigned and split[i] == "val")
        for i in members:
            if i in assigned:
                continue
            assigned.add(i)
            if have_val < n_val_goal:
                split[i] = "val"
                have_val += 1
    _repair(split, labels, per_class)
    return split


def _repair(split: dict[int, str], labels: dict[int, frozenset[int]], per_class: dict[int, list[int]]) -> None:
    """Move one image where a class with >= 2 images is missing from a split, without emptying another."""
    for c, members in sorted(per_class.items()):
        if len(members) < 2:
            continue
        for missing in ("train", "val"):
            if any(split[i] == missing for i in members):
                continue
            source = "val" if missing == "train" else "train"
            for i in members:
                if all(
                    sum(1 for j in per_class[d] if split[j] == source) > 1 or len(per_class[d]) < 2
                    for d in labels[i]
                    if d != c
                ):
                    split[i] = missing
                    break


# -------------------------------------------------------------------- names
def export_name(record: ImageRecord) -> str:
    """Readable and unique: the original stem (ASCII-safe) plus the first 10 hex of the content hash."""
    ext = Path(record.file).suffix.lower()
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(record.name).stem).strip("._")[:60] or "image"
    return f"{stem}_{record.sha256[:10]}{ext}"


# ------------------------------------------------------------------- export
def export_project(
    project: Project,
    fmt: Format,
    out: Path,
    val_fraction: float = 0.2,
    seed: int = 0,
    zip: bool = False,  # noqa: A002 - mirrors the --zip flag
    rle: bool = False,
    include_proposed: bool = False,
    progress: Progress | None = None,
) -> ExportResult:
    if fmt not in FORMATS:
        raise InputError(f"unknown export format '{fmt}'; choose one of {', '.join(FORMATS)}.")
    if not 0.0 <= val_fraction < 1.0:
        raise InputError(f"--val-fraction must be in [0, 1), got {val_fraction}.")
    out = Path(out)
    if zip and out.suffix.lower() != ".zip":
        out = out.with_name(out.name + ".zip")
    _check_target(out, zip)
    with project.snapshot():
        return _export(project, fmt, out, val_fraction, seed, zip, rle, include_proposed, progress)


def _export(
    project: Project, fmt: Format, out: Path, val_fraction: float, seed: int, zip: bool,  # noqa: A002
    rle: bool, include_proposed: bool, progress: Progress | None,
) -> ExportResult:
    classes = project.classes()
    class_index = {c.id: k for k, c in enumerate(classes)}
    class_names = tuple(c.name for c in classes)
    statuses = ("accepted", "proposed") if include_proposed else ("accepted",)
    items = _items(project, statuses)
    split = stratified_split({it.record.id: it.class_ids for it in items}, val_fraction, seed)

    tmp = out.parent / f".{out.name}.tmp-{uuid.uuid4().hex[:8]}"
    try:
        tmp.mkdir(parents=True)
    except OSError as err:  # --out names a folder that cannot be made (a file on its path, no permission)
        raise InputError(f"cannot write the export to {out}: {err.strerror or err}; choose a writable --out.") from err
    try:
        with scratch.hold(tmp):  # held: a server starting meanwhile leaves it alone
            n_ann, hashes, losses = _write_dataset(project, fmt, tmp, items, split, class_index, class_names,
                                                   statuses, rle, "val" in split.values(), progress)
            content_hash = _content_hash(hashes)
            marker = {"format": fmt, "content_hash": content_hash, "classes": list(class_names)}
            (tmp / MARKER).write_bytes(json.dumps(marker, sort_keys=True).encode())
            if zip:
                _zip_folder(tmp, out)
            else:
                _replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    counts = {"train": sum(1 for v in split.values() if v == "train"), "val": sum(1 for v in split.values() if v == "val")}
    return ExportResult(out, counts, n_ann, class_names, content_hash, *losses, not_done_counts(project))


def not_done_counts(project: Project) -> tuple[int, int]:
    """(images, accepted annotations) on images not marked done: what export and training leave out."""
    waiting = project.labels_not_done()
    return len(waiting), sum(n for _, n, _ in waiting)


def not_done_message(images: int, annotations: int, how: str) -> str:
    """What was left out because its images are not marked done, and ``how`` to mark them (a
    command or a button); empty when nothing was."""
    if not annotations:
        return ""
    return (f"{annotations} accepted annotation{'s' * (annotations > 1)} on {images} image{'s' * (images > 1)} "
            f"not marked done {'were' if annotations > 1 else 'was'} left out (only done and good images "
            f"export and train). {how}")


def _items(project: Project, statuses: tuple[str, ...]) -> list[_Item]:
    items = []
    classes = project.class_ids_by_image(statuses)
    for rec in project.images():
        if rec.status not in ("done", "good"):
            continue
        cls = classes.get(rec.id, frozenset()) if rec.status == "done" else frozenset()
        items.append(_Item(rec, export_name(rec), cls))
    names = [it.file_name for it in items]
    if len(set(names)) != len(names):  # only on a 10-hex prefix collision; fall back to the full hash
        items = [_Item(it.record, f"{Path(it.file_name).stem}{it.record.sha256[10:]}{Path(it.file_name).suffix}",
                       it.class_ids) for it in items]
    return sorted(items, key=lambda it: it.file_name)


def _write_dataset(
    project: Project, fmt: str, root: Path, items: list[_Item], split: dict[int, str],
    class_index: dict[int, int], class_names: tuple[str, ...], statuses: tuple[str, ...],
    rle: bool, has_val: bool, progress: Progress | None,
) -> tuple[int, dict[str, str], tuple[int, int]]:
    """Write images and labels under ``root``; returns (annotations written, {relative path: sha256},
    (masks with holes filled, masks in several parts) when the format writes polygons)."""
    splits = ("train", "val") if has_val else ("train",)
    for s in splits:
        (root / "images" / s).mkdir(parents=True)
        if fmt != "coco":
            (root / "labels" / s).mkdir(parents=True)
    hashes: dict[str, str] = {}
    coco_parts: dict[str, tuple[list[dict], list[dict]]] = {s: ([], []) for s in splits}
    n_ann = holes = parts = 0
    polygons = fmt == "yolo-segment" or (fmt == "coco" and not rle)
    for done, it in enumerate(items, 1):
        rec, s = it.record, split[it.record.id]
        rel_image = f"images/{s}/{it.file_name}"
        try:
            _link_or_copy(project.root / rec.file, root / rel_image)
        except FileNotFoundError as err:
            raise ProjectError(
                f"stored image {rec.file} ('{rec.name}') is missing. Nothing was written. If the image was "
                f"deleted while exporting, run the export again; if the file was removed by hand, re-import "
                f"'{rec.name}' or delete it from the project."
            ) from err
        hashes[rel_image] = rec.sha256
        ann = _labels(project, rec, statuses, with_masks=fmt != "yolo-detect")  # detect writes boxes only
        n_ann += len(ann)
        if polygons:
            h, p = ann.polygon_losses()
            holes, parts = holes + h, parts + p
        if fmt == "coco":
            images, anns = coco_parts[s]
            image_id = len(images) + 1
            images.append(coco.image_to_coco(image_id, it.file_name, rec.width, rec.height))
            category_of = {cid: k + 1 for cid, k in class_index.items()}
            anns.extend(ann.to_coco(image_id, category_of, first_id=len(anns) + 1, as_rle=rle))
        else:
            rel_label = f"labels/{s}/{Path(it.file_name).stem}.txt"
            content = yolo.label_file(ann.to_yolo(fmt, class_index))
            _write(root / rel_label, content)
            hashes[rel_label] = hashlib.sha256(content).hexdigest()
        if progress:
            progress(done, len(items))
    if fmt == "coco":
        (root / "annotations").mkdir()
        for s, (images, anns) in coco_parts.items():
            rel = f"annotations/instances_{s}.json"
            content = coco.dumps(coco.dataset_to_coco(images, anns, list(class_names)))
            _write(root / rel, content)
            hashes[rel] = hashlib.sha256(content).hexdigest()
    else:
        content = yolo.data_yaml(list(class_names), has_val)
        _write(root / "data.yaml", content)
        hashes["data.yaml"] = hashlib.sha256(content).hexdigest()
    return n_ann, hashes, (holes, parts)


def _labels(project: Project, rec: ImageRecord, statuses: tuple[str, ...], with_masks: bool = True) -> Annotations:
    """The labels an image exports: its annotations of ``statuses`` when it is done, none when good."""
    if rec.status != "done":
        return Annotations.empty(rec.height, rec.width)
    return project.annotations(rec, statuses, with_masks=with_masks)


def _write(path: Path, content: bytes) -> None:
    path.write_bytes(content)


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:  # another filesystem, or links not allowed: plain copy
        shutil.copyfile(src, dst)


def _content_hash(hashes: dict[str, str]) -> str:
    h = hashlib.sha256()
    for rel in sorted(hashes):
        h.update(f"{rel}\0{hashes[rel]}\n".encode())
    return h.hexdigest()


# ----------------------------------------------------------- atomic output
def _is_our_export(path: Path) -> bool:
    if path.is_dir():
        return (path / MARKER).is_file()
    if path.is_file() and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return MARKER in zf.namelist()
    return False


def _check_target(out: Path, as_zip: bool) -> None:
    if not out.exists():
        return
    if out.is_dir() and not any(out.iterdir()):
        return
    if _is_our_export(out) and out.is_dir() != as_zip:
        return
    kind = "folder" if out.is_dir() else "file"
    raise InputError(
        f"{out} already exists and is not a previous {'zip ' if as_zip else ''}export of this app; "
        f"refusing to overwrite the {kind}. Choose another --out or remove it."
    )


def _replace_folder(tmp: Path, out: Path) -> None:
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        os.replace(out, old)
        with scratch.hold(old):
            try:
                os.replace(tmp, out)
            except OSError:
                os.replace(old, out)  # put the previous export back
                raise
            shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


def zip_export(folder: Path, out: Path | None = None) -> Path:
    """Zip an export folder already written (the same bytes as exporting with ``zip=True``)."""
    folder = Path(folder)
    if not _is_our_export(folder):
        raise InputError(f"{folder} is not an export of this app; export first, then zip it.")
    out = Path(out) if out is not None else folder.with_name(folder.name + ".zip")
    _check_target(out, True)
    _zip_folder(folder, out)
    return out


def _zip_folder(folder: Path, out: Path) -> None:
    """Zip with sorted members and fixed dates; images stored as they are (no recompression)."""
    part = out.parent / f".{out.name}.part-{uuid.uuid4().hex[:8]}"
    try:
        part.touch()
        with scratch.hold(part), zipfile.ZipFile(part, "w") as zf:
            for path in sorted(p for p in folder.rglob("*") if p.is_file()):
                rel = path.relative_to(folder).as_posix()
                info = zipfile.ZipInfo(rel, date_time=ZIP_DATE)
                info.external_attr = 0o644 << 16
                images = rel.startswith("images/")
                info.compress_type = zipfile.ZIP_STORED if images else zipfile.ZIP_DEFLATED
                with open(path, "rb") as src, zf.open(info, "w") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
            os.replace(part, out)
    finally:
        with contextlib.suppress(FileNotFoundError):
            part.unlink()
