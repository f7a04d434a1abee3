"""``python app.py models`` and ``python app.py bench clicks``.

Argparse (wired by ``app.py``; see ``add_models_args`` / ``add_bench_clicks_args``):

- ``models``: ``--weights-dir DIR`` (str, None), ``--device {auto,cpu,cuda,mps}`` (auto),
  ``--json OUT`` (str, None).
- ``bench clicks``: ``--images DIR`` (required), ``--gt FILE`` (required), ``--segmenter NAME``
  (None = the default), ``--max-clicks N`` (int, 20), ``--json OUT``, ``--weights-dir``,
  ``--device``, ``--random-init`` (flag: SAM with random weights, latency only),
  ``--limit N`` (int, None: first N images only).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

from data.errors import InputError


def add_models_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights-dir", default=None, help="weights folder (default: $DEFECT_STUDIO_WEIGHTS or user data)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--json", default=None, metavar="OUT", help="write the table as JSON to OUT")


def add_bench_clicks_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--gt", required=True, help="COCO ground truth with masks")
    p.add_argument("--segmenter", default=None, help="registry name (default: the default segmenter)")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--json", default=None, metavar="OUT")
    p.add_argument("--weights-dir", default=None)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"])
    p.add_argument("--random-init", action="store_true", help="SAM backends with random weights: latency only")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")


def cmd_models(args: argparse.Namespace) -> int:
    """Segmenters, proposers and base models, with the state of their weight files."""
    from annotate.proposers.registry import proposer_statuses
    from annotate.segmenters.registry import SPECS, default_segmenter_name, model_statuses
    from train.models import base_model_statuses

    weights, device = getattr(args, "weights_dir", None), getattr(args, "device", "auto")
    default, reason = default_segmenter_name(weights, device)
    sections = [
        ("segmenter", model_statuses(weights, device)),
        ("proposer", proposer_statuses(weights, device)),
        ("base model", base_model_statuses(weights, device)),
    ]
    for title, rows in sections:
        _print_status_table(title, rows, default)
        print()
    print(f"default segmenter: {default}: {reason}")
    if SPECS[default].weights is None:
        print(f"note: '{default}' is the weight-free fallback; masks from a SAM model are better.")
    if getattr(args, "json", None):
        doc = {"default": default, "reason": reason,
               "models": [asdict(r) for _, rows in sections for r in rows]}
        text = json.dumps(doc, indent=2)
        print(text) if args.json == "-" else Path(args.json).write_text(text)
    return 0


def _print_status_table(title: str, rows: list, default: str) -> None:
    w = max(len(r.filename) for r in rows)
    n = max(len(r.name) for r in rows) + 2
    print(f"{title:<{n}} {'state':<13} {'file':<{w}}  {'device':<6} folder / note")
    for r in rows:
        mark = " *" if r.name == default else ""
        where = r.folder if r.state != "builtin" else "-"
        note = f"  ({r.note})" if r.note else ""
        print(f"{r.name + mark:<{n}} {r.state:<13} {r.filename:<{w}}  {r.device:<6} {where}{note}")


def cmd_bench_clicks(args: argparse.Namespace) -> int:
    from annotate.bench_clicks import format_report, load_gt, run_bench
    from annotate.segmenters.registry import create_segmenter

    if args.max_clicks < 1:
        raise InputError("--max-clicks must be at least 1")
    images = load_gt(args.images, args.gt)
    if args.limit:
        images = images[: args.limit]
    seg = create_segmenter(
        args.segmenter, getattr(args, "weights_dir", None), getattr(args, "device", "auto"),
        random_init=bool(getattr(args, "random_init", False)),
    )
    random_weights = bool(getattr(seg, "random_weights", False))
    rep = run_bench(seg, images, max_clicks=args.max_clicks, random_weights=random_weights)
    print(format_report(rep))
    if getattr(args, "json", None):
        Path(args.json).write_text(rep.to_json())
    return 0
