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
  at least one becomes ``done``. A COCO results file (annotations with a ``score``) gives
  ``proposed`` annotations instead, to review; their image stays ``unlabeled``.
- Background images: a YOLO image with an empty label file holds no defect by Ultralytics' own
  convention and becomes ``good``. A COCO image without annotations may be background or not
  labelled yet (CVAT and Label Studio list unlabelled tasks too): ``unlabeled`` unless
  ``empty_as="good"`` says the dataset is complete; the report counts them either way. An
  image with no label file at all, or whose every label was rejected, stays ``unlabeled``.
- Labels for an image already stored land on it (a label equal to one it holds is not added
  twice). Class names that differ only in case or spaces are one class (noted).
- YOLO detect lines and COCO annotations with only a bbox are stored box-only (no mask); so is a
  polygon too short to draw beside a valid bbox (noted). Crowd regions (``iscrowd``) are masks
  (noted), or left out with ``skip_crowd``.
- Every label that does not arrive is named in ``rejected`` with its file and the reason;
  what arrives differently from the file is named in ``notes``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Literal

import numpy as np

from data import coco, yolo
from data.annotations import STATUSES, Annotations
from data.errors import InputError
from data.images import MAX_FILE_BYTES, is_supported, load_for_import
from data.import_report import ImportReport, Where
from data.names import clean_name
from data.scratch import temp_dir as held_temp_dir
from data.store import ImageRecord, Project

SOURCE = "import"
EMPTY_AS = ("unlabeled", "good")
LINK_REFUSED = "symbolic link; not followed (it could reach outside the dataset)."
# An archive's expansion is bounded before anything is unpacked (each overridable by its variable):
# what the members to import hold at most, uncompressed, in all, and per byte of the archive.
MAX_UNPACK_BYTES = int(float(os.environ.get("DEFECT_STUDIO_MAX_UNPACK_GB", "4")) * 2**30)
MAX_UNPACK_RATIO = float(os.environ.get("DEFECT_STUDIO_MAX_UNPACK_RATIO", "100"))
Progress = Callable[[int, int], None]


@dataclass
class _Labels:
    """What a label file says of one image."""

    annotations: Annotations  # class names in ``data["name"]``
    rejected: list[Where] = field(default_factory=list)
    notes: list[Where] = field(default_factory=list)
    background: bool = False  # the file says the image holds no defect


# (height, width) of the image as read -> its labels
LabelReader = Callable[[int, int], _Labels]


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
    notes: list[Where] = field(default_factory=list)
    empty_as: str = "unlabeled"
    skip_crowd: bool = False
    empty_images: list[str] = field(default_factory=list)  # COCO images listed without annotations
    without_label_file: list[str] = field(default_factory=list)  # YOLO images with no label file at all
    scratch: Path | None = None  # where zips holding labels are unpacked
    cleanup: contextlib.ExitStack | None = None  # removes what was unpacked once the import ends
    unpacked_bytes: int = 0  # written to scratch while unpacking archives


def import_sources(project: Project, sources: list[Path], progress: Progress | None = None,
                   empty_as: str = "unlabeled", skip_crowd: bool = False) -> ImportReport:
    """Import ``sources`` into ``project``. ``empty_as``: what a COCO image without annotations
    becomes (``"unlabeled"``, or ``"good"`` when the dataset is known to be complete);
    ``skip_crowd``: leave COCO crowd regions out instead of importing them as masks."""
    if empty_as not in EMPTY_AS:
        raise InputError(f"--empty-as must be one of {', '.join(EMPTY_AS)}, got '{empty_as}'.")
    with contextlib.ExitStack() as cleanup:
        plan = _Plan(scratch=project.path("cache"), cleanup=cleanup, empty_as=empty_as, skip_crowd=skip_crowd)
        for src in sources:
            _plan_source(Path(src), plan)
        return _import_plan(project, plan, progress)


@dataclass
class _Tally:
    imported: int = 0
    added: int = 0
    merged: int = 0
    already: int = 0
    background: int = 0
    proposals: int = 0


def class_key(name: object) -> str:
    """Names that differ only in case or spaces are one class ("Crack", "crack ", "CRACK")."""
    return clean_name(name).casefold()


