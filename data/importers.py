"""Import images and labels into a project from files, folders, zips, COCO JSON and YOLO datasets.

Each source is first planned into a list of images (name, how to read its bytes, how to
read its labels), then each image is validated (``data.images``) and stored with its
labels in one transaction. Whatever cannot be used is listed with its reason; the rest
imports. ``Project.add_image`` skips content it already holds, so re-running an
interrupted import finishes it without duplicates.

Choices:
- Names are kept relative to the source (``folder/sub/a.png``, ``archive.zip/x/a.png``),
  so equal names in different folders stay apart.
- Zip members are read in memory; entries with ``..``, absolute paths or symlinks are refused.
  A zip that holds labels (a COCO ``.json`` or a YOLO ``data.yaml``, e.g. this app's own
  export) is unpacked into a temporary folder in the project's ``cache/`` and imported as
  that folder would be, labels included (one top folder inside the zip is looked through).
- A folder without ``data.yaml`` or ``annotations/instances_*.json`` imports each COCO
  ``.json`` in it with the images it names; the images no JSON names import on their own.
- Imported labels become ``accepted`` annotations with source ``import``; an image with
  at least one imported label becomes ``done``, any other image stays ``unlabeled`` (an
  image without labels is never assumed defect-free).
- YOLO detect lines and COCO annotations with only a bbox are stored box-only (no mask).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from data import coco, yolo
from data.annotations import STATUSES, Annotations
from data.errors import InputError
from data.images import MAX_FILE_BYTES, is_supported, load_for_import
from data.names import clean_name
from data.store import ImageRecord, Project

SOURCE = "import"
Progress = Callable[[int, int], None]
# (height, width) -> (objects as (class name, xyxy, mask|None), rejections as (where, reason))
# (height, width) -> (the image's labels, class names in ``data["name"]``; the rejected (where, why)).
LabelReader = Callable[[int, int], tuple[Annotations, list[tuple[str, str]]]]


@dataclass(frozen=True)
class ImportReport:
    imported: int
    duplicates: tuple[str, ...]  # names whose content was already in the project (or earlier in this import)
    rejected: tuple[tuple[str, str], ...]  # (name, reason): files and single annotations / label lines
    annotations_added: int  # labels stored, on new images and merged onto images already stored
    skipped: tuple[str, ...] = ()  # files of other types found in folders and zips (not images)
    labels_merged: int = 0  # of annotations_added: labels that landed on an image already stored
    labels_already_there: int = 0  # labels an image already held (same class, mask IoU >= 0.95): not added


@dataclass
class _Planned:
    name: str
    read: Callable[[], bytes | Path]
    labels: LabelReader | None = None


@dataclass
class _Plan:
    items: list[_Planned] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)  # class names to create, in order
    scratch: Path | None = None  # where zips holding labels are unpacked
    cleanup: contextlib.ExitStack | None = None  # removes what was unpacked once the import ends


def import_sources(project: Project, sources: list[Path], progress: Progress | None = None) -> ImportReport:
    with contextlib.ExitStack() as cleanup:
        plan = _Plan(scratch=project.path("cache"), cleanup=cleanup)
        for src in sources:
            _plan_source(Path(src), plan)
        return _import_plan(project, plan, progress)


def _import_plan(project: Project, plan: _Plan, progress: Progress | None) -> ImportReport:
    for name in plan.classes:
        if project.class_by_name(clean_name(name)) is None:
            project.add_class(name)
    class_ids = {c.name: c.id for c in project.classes()}
    imported = added = merged = already = 0
    duplicates: list[str] = []
    rejected = list(plan.rejected)
    for done, item in enumerate(plan.items, 1):
        try:
            created, n_added, n_already = _import_one(project, item, class_ids, rejected)
        except InputError as err:
            rejected.append((item.name, str(err)))
        else:
            added += n_added
            if created:
                imported += 1
            else:
                duplicates.append(item.name)
                merged += n_added
                already += n_already
        if progress:
            progress(done, len(plan.items))
    return ImportReport(imported, tuple(duplicates), tuple(rejected), added, tuple(plan.skipped), merged, already)


def _import_one(project: Project, item: _Planned, class_ids: dict[str, int],
                rejected: list) -> tuple[bool, int, int]:
    """Store one image and its labels: ``(image created, labels added, labels it already held)``.

    An image whose content is already stored (imported before, or twice in this import) is not
    stored again, but its labels land on it (:func:`_merge_labels`).
    """
    image = load_for_import(item.read(), item.name)
    labels = Annotations.empty(image.height, image.width)
    if item.labels is not None:
        labels, bad = item.labels(image.height, image.width)
        rejected.extend(bad)
    if len(labels):
        labels = labels.with_class_ids([class_ids[clean_name(n)] for n in labels.data["name"]])
    known = project.image_by_hash(image.sha256)
    if known is not None:
        return (False, *_merge_labels(project, known, labels))
    status = "done" if len(labels) else "unlabeled"
    # The image and its labels (masks and box-only rows together) in one transaction.
    image_id, created = project.add_image(image.content, item.name, image.sha256, image.width, image.height,
                                          image.ext, annotations=labels if len(labels) else None, status=status)
    if not created:  # stored by another session meanwhile: its labels land on it
        return (False, *_merge_labels(project, project.image(image_id), labels))
    return True, len(labels), 0


SAME_LABEL_IOU = 0.95  # an imported label this close to one of the same class the image holds is that label


def _merge_labels(project: Project, rec: ImageRecord, labels: Annotations) -> tuple[int, int]:
    """Add imported ``labels`` to an image already stored: ``(added, already there)``.

    A label of the same class as one the image holds (any status) at mask IoU of at least
    :data:`SAME_LABEL_IOU` is not added again. An unlabeled image that gains labels becomes
    ``done``, as a new image with imported labels does; a ``good`` one is un-marked by the store.
    """
    if not len(labels):
        return 0, 0
    if labels.shape != (rec.height, rec.width):
        raise InputError(f"its labels are for a {labels.width}x{labels.height} image, the stored one is "
                         f"{rec.width}x{rec.height}.")
    with project.transaction():
        held = project.annotations(rec, statuses=STATUSES)
        same = np.zeros(len(labels), dtype=bool)
        for i in range(len(labels)):
            for j in np.flatnonzero(held.class_id == labels.class_id[i]):
                if labels.iou(i, held, int(j)) >= SAME_LABEL_IOU:
                    same[i] = True
                    break
        new = labels.filter(~same)
        if len(new):
            project.add_annotations(rec.id, new)
            if project.image(rec.id).status == "unlabeled":
                project.set_image_status(rec.id, "done")
    return len(new), int(same.sum())


# ----------------------------------------------------------------- planning
def _plan_source(src: Path, plan: _Plan) -> None:
    if not src.exists():
        plan.rejected.append((str(src), "not found."))
    elif src.is_dir():
        _plan_dir(src, plan)
    elif src.suffix.lower() == ".zip":
        _plan_zip(src, plan)
    elif src.suffix.lower() == ".json":
        _plan_coco(src, plan)
    elif src.suffix.lower() in (".yaml", ".yml"):
        _plan_yolo(src, plan)
    elif is_supported(src.name):
        plan.items.append(_Planned(src.name, lambda p=src: p))
    else:
        plan.rejected.append((str(src), f"unsupported file type '{src.suffix}'; give images, folders, zips, "
                                        f"a COCO .json or a YOLO data.yaml."))


def _dataset_layout(folder: Path) -> Path | list[Path] | None:
    """The folder's data.yaml, or its ``annotations/instances_*.json`` files, or None."""
    coco_files = sorted((folder / "annotations").glob("instances_*.json"))
    return yolo.find_data_yaml(folder) or coco_files or None


