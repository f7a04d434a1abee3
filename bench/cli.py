"""``python app.py bench WHAT``: one ``cmd_bench_*`` per benchmark (app.py builds argparse).

Each prints its report and, with ``--json OUT``, writes the same figures as JSON through
``data.jsonout.write_json`` (``-`` for stdout). Bad input raises a ``StudioError`` subclass.

- ``bench clicks``: ``--images DIR --gt FILE [--segmenter NAME] [--max-clicks N] [--random-init]
  [--limit N]`` (first N images only), ``--weights-dir``, ``--device``;
- ``bench proposals``: ``--images DIR --gt FILE --proposer NAME [--project DIR] [--good N]
  [--min-score S] [--segmenter NAME]``, ``--weights-dir``, ``--device``;
- ``bench export``: ``[--n N] [--seed S]``;
- ``bench train``: ``[--n-train N] [--n-test N] [--budget-min MIN] [--imgsz PX] [--overhead] [--seed S]
  [--device D]``;
- ``bench store``: ``[--n N ...] [--size WxH] [--repeats K] [--edits E] [--seed S] [--segmenter NAME]
  [--random-init]``;
- ``bench ui``: ``[--project DIR] [--clicks N] [--segmenter NAME]``, ``--weights-dir``, ``--device``.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

from annotate.segmenters.registry import create_segmenter
from bench import clicks, export, importing, loop, proposals, roundtrip, store, train, ui
from data.cli import progress_bar
from data.errors import InputError
from data.jsonout import write_json
from data.store import Project


def cmd_bench_clicks(args: argparse.Namespace) -> int:
    if args.max_clicks < 1:
        raise InputError("--max-clicks must be at least 1")
    images = clicks.load_gt(args.images, args.gt)
    if args.limit:
        images = images[: args.limit]
    seg = create_segmenter(
        args.segmenter, getattr(args, "weights_dir", None), getattr(args, "device", "auto"),
        random_init=bool(getattr(args, "random_init", False)),
    )
    random_weights = bool(getattr(seg, "random_weights", False))
    rep = clicks.run_bench(seg, images, max_clicks=args.max_clicks, random_weights=random_weights)
    print(clicks.format_report(rep))
    write_json(asdict(rep), getattr(args, "json", None))
    return 0


def cmd_bench_proposals(args: argparse.Namespace) -> int:
    with progress_bar("bench proposals") as progress:
        result = proposals.bench_proposals(
            args.images, args.gt, args.proposer, good=args.good, min_score=args.min_score,
            segmenter_name=getattr(args, "segmenter", None), weights_dir=getattr(args, "weights_dir", None),
            device=getattr(args, "device", "auto"), project=getattr(args, "project", None), progress=progress,
        )
    print(proposals.format_report(result))
    write_json(asdict(result), getattr(args, "json", None))
    return 0


def cmd_bench_export(args: argparse.Namespace) -> int:
    results = export.run_bench(args.n, args.seed, bar=progress_bar)
    write_json(results, getattr(args, "json", None))
    return 0


def cmd_bench_loop(args: argparse.Namespace) -> int:
    base = loop.LoopSettings(budget_actions=args.budget_actions, budget_min=args.budget_min, policy=args.policy,
                             segmenter=args.segmenter, seed=args.seed, imgsz=args.imgsz, device=args.device)
    # The baseline beside the assisted run; "least sure first" beside "in order" (the baseline has no
    # model to be unsure, so its order is the seeded one either way and it runs once).
    modes = [(True, args.policy)] + ([(True, "order")] if args.policy != "order" else []) + [(False, "order")]
    if args.no_assist:
        modes = [(False, "order")]
    results = [loop.run_loop(args.images, args.gt, args.test_images, args.test_gt, replace(base, assist=a, policy=p))
               for a, p in modes]
    print(loop.format_report(results))
    write_json({"settings": asdict(base), "runs": results}, getattr(args, "json", None))
    return 0


def cmd_bench_roundtrip(args: argparse.Namespace) -> int:
    results = roundtrip.run_roundtrip(Path(args.images), Path(args.gt))
    write_json(results, getattr(args, "json", None))
    return 0


def cmd_bench_import(args: argparse.Namespace) -> int:
    results = importing.run_bench(args.categories, args.images, args.annotations, args.seed)
    write_json(results, getattr(args, "json", None))
    return 0


def cmd_bench_train(args: argparse.Namespace) -> int:
    if getattr(args, "threads_compare", False):
        report = train.run_threads(args)
    else:
        report = train.run_overhead(args) if getattr(args, "overhead", False) else train.run_bench(args)
    print(train.format_report(report))
    write_json(report, getattr(args, "json", None))
    return 0


def cmd_bench_ui(args: argparse.Namespace) -> int:
    project = Project(args.project) if getattr(args, "project", None) else None
    r = ui.run_bench_ui(project, int(args.clicks), getattr(args, "segmenter", None),
                        getattr(args, "weights_dir", None), getattr(args, "device", "auto"),
                        with_round=bool(getattr(args, "with_round", False)))
    print(ui.format_bench(r))
    write_json(r, getattr(args, "json", None))
    return 0


def cmd_bench_store(args: argparse.Namespace) -> int:
    try:
        width, height = (int(v) for v in str(args.size).lower().split("x"))
    except ValueError as err:
        raise InputError(f"--size must be WIDTHxHEIGHT (for example 4000x3000), got {args.size!r}.") from err
    seg = create_segmenter(getattr(args, "segmenter", None) or "classical", getattr(args, "weights_dir", None),
                           getattr(args, "device", "auto"), random_init=bool(getattr(args, "random_init", False)))
    r = store.run_bench(seg, tuple(args.n), width, height, repeats=args.repeats, edits=args.edits, seed=args.seed)
    write_json(r, getattr(args, "json", None))
    return 0


def cmd_bench_hostile(args: argparse.Namespace) -> int:
    from bench import hostile  # torch

    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp:
        r = hostile.run(Path(tmp), sessions=args.sessions, clicks=args.clicks, seed=args.seed)
    print(hostile.format_report(r))
    write_json(r, getattr(args, "json", None))
    s = r["summary"]
    return 0 if not (s["server_crashes_or_500"] or s["files_written_outside"] or s["code_executed_from_weights"]) else 1