def _import_plan(project: Project, plan: _Plan, progress: Progress | None) -> ImportReport:
    rejected, notes = list(plan.rejected), list(plan.notes)
    class_ids = _add_classes(project, plan.classes, rejected, notes)
    tally = _Tally()
    duplicates: list[str] = []
    for done, item in enumerate(plan.items, 1):
        try:
            created = _import_one(project, item, class_ids, rejected, notes, tally)
        except InputError as err:
            rejected.append((item.name, str(err)))
        else:
            if created:
                tally.imported += 1
            else:
                duplicates.append(item.name)
        if progress:
            progress(done, len(plan.items))
    if plan.empty_images:
        choice = ("marked good (background), as asked (--empty-as good)" if plan.empty_as == "good" else
                  "left unlabeled (they may be background or not labelled yet; --empty-as good marks them good)")
        notes.append(("COCO images without annotations",
                      f"{len(plan.empty_images)} {choice}: {_some(plan.empty_images)}."))
    if plan.without_label_file:
        notes.append(("YOLO images without a label file",
                      f"{len(plan.without_label_file)} left unlabeled (Ultralytics would train on them as background; "
                      f"an empty label file marks an image good): {_some(plan.without_label_file)}."))
    notes = list(dict.fromkeys(notes))  # the same note of two files of one name (Roboflow's splits) once
    return ImportReport(tally.imported, tuple(duplicates), tuple(rejected), tally.added, tuple(plan.skipped),
                        tally.merged, tally.already, tuple(notes), tally.background, len(plan.empty_images),
                        plan.empty_as, tally.proposals, plan.unpacked_bytes)


def _some(names: list[str], n: int = 5) -> str:
    return ", ".join(names[:n]) + (f" and {len(names) - n} more" if len(names) > n else "")


def _add_classes(project: Project, names: list[str], rejected: list[Where], notes: list[Where]) -> dict[str, int]:
    """Create the classes the files name (one transaction); ``class_key -> class id``. Names that
    differ only in case or spaces from one the project or an earlier file has join that class."""
    chosen = {class_key(c.name): c.name for c in project.classes()}
    merged: dict[tuple[str, str], None] = {}
    new: list[str] = []
    for name in names:
        key, clean = class_key(name), clean_name(name)
        if key in chosen:
            if chosen[key] != clean:
                merged[(clean, chosen[key])] = None
            continue
        if not clean or len(clean) > 64:
            rejected.append((f"class '{clean[:40]}'", "a class name must have 1 to 64 characters; its labels "
                                                      "were left out. Rename it in the file."))
            continue
        chosen[key] = clean
        new.append(clean)
    for clean, into in merged:
        notes.append((f"class '{clean}'", f"differs from '{into}' only in case or spaces: imported as '{into}'."))
    project.add_classes(new)
    return {class_key(c.name): c.id for c in reversed(project.classes())}  # the first of equal keys wins


def _import_one(project: Project, item: _Planned, class_ids: dict[str, int], rejected: list[Where],
                notes: list[Where], tally: _Tally) -> bool:
    """Store one image and its labels; True when the image was stored (not already there).

    An image whose content is already stored (imported before, or twice in this import) is not
    stored again, but its labels land on it (:func:`_merge_labels`).
    """
    image = load_for_import(item.read(), item.name)
    read = _Labels(Annotations.empty(image.height, image.width))
    if item.labels is not None:
        read = item.labels(image.height, image.width)
        rejected.extend(read.rejected)
        notes.extend(read.notes)
    labels = read.annotations
    if len(labels):
        keys = [class_key(n) for n in labels.data["name"]]
        known_class = np.array([k in class_ids for k in keys], dtype=bool)
        if not known_class.all():
            rejected.extend((item.name, f"a label of class '{n}' was left out (the class could not be created).")
                            for n, ok in zip(labels.data["name"], known_class, strict=True) if not ok)
            labels, keys = labels.filter(known_class), [k for k, ok in zip(keys, known_class, strict=True) if ok]
        labels = labels.with_class_ids([class_ids[k] for k in keys])
    known = project.image_by_hash(image.sha256)
    created = False
    if known is None:
        # The image and its labels (masks and box-only rows together) in one transaction.
        image_id, created = project.add_image(image.content, item.name, image.sha256, image.width, image.height,
                                              image.ext, annotations=labels if len(labels) else None,
                                              status=_status(labels, read.background))
        known = project.image(image_id)
    if created:
        added = len(labels)
        tally.background += _status(labels, read.background) == "good"
    else:  # already stored (or stored by another session meanwhile): its labels land on it
        added, already, to_good, proposed = _merge_labels(project, known, labels, read.background)
        tally.merged += added
        tally.already += already
        tally.background += to_good
    tally.added += added
    tally.proposals += int(np.count_nonzero(labels.status == "proposed")) if created else proposed
    return created