def _plan_dir(folder: Path, plan: _Plan) -> None:
    layout = _dataset_layout(folder)
    if isinstance(layout, Path):
        _plan_yolo(layout, plan)
    elif layout:  # a COCO dataset folder (ours or COCO's own layout)
        for path in layout:
            _plan_coco(path, plan)
    else:
        _plan_folder(folder, plan)


def _plan_folder(folder: Path, plan: _Plan) -> None:
    files = [p for p in sorted(folder.rglob("*"))
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)]
    jsons = [p for p in files if p.suffix.lower() == ".json" and not p.is_symlink()]
    named = set(jsons)  # the JSONs and the images they name are planned with their labels
    for path in jsons:
        named |= _plan_coco(path, plan)
    for path in files:
        name = f"{folder.name}/{path.relative_to(folder).as_posix()}"
        if path in named:
            continue
        if path.is_symlink():
            plan.rejected.append((name, "symbolic link; not followed."))
        elif is_supported(path.name):
            plan.items.append(_Planned(name, lambda p=path: p))
        else:
            plan.skipped.append(name)


def _zip_entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path in the archive; refused."
    if ".." in parts:
        return "path with '..' in the archive; refused (it would point outside the project)."
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link in the archive; refused."
    if info.file_size > MAX_FILE_BYTES:
        return f"member larger than {MAX_FILE_BYTES // 2**20} MiB; refused."
    return None


