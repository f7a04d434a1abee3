"""Command-line functions for the data subcommands: sample, import, export, stats.

``app.py`` builds argparse and calls ``cmd_xxx(args) -> int``. Bad input raises a
``StudioError`` subclass (app.py prints its one-line message and exits 2).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from data.export import export_project, not_done_message
from data.import_report import summary
from data.importers import import_sources
from data.jsonout import write_json
from data.sample import generate
from data.store import Project

LOG_EVERY_S = 10.0  # a progress line at most this often when stderr is a log, not a terminal


@contextmanager
def progress_bar(desc: str, log_every_s: float = LOG_EVERY_S) -> Iterator[Callable[[int, int], None]]:
    """A tqdm bar on stderr driven by ``progress(done, total)`` callbacks. When stderr is not a
    terminal (a log, a pipe) a plain line is written at most every ``log_every_s`` seconds, and
    at the end, instead of a redrawn bar at every update."""
    if not sys.stderr.isatty():
        yield _log_lines(desc, log_every_s)
        return
    bar = tqdm(desc=desc, file=sys.stderr, unit="img", leave=False)

    def progress(done: int, total: int) -> None:
        if bar.total != total:
            bar.total = total
        bar.n = done
        bar.refresh()

    try:
        yield progress
    finally:
        bar.close()


def bar_options() -> dict[str, object]:
    """tqdm settings for stderr as it is: a redrawn bar on a terminal; in a log, an update at most
    every ``LOG_EVERY_S`` seconds (tqdm would otherwise write a line per update)."""
    if sys.stderr.isatty():
        return {"file": sys.stderr, "leave": False}
    return {"file": sys.stderr, "leave": True, "mininterval": LOG_EVERY_S, "maxinterval": 10 * LOG_EVERY_S,
            "ascii": True}


def _log_lines(desc: str, every_s: float) -> Callable[[int, int], None]:
    """``progress(done, total)`` as a line ("importing: 40/120 (33%), 1.2 min left") now and then."""
    t0 = time.monotonic()
    last = [-math.inf]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] < every_s and done < total:
            return
        last[0] = now
        left = (now - t0) * (total - done) / done if done else math.nan
        eta = "" if math.isnan(left) or done >= total else f", {left / 60:.1f} min left"
        pct = f" ({100 * done / total:.0f}%)" if total else ""
        print(f"{desc}: {done}/{total}{pct}{eta}", file=sys.stderr, flush=True)

    return progress


# ----------------------------------------------------------------- sample
def cmd_sample(args: argparse.Namespace) -> int:
    with progress_bar("rendering") as progress:
        rep = generate(Path(args.out), n=args.n, seed=args.seed, progress=progress)
    print(f"wrote {rep.n_images} images ({rep.n_good} good, {rep.n_instances} defects: "
          + ", ".join(f"{k} {v}" for k, v in rep.instances_per_class.items()) + f") to {rep.out_dir}")
    print(f"best single global threshold: IoU {rep.best_threshold_iou:.3f} "
          f"(grey {rep.best_threshold_direction} {rep.best_threshold}); generator version {rep.version}")
    write_json({**rep.__dict__, "out_dir": str(rep.out_dir)}, getattr(args, "json", None))
    return 0


# ----------------------------------------------------------------- import
def cmd_import(args: argparse.Namespace) -> int:
    project = Project.open_or_create(args.project)
    with progress_bar("importing") as progress:
        rep = import_sources(project, [Path(s) for s in args.sources], progress=progress,
                             empty_as=getattr(args, "empty_as", "unlabeled"),
                             skip_crowd=getattr(args, "skip_crowd", False))
    for line in summary(rep, project.root):
        print(line)
    write_json({"imported": rep.imported, "duplicates": list(rep.duplicates),
                "rejected": [list(r) for r in rep.rejected], "notes": [list(n) for n in rep.notes],
                "annotations_added": rep.annotations_added, "labels_merged": rep.labels_merged,
                "labels_already_there": rep.labels_already_there, "proposals_added": rep.proposals_added,
                "background": rep.background, "empty_images": rep.empty_images, "empty_as": rep.empty_as,
                "skipped": list(rep.skipped)},
               getattr(args, "json", None))
    return 0 if rep.imported or rep.duplicates else 1


# ----------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    project = Project(args.project)
    with progress_bar(f"export {args.format}") as progress:
        res = export_project(project, args.format, Path(args.out), val_fraction=args.val_fraction, seed=args.seed,
                             zip=args.zip, rle=args.rle, include_proposed=args.include_proposed, progress=progress)
    print(f"exported {sum(res.n_images.values())} images (train {res.n_images['train']}, val {res.n_images['val']}), "
          f"{res.n_annotations} annotations, classes {', '.join(res.class_names)} to {res.out_path}")
    left = not_done_message(*res.not_done, f"`python app.py mark-done --project {args.project}` marks those whose "
                            "proposals are all reviewed as done.")
    if left:
        print(left)
    if res.holes_filled:
        print(f"{res.holes_filled} masks had holes, filled: polygons cannot hold them (--rle keeps them)"
              if args.format == "coco" else f"{res.holes_filled} masks had holes, filled: polygons cannot hold them")
    if res.multi_part:
        print(f"{res.multi_part} masks in several parts: " + ("one polygon per part" if args.format == "coco" else
              "each written as one polygon, its parts joined by a one-pixel bridge (YOLO holds one per instance)"))
    print(f"content hash {res.content_hash}")
    write_json({"out_path": str(res.out_path), "n_images": res.n_images,
                "n_annotations": res.n_annotations, "class_names": list(res.class_names),
                "content_hash": res.content_hash, "format": args.format,
                "holes_filled": res.holes_filled, "multi_part": res.multi_part,
                "not_done": {"images": res.not_done[0], "accepted_annotations": res.not_done[1]}}, getattr(args, "json", None))
    return 0


# ------------------------------------------------------------------ mark-done
def cmd_mark_done(args: argparse.Namespace) -> int:
    """Mark done the images that hold accepted annotations and no unreviewed proposals."""
    project = Project(args.project)
    marked, waiting = project.mark_labeled_done()
    print(f"marked {marked} images done" + (f"; {waiting} still have proposals to review (Review screen, or "
                                             f"`python app.py autolabel` to re-run)" if waiting else ""))
    write_json({"marked": marked, "waiting_for_review": waiting}, getattr(args, "json", None))
    return 0


# ------------------------------------------------------------------ stats
def format_stats(stats: dict) -> str:
    im = stats["images"]
    lines = [f"project {stats['project']}",
             f"images: {im['total']} (unlabeled {im['unlabeled']}, done {im['done']}, good {im['good']}, "
             f"with proposals {im['with_proposals']})", ""]
    width = max([len("class")] + [len(c) for c in stats["classes"]])
    lines.append(f"{'class':<{width}}  {'accepted':>8}  {'proposed':>8}  {'rejected':>8}")
    for name in stats["classes"]:
        row = stats["annotations"][name]
        lines.append(f"{name:<{width}}  {row['accepted']:>8}  {row['proposed']:>8}  {row['rejected']:>8}")
    return "\n".join(lines)


def cmd_stats(args: argparse.Namespace) -> int:
    stats = Project(args.project).stats()
    if getattr(args, "json", None) == "-":  # the JSON is the whole output
        write_json(stats, "-")
        return 0
    print(format_stats(stats))
    write_json(stats, getattr(args, "json", None))
    return 0