def _status(labels: Annotations, background: bool) -> str:
    """A new image's status: done with an accepted label, good when its file says background."""
    if np.any(labels.status == "accepted"):
        return "done"
    return "good" if background and not len(labels) else "unlabeled"


SAME_LABEL_IOU = 0.95  # an imported label this close to one of the same class the image holds is that label


def _merge_labels(project: Project, rec: ImageRecord, labels: Annotations,
                  background: bool) -> tuple[int, int, int, int]:
    """Add imported ``labels`` to an image already stored: ``(added, already there, marked good,
    proposals added)``.

    A label of the same class as one the image holds (any status) at mask IoU of at least
    :data:`SAME_LABEL_IOU` is not added again. An unlabeled image that gains accepted labels
    becomes ``done``, as a new image with imported labels does; a ``good`` one is un-marked by
    the store. An unlabeled image that a file marks as background becomes ``good``.
    """
    if not len(labels):
        if background and rec.status == "unlabeled" and not len(project.annotations(rec, statuses=STATUSES,
                                                                                   with_masks=False)):
            project.set_image_status(rec.id, "good")
            return 0, 0, 1, 0
        return 0, 0, 0, 0
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
            if (project.image(rec.id).status == "unlabeled" and np.any(new.status == "accepted")
                    and not len(project.annotations(rec, statuses=("proposed",), with_masks=False))):
                project.set_image_status(rec.id, "done")  # (with proposals to review it stays unlabeled)
    return len(new), int(same.sum()), 0, int(np.count_nonzero(new.status == "proposed"))


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
    """The folder's data.yaml, or its ``annotations/instances_*.json`` files, or its YOLO
    ``classes.txt`` (labelImg, Label Studio), or None."""
    coco_files = sorted((folder / "annotations").glob("instances_*.json"))
    return yolo.find_data_yaml(folder) or coco_files or yolo.find_classes_txt(folder) or None


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
            plan.rejected.append((name, LINK_REFUSED))
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
    return not name.startswith(".") and (name.lower().endswith(".json") or name in (*yolo.YAML_NAMES, yolo.CLASSES_TXT))


def _wanted(member: str) -> bool:
    """Whether an archive member can be imported: an image, a label file, a YOLO label (.txt)."""
    name = PurePosixPath(member.replace("\\", "/")).name
    return not name.startswith(".") and (is_supported(name) or _is_label_file(member) or name.endswith(".txt"))


def expansion_problem(archive_bytes: int, infos: list[zipfile.ZipInfo]) -> str | None:
    """Why unpacking ``infos`` (the members to import) from an archive of ``archive_bytes`` is refused, or
    None. Member sizes are as declared: :mod:`zipfile` never reads past a member's declared size."""
    total = sum(i.file_size for i in infos)
    if total > MAX_UNPACK_BYTES:
        return (f"its members to import hold {total / 2**30:.2f} GiB uncompressed, more than the "
                f"{MAX_UNPACK_BYTES / 2**30:.2f} GiB allowed (DEFECT_STUDIO_MAX_UNPACK_GB); split the archive.")
    if total > max(archive_bytes, 1) * MAX_UNPACK_RATIO and total > 2**20:
        return (f"it would expand {total / max(archive_bytes, 1):.0f} times (from {archive_bytes / 2**20:.1f} MiB to "
                f"{total / 2**20:.0f} MiB), more than the {MAX_UNPACK_RATIO:.0f} times allowed "
                f"(DEFECT_STUDIO_MAX_UNPACK_RATIO); images and labels do not compress like that. Refused.")
    return None


