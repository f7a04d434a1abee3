"""What an import did, and the one way it is told (the CLI prints it, the Project screen shows it).

Every label that does not arrive is in ``rejected`` with its file and reason; what arrives
otherwise than the file has it (a crowd region as a mask, a short polygon as its box, two
spellings of one class) is in ``notes``. Repeated reasons are told once with a count, so a
dataset with 5,000 crowd regions prints a few lines, not 5,000.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

Where = tuple[str, str]  # (the file, annotation or line; what happened or why)


@dataclass(frozen=True)
class ImportReport:
    imported: int
    duplicates: tuple[str, ...]  # names whose content was already in the project (or earlier in this import)
    rejected: tuple[tuple[str, str], ...]  # (name, reason): files and single annotations / label lines
    annotations_added: int  # labels stored, on new images and merged onto images already stored
    skipped: tuple[str, ...] = ()  # files of other types found in folders and zips (not images)
    labels_merged: int = 0  # of annotations_added: labels that landed on an image already stored
    labels_already_there: int = 0  # labels an image already held (same class, mask IoU >= 0.95): not added
    notes: tuple[Where, ...] = ()  # what arrived otherwise than the file has it (nothing dropped)
    background: int = 0  # images the files mark as holding no defect, stored (or marked) ``good``
    empty_images: int = 0  # COCO images listed without annotations
    empty_as: str = "unlabeled"  # what those became: "unlabeled", or "good" when asked
    proposals_added: int = 0  # of annotations_added: ``proposed`` ones (a results file's detections)
    unpacked_bytes: int = 0  # written to scratch while unpacking archives (then removed)


def summary(rep: ImportReport, project_root: object = None, per_reason: int = 3) -> list[str]:
    """Plain lines (CLI) telling what the import did; ``per_reason`` examples of each repeated reason."""
    new_labels = rep.annotations_added - rep.labels_merged
    proposals = f" ({rep.proposals_added} of them proposals to review)" if rep.proposals_added else ""
    into = f" into {project_root}" if project_root is not None else ""
    lines = [f"imported {rep.imported} images with {new_labels} labels{proposals}{into}"]
    if rep.duplicates:
        lines.append(f"{len(rep.duplicates)} images already in the project (same content), not stored again; their "
                     f"labels were merged onto them: {rep.labels_merged} added, {rep.labels_already_there} already there")
    if rep.background:
        lines.append(f"{rep.background} background images (no defect) marked good")
    if rep.skipped:
        lines.append(f"{len(rep.skipped)} files of other types skipped")
    if rep.notes:
        lines.append(f"{len(rep.notes)} notes (imported, but otherwise than written):")
        lines += _grouped(rep.notes, per_reason)
    if rep.rejected:
        lines.append(f"{len(rep.rejected)} rejected (not imported):")
        lines += _grouped(rep.rejected, per_reason)
    return lines


def _grouped(items: tuple[Where, ...], per_reason: int) -> list[str]:
    """``  where: why`` lines, a reason given more than ``per_reason`` times shown that often plus a count.

    Reasons are grouped by their text after the first number-free words, so "its image_id 7 names
    no image" and "... 9 ..." count together."""
    by_reason: dict[str, list[Where]] = defaultdict(list)
    for where, why in items:
        by_reason[_shape(why)].append((where, why))
    out = []
    for group in by_reason.values():
        out += [f"  {where}: {why}" for where, why in group[:per_reason]]
        if len(group) > per_reason:
            out.append(f"  ... and {len(group) - per_reason} more like the last")
    return out


def _shape(why: str) -> str:
    return "".join("#" if ch.isdigit() else ch for ch in why)


def markdown(rep: ImportReport, limit: int = 30) -> str:
    """The Project screen's import report: the counts, then up to ``limit`` notes and rejections."""
    lines = [f"Imported **{rep.imported}** images, {rep.annotations_added} annotations"
             + (f" ({rep.proposals_added} proposals to review)" if rep.proposals_added else "")
             + f"; {len(rep.duplicates)} already in the project (their labels merged: {rep.labels_merged} "
             f"added, {rep.labels_already_there} already there); {rep.background} background images marked good; "
             f"{len(rep.notes)} notes; {len(rep.rejected)} rejected."]
    lines += [f"- note `{where}`: {what}" for where, what in rep.notes[:limit]]
    lines += [f"- rejected `{where}`: {why}" for where, why in rep.rejected[:limit]]
    hidden = max(0, len(rep.notes) - limit) + max(0, len(rep.rejected) - limit)
    if hidden:
        lines.append(f"- ... and {hidden} more (the CLI's `import --json` lists them all)")
    return "\n".join(lines)
