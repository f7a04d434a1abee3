"""Command-line entry point of ``autolabel`` (app.py wires argparse here; ``bench proposals`` is in ``bench.cli``)."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

from tqdm import tqdm

from annotate.autolabel import autolabel, format_report
from annotate.cache import embeddings_dir
from annotate.proposers.registry import DEFAULT_MIN_SCORE, canonical_name, create_proposer
from annotate.segmenters.registry import create_segmenter
from data.cli import bar_options
from data.errors import InputError
from data.store import Project


def add_autolabel_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--project", required=True, help="project folder")
    p.add_argument("--proposer", required=True,
                   help="anomaly, yoloworld (size from the project's setting), yoloworld-s|-m|-l|-x, or run:ID")
    p.add_argument("--select", choices=("unlabeled", "all"), default="unlabeled",
                   help="unlabeled images only (default), or every image not marked good")
    p.add_argument("--min-score", type=float, default=None, help="drop proposals scoring below this")
    p.add_argument("--segmenter", default=None, help="segmenter drawing the masks from the boxes (default: none)")
    p.add_argument("--class", dest="class_name", default=None,
                   help="class for every proposal (anomaly: default is the nearest class by appearance)")
    p.add_argument("--redo", action="store_true", help="propose again on images this proposer already did")
    p.add_argument("--weights-dir", default=None, help="weights folder (env DEFECT_STUDIO_WEIGHTS)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")


def _bar(total: int, desc: str) -> tqdm:
    return tqdm(total=total, desc=desc, unit="img", **bar_options())


def cmd_autolabel(args: argparse.Namespace) -> int:
    project = Project(args.project)
    class_id = None
    if getattr(args, "class_name", None):
        rec = project.class_by_name(args.class_name)
        if rec is None:
            names = ", ".join(c.name for c in project.classes()) or "none yet"
            raise InputError(f"class '{args.class_name}' is not in the project (classes: {names}).")
        class_id = rec.id
    name = canonical_name(args.proposer, project)
    proposer = create_proposer(name, project=project, weights_dir=args.weights_dir, device=args.device,
                               class_id=class_id)
    segmenter = None
    if args.segmenter:
        segmenter = create_segmenter(args.segmenter, weights=args.weights_dir, device=args.device,
                                     cache_dir=_embeddings_dir(project))
    min_score = args.min_score
    if min_score is None:
        min_score = DEFAULT_MIN_SCORE.get(name.split("-")[0].split(":")[0], 0.0)
    cancel = threading.Event()
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = _bar(total, name)
        bar.update(done - bar.n)

    try:
        report = autolabel(project, proposer, segmenter, select=args.select, min_score=min_score,
                           class_id=class_id, progress=progress, cancel=cancel, redo=args.redo)
    except KeyboardInterrupt:
        # Everything written so far is kept, one transaction per image: a re-run resumes.
        print("interrupted: the images done so far are kept; run the same command to resume.", file=sys.stderr)
        return 130
    finally:
        if bar is not None:
            bar.close()
    mode = getattr(getattr(proposer, "model", None), "last_mode", "")
    print(format_report(report))
    if mode:
        print(f"anomaly model: {mode} (last image)")
    return 0


def _embeddings_dir(project: Project) -> Path:
    return embeddings_dir(project.root)