def _plan_zip(path: Path, plan: _Plan) -> None:
    try:
        zf = zipfile.ZipFile(path)
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError) as err:
        plan.rejected.append((path.name, f"not a readable zip archive ({err})."))
        return
    problem = expansion_problem(path.stat().st_size, [i for i in infos if not i.is_dir() and _wanted(i.filename)])
    if problem:
        plan.rejected.append((path.name, problem))
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
    base = plan.cleanup.enter_context(held_temp_dir("import-zip-", scratch))
    needed = sum(i.file_size for i in infos if not i.is_dir() and _wanted(i.filename))
    if needed > shutil.disk_usage(base).free:
        plan.rejected.append((path.name, f"needs {needed // 2**20} MiB to unpack, more than the free disk space."))
        return
    root = base / path.name  # YOLO images are then named "archive.zip/images/...", like other zip members
    first = len(plan.rejected)
    for info in sorted(infos, key=lambda i: i.filename):
        if info.is_dir():
            continue
        name = f"{path.name}/{info.filename}"
        if not _wanted(info.filename):  # never unpacked: only what can be imported is
            plan.skipped.append(name)
            continue
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
                plan.unpacked_bytes += dst.tell()
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
    plan.notes.extend(doc.notes)
    listed = {im["id"] for im in doc.images}
    for image_id, anns in sorted(doc.annotations_by_image.items()):
        if image_id not in listed:
            plan.rejected.extend((f"{path.name} annotation {a.get('id')}",
                                  f"its image_id {image_id} names no image in the file; left out.") for a in anns)
    base = path.parent
    ours = doc.exported_here  # this app exports only done and good images: one without labels is good
    for im in sorted(doc.images, key=lambda im: str(im["file_name"])):
        file_name = str(im["file_name"])
        anns = doc.annotations_by_image.get(im["id"], [])
        found = _find_coco_image(path, file_name)
        if isinstance(found, tuple):  # ("link", the link)
            plan.rejected.append((file_name, f"{LINK_REFUSED} (named by {path.name})"))
            found_files.add(found[1])
            continue
        if found is None:
            lost = f"; its {len(anns)} annotations were not imported" if anns else ""
            plan.rejected.append((file_name, f"image file not found for {path.name} (looked in {base}, "
                                             f"{base / 'images'} and the COCO layout around it){lost}."))
            continue
        background = not anns and (plan.empty_as == "good" or ours)
        if not anns and not ours:
            plan.empty_images.append(file_name)
        plan.items.append(_Planned(file_name, lambda p=found: p,
                                   _coco_labels(f"{path.name}: {file_name}", im, anns, doc.categories,
                                                background, plan.skip_crowd)))
        found_files.add(found)
    return found_files
def _linked(path: Path, top: Path) -> bool:
    """Whether ``path``, or a folder between ``top`` and it, is a symbolic link (``top`` itself may be:
    the user named it)."""
    p = path
    while p != top and p != p.parent:
        if p.is_symlink():
            return True
        p = p.parent
    return False


def _find_coco_image(json_path: Path, file_name: str) -> Path | tuple[Literal["link"], Path] | None:
    """Beside the JSON, in ``images/`` beside it, or (for ``annotations/instances_<split>.json``, the
    layout of COCO itself and of our export) in ``images/<split>/`` or ``<split>/`` next to ``annotations/``.
    ``("link", path)`` when the file found, or a folder on its way, is a symbolic link (never followed)."""
    rel = PurePosixPath(file_name.replace("\\", "/"))
    if rel.is_absolute() or ".." in rel.parts:
        return None
    base = json_path.parent
    candidates = [base / rel, base / "images" / rel, base / "images" / rel.name]
    if base.name == "annotations":
        split = json_path.stem.removeprefix("instances_")
        top = base.parent
        candidates += [top / rel, top / "images" / split / rel, top / split / rel, top / "images" / rel]
    found = next((c for c in candidates if c.is_file()), None)
    root = base.parent if base.name == "annotations" else base
    return ("link", found) if found is not None and _linked(found, root) else found


