"""``python app.py bench clicks``.

Argparse (wired by ``app.py``):

- ``bench clicks``: ``--images DIR`` (required), ``--gt FILE`` (required), ``--segmenter NAME``
  (None = the default), ``--max-clicks N`` (int, 20), ``--json OUT``, ``--weights-dir``,
  ``--device``, ``--random-init`` (flag: SAM with random weights, latency only),
  ``--limit N`` (int, None: first N images only).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from data.errors import InputError


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