def _is_label_file(member: str) -> bool:
    name = PurePosixPath(member.replace("\\", "/")).name
    return not name.startswith(".") and (name.lower().endswith(".json") or name in yolo.YAML_NAMES)


def _plan_zip(path: Path, plan: _Plan) -> None:
    try:
        zf = zipfile.ZipFile(path)
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        plan.rejected.append((path.name, f"not a readable zip archive ({err})."))
        return
    if plan.cleanup is not None and any(_is_label_file(i.filename) for i in infos if not i.is_dir()):
        _plan_zip_dataset(path, zf, infos, plan)
        return
    for info in sorted(infos, key=lambda i: i.filename):
        if info.is_dir():
            continue
        name = f"{path.name}/{info.filename}"
        problem = _zip_entry_problem(info)
        if problem:
            plan.rejected.append((name, problem))
        elif is_supported(info.filename):
            plan.items.append(_Planned(name, lambda zf=zf, i=info: _read_member(zf, i)))
        else:
            plan.skipped.append(name)


def _plan_zip_dataset(path: Path, zf: zipfile.ZipFile, infos: list[zipfile.ZipInfo], plan: _Plan) -> None:
    """Unpack a zip holding labels (refusing the same entries as above) and plan it as that folder."""
    scratch = plan.scratch if plan.scratch is not None and plan.scratch.is_dir() else None
    base = Path(plan.cleanup.enter_context(tempfile.TemporaryDirectory(prefix="import-zip-", dir=scratch)))
    needed = sum(i.file_size for i in infos if not i.is_dir())
    if needed > shutil.disk_usage(base).free:
        plan.rejected.append((path.name, f"needs {needed // 2**20} MiB to unpack, more than the free disk space."))
        return
    root = base / path.name  # YOLO images are then named "archive.zip/images/...", like other zip members
    first = len(plan.rejected)
    for info in sorted(infos, key=lambda i: i.filename):
        if info.is_dir():
            continue
        name = f"{path.name}/{info.filename}"
        problem = _zip_entry_problem(info)
        target = root.joinpath(*PurePosixPath(info.filename.replace("\\", "/")).parts)
        if problem is None and root.resolve() not in target.resolve().parents:
            problem = "path outside the archive's folder; refused."
        if problem:
            plan.rejected.append((name, problem))
            continue
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as err:  # RuntimeError: encrypted member
            target.unlink(missing_ok=True)
            plan.rejected.append((name, f"cannot read this archive member ({err})."))
    if not root.is_dir():
        return
    inner = [p for p in root.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if _dataset_layout(root) is None and len(inner) == 1 and inner[0].is_dir() and _dataset_layout(inner[0]):
        root = inner[0]  # the dataset folder itself was zipped
    _plan_dir(root, plan)
    # reasons name the zip, not the temporary folder it was unpacked in
    plan.rejected[first:] = [(n, r.replace(f"{base}{os.sep}", "")) for n, r in plan.rejected[first:]]


def _read_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    try:
        return zf.read(info)
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as err:  # RuntimeError: encrypted member
        raise InputError(f"cannot read this archive member ({err}).") from err


def _plan_coco(path: Path, plan: _Plan) -> set[Path]:
    """Plan the images a COCO JSON names, with their labels; returns their files."""
    found_files: set[Path] = set()
    try:
        doc = coco.read_coco(path)
    except InputError as err:
        plan.rejected.append((path.name, str(err)))
        return found_files
    plan.classes.extend(doc.categories.values())
    plan.rejected.extend(doc.rejected)
    base = path.parent
    for im in sorted(doc.images, key=lambda im: str(im["file_name"])):
        file_name = str(im["file_name"])
        found = _find_coco_image(path, file_name)
        if found is None:
            plan.rejected.append((file_name, f"image file not found for {path.name} (looked in {base}, "
                                             f"{base / 'images'} and the COCO layout around it)."))
            continue
        anns = doc.annotations_by_image.get(im["id"], [])
        plan.items.append(_Planned(file_name, lambda p=found: p, _coco_labels(file_name, im, anns, doc.categories)))
        found_files.add(found)
    return found_files


def _find_coco_image(json_path: Path, file_name: str) -> Path | None:
    """Beside the JSON, in ``images/`` beside it, or (for ``annotations/instances_<split>.json``, the
    layout of COCO itself and of our export) in ``images/<split>/`` or ``<split>/`` next to ``annotations/``."""
    rel = PurePosixPath(file_name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        return None
    base = json_path.parent
    candidates = [base / rel, base / "images" / rel, base / "images" / rel.name]
    if base.name == "annotations":
        split = json_path.stem.removeprefix("instances_")
        top = base.parent
        candidates += [top / rel, top / "images" / split / rel, top / split / rel, top / "images" / rel]
    return next((c for c in candidates if c.is_file()), None)


def _coco_labels(file_name: str, im: dict, anns: list[dict], categories: dict[int, str]) -> LabelReader:
    def read(height: int, width: int) -> tuple[Annotations, list[tuple[str, str]]]:
        declared = (im.get("height"), im.get("width"))
        if anns and declared != (height, width) and None not in declared:
            return Annotations.empty(height, width), [
                (file_name, f"COCO says {declared[1]}x{declared[0]} but the image is {width}x{height}; "
                            f"its {len(anns)} annotations were not imported.")]
        ordered = sorted(anns, key=lambda a: a.get("id", 0))  # ids are integers (coco.read_coco)
        bad: list[tuple[str, str]] = []
        labels = Annotations.from_coco(
            ordered, categories, height, width, source=SOURCE,
            on_error=lambda k, why: bad.append((f"{file_name} annotation {ordered[k].get('id')}", why)))
        return labels, bad

    return read


def _plan_yolo(yaml_path: Path, plan: _Plan) -> None:
    try:
        ds = yolo.read_data_yaml(yaml_path)
    except InputError as err:
        plan.rejected.append((yaml_path.name, str(err)))
        return
    plan.classes.extend(ds.names)
    images_root = ds.root / "images" if (ds.root / "images").is_dir() else ds.root
    for path in sorted(images_root.rglob("*")):
        if path.is_symlink() or not path.is_file() or not is_supported(path.name):
            continue  # links could reach outside the dataset folder
        if "labels" in path.relative_to(ds.root).parts:
            continue
        name = f"{ds.root.name}/{path.relative_to(ds.root).as_posix()}"
        plan.items.append(_Planned(name, lambda p=path: p, _yolo_labels(name, yolo.label_path_for(path), ds.names)))


def _yolo_labels(name: str, label_path: Path, names: list[str]) -> LabelReader:
    def read(height: int, width: int) -> tuple[Annotations, list[tuple[str, str]]]:
        if not label_path.is_file():
            return Annotations.empty(height, width), []
        try:
            lines = label_path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            return Annotations.empty(height, width), [(f"{name} labels", f"unreadable label file ({err}).")]
        bad: list[tuple[str, str]] = []
        labels = Annotations.from_yolo(lines, names, height, width, source=SOURCE,
                                       on_error=lambda k, why: bad.append((f"{label_path.name}:{k + 1}", why)))
        return labels, bad

    return read