def _coco_labels(where: str, im: dict, anns: list[dict], categories: dict[int, str], background: bool,
                 skip_crowd: bool) -> LabelReader:
    def read(height: int, width: int) -> _Labels:
        declared = (_size(im.get("height")), _size(im.get("width")))
        if anns and declared != (height, width) and None not in declared:
            return _Labels(Annotations.empty(height, width), [
                (where, f"COCO says {declared[1]}x{declared[0]} but the image is {width}x{height}; "
                        f"its {len(anns)} annotations were not imported.")])
        ordered = sorted(anns, key=lambda a: a.get("id", 0))  # ids are integers (coco.read_coco)
        out = _Labels(Annotations.empty(height, width), background=background)
        out.annotations = Annotations.from_coco(
            ordered, categories, height, width, source=SOURCE, skip_crowd=skip_crowd,
            on_error=lambda k, why: out.rejected.append((f"{where} annotation {ordered[k].get('id')}", why)),
            on_note=lambda k, what: out.notes.append((f"{where} annotation {ordered[k].get('id')}", what)))
        return out

    return read


def _size(v: object) -> int | None:
    """A COCO ``width``/``height``: an integer, or a string of one (some tools write "640")."""
    if isinstance(v, str) and v.strip().isdigit():
        return int(v)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _plan_yolo(path: Path, plan: _Plan) -> None:
    """A YOLO dataset from its data.yaml or its classes.txt: the images under ``images/`` (or the
    folder) with the label file Ultralytics' rule finds for each (or the one beside it)."""
    try:
        ds = yolo.read_classes_txt(path) if path.name == yolo.CLASSES_TXT else yolo.read_data_yaml(path)
    except InputError as err:
        plan.rejected.append((path.name, str(err)))
        return
    if ds.note:
        plan.notes.append((path.name, ds.note))
    plan.classes.extend(ds.names)
    top = ds.root.parent
    images_root = ds.root / "images" if (ds.root / "images").is_dir() else ds.root
    if _linked(images_root, ds.root):
        plan.rejected.append((f"{ds.root.name}/images", f"{LINK_REFUSED} (the folder is a link)"))
        return
    used: set[Path] = set()
    for image in sorted(images_root.rglob("*")):
        if not image.is_file() or not is_supported(image.name):
            continue
        rel = image.relative_to(ds.root)
        if "labels" in rel.parts:
            continue
        name = f"{ds.root.name}/{rel.as_posix()}"
        if _linked(image, ds.root):  # links could reach outside the dataset folder
            plan.rejected.append((name, LINK_REFUSED))
            continue
        label = yolo.label_path_for(image)
        if not label.is_file() and image.with_suffix(".txt").is_file():
            label = image.with_suffix(".txt")  # labelImg saves it beside the image
        used.add(label)
        if label.exists() and _linked(label, ds.root):
            plan.rejected.append((name, f"its label file {label.name} is a symbolic link; not followed, image "
                                        f"left out."))
            continue
        if not label.is_file():
            plan.without_label_file.append(name)
        where = label.relative_to(top).as_posix() if label.is_relative_to(top) else label.name
        plan.items.append(_Planned(name, lambda p=image: p, _yolo_labels(where, label, ds.names)))
    label_folders = {p.parent for p in used}
    for txt in sorted(ds.root.rglob("*.txt")):
        if txt in used or txt.name == yolo.CLASSES_TXT or _linked(txt, ds.root):
            continue
        rel = txt.relative_to(ds.root)
        if "labels" in rel.parts[:-1] or txt.parent in label_folders:
            plan.rejected.append((f"{ds.root.name}/{rel.as_posix()}", "label file with no image beside it or "
                                  "under images/ (Ultralytics' rule: images/X.png <-> labels/X.txt); left out."))


def _yolo_labels(where: str, label_path: Path, names: list[str]) -> LabelReader:
    def read(height: int, width: int) -> _Labels:
        if not label_path.is_file():
            return _Labels(Annotations.empty(height, width))
        try:
            lines = label_path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as err:
            return _Labels(Annotations.empty(height, width), [(where, f"unreadable label file ({err}).")])
        out = _Labels(Annotations.empty(height, width), background=not any(line.strip() for line in lines))
        out.annotations = Annotations.from_yolo(
            lines, names, height, width, source=SOURCE,
            on_error=lambda k, why: out.rejected.append((f"{where}:{k + 1}", why)))
        return out

    return read
