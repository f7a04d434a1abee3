"""Defect Studio: label industrial defects with SAM, review proposals, export, fine-tune YOLO.

This file is wiring only: it parses the command line and calls one function per
subcommand. Heavy packages (torch, ultralytics, gradio) are imported inside those
functions, so ``python app.py --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from pathlib import Path

from data.errors import StudioError
from runtime import checkpoints

DEFAULT_PROJECT = Path("projects/sample")

# subcommand -> "module:function"; each function takes the parsed args and returns an exit code.
COMMANDS = {
    "serve": "ui.cli:cmd_serve",
    "sample": "data.cli:cmd_sample",
    "import": "data.cli:cmd_import",
    "export": "data.cli:cmd_export",
    "stats": "data.cli:cmd_stats",
    "mark-done": "data.cli:cmd_mark_done",
    "models": "train.cli:cmd_models",
    "autolabel": "annotate.proposers.cli:cmd_autolabel",
    "train": "train.cli:cmd_train",
    "runs": "train.cli:cmd_runs",
    "predict": "train.cli:cmd_predict",
    "bench clicks": "bench.cli:cmd_bench_clicks",
    "bench proposals": "bench.cli:cmd_bench_proposals",
    "bench export": "bench.cli:cmd_bench_export",
    "bench import": "bench.cli:cmd_bench_import",
    "bench loop": "bench.cli:cmd_bench_loop",
    "bench roundtrip": "bench.cli:cmd_bench_roundtrip",
    "bench train": "bench.cli:cmd_bench_train",
    "bench ui": "bench.cli:cmd_bench_ui",
    "bench store": "bench.cli:cmd_bench_store",
    "bench hostile": "bench.cli:cmd_bench_hostile",
}


# ----------------------------------------------------------------- shared flags
def _project(p: argparse.ArgumentParser, required: bool = True, default: Path | None = None) -> None:
    p.add_argument("--project", type=Path, required=required, default=default, metavar="DIR",
                   help="project folder" + (f" (default: {default})" if default else ""))


def _models(p: argparse.ArgumentParser, segmenter: bool = True) -> None:
    p.add_argument("--weights-dir", metavar="DIR", default=None,
                   help="folder with model weight files (default: $DEFECT_STUDIO_WEIGHTS or the user data folder)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto",
                   help="where models run (default: auto)")
    if segmenter:
        p.add_argument("--segmenter", metavar="NAME", default=None,
                       help="segmenter registry name (default: best available; see 'python app.py models')")


def _json(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", metavar="OUT", default=None, help="also write machine-readable results to OUT ('-' for stdout)")


def _seed(p: argparse.ArgumentParser, default: int = 0) -> None:
    p.add_argument("--seed", type=int, default=default, help=f"random seed (default: {default})")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python app.py",
        description="Defect Studio: click-to-mask labeling, proposals, export and YOLO fine-tuning. "
        "With no subcommand, serves the app on the sample project.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("serve", help="start the web app (the default command)")
    _serve_args(p)

    p = sub.add_parser("sample", help="write the synthetic bottle-defect dataset")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--n", type=int, default=50, help="number of images (default: 50)")
    _seed(p)
    _json(p)

    p = sub.add_parser("import", help="import images, folders, zips, COCO JSON or YOLO datasets")
    _project(p)
    p.add_argument("sources", nargs="+", type=Path, metavar="SRC", help="image file, folder, .zip, COCO .json or YOLO folder")
    p.add_argument("--empty-as", choices=("unlabeled", "good"), default="unlabeled",
                   help="what a COCO image without annotations becomes: unlabeled (default: it may not be labelled "
                        "yet) or good (the dataset is complete: it is a background image)")
    p.add_argument("--skip-crowd", action="store_true",
                   help="leave COCO crowd regions (iscrowd=1) out instead of importing them as masks")
    _json(p)

    p = sub.add_parser("export", help="export accepted labels as COCO or YOLO")
    _project(p)
    p.add_argument("--format", required=True, choices=("coco", "yolo-detect", "yolo-segment"))
    p.add_argument("--out", type=Path, required=True, metavar="PATH", help="output folder (or .zip with --zip)")
    p.add_argument("--val-fraction", type=float, default=0.2, metavar="F", help="validation share (default: 0.2)")
    _seed(p)
    p.add_argument("--zip", action="store_true", help="write one zip archive")
    p.add_argument("--rle", action="store_true", help="COCO masks as RLE (keeps holes) instead of polygons")
    p.add_argument("--include-proposed", action="store_true", help="also export proposals not yet reviewed")
    _json(p)

    p = sub.add_parser("mark-done", help="mark done the images with accepted labels and no proposal left to review")
    _project(p)
    _json(p)

    p = sub.add_parser("stats", help="images, classes and annotations by class and status")
    _project(p)
    _json(p)

    p = sub.add_parser("models", help="list segmenters, proposers and base models, and whether their weights are here")
    _models(p, segmenter=False)
    _json(p)

    p = sub.add_parser("autolabel", help="propose labels for many images, for review")
    _project(p)
    p.add_argument("--proposer", required=True, metavar="NAME", help="yoloworld[-s|-m|-l|-x], anomaly, or run:ID")
    p.add_argument("--select", choices=("unlabeled", "all"), default="unlabeled",
                   help="images not yet done (default), or done ones too ('all'; good images never get proposals)")
    p.add_argument("--min-score", type=float, default=None, metavar="S", help="drop proposals scoring below S")
    p.add_argument("--class", dest="class_name", default=None, metavar="NAME",
                   help="class given to proposals of class-agnostic proposers (anomaly)")
    p.add_argument("--redo", action="store_true", help="re-run images this proposer already visited")
    _models(p)

    p = sub.add_parser("train", help="fine-tune a YOLO detect or segment model on the accepted labels")
    _project(p)
    _train_args(p)

    p = sub.add_parser("runs", help="list, compare, cancel, resume, delete or export training runs")
    _project(p)
    act = p.add_mutually_exclusive_group()
    act.add_argument("--delete", metavar="ID", help="delete run ID and its files")
    act.add_argument("--onnx", metavar="ID", help="export run ID's best weights to ONNX")
    act.add_argument("--cancel", metavar="ID", help="cancel a queued or running run")
    act.add_argument("--resume", metavar="ID", help="resume an interrupted run from its last checkpoint")
    _json(p)

    p = sub.add_parser("predict", help="predict with a trained run and write rendered images and COCO results")
    _project(p)
    p.add_argument("--run", required=True, metavar="ID", help="run id (see 'python app.py runs')")
    p.add_argument("--source", type=Path, required=True, metavar="PATH", help="image file or folder")
    p.add_argument("--out", type=Path, required=True, metavar="DIR")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold (default: 0.25)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default: 0.7)")
    _models(p, segmenter=False)

    bench = sub.add_parser("bench", help="measure quality and speed").add_subparsers(dest="bench", metavar="WHAT", required=True)
    p = bench.add_parser("clicks", help="interactive segmentation: NoC@85/90, mIoU per click, latency")
    p.add_argument("--images", type=Path, required=True, metavar="DIR")
    p.add_argument("--gt", type=Path, required=True, metavar="FILE", help="COCO ground truth")
    p.add_argument("--max-clicks", type=int, default=20)
    p.add_argument("--random-init", action="store_true", help="SAM backends with random weights (latency only)")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="only the first N images (with instances)")
    _models(p)
    _json(p)

    p = bench.add_parser("proposals", help="proposal recall/precision and mask mIoU against ground truth")
    p.add_argument("--images", type=Path, required=True, metavar="DIR")
    p.add_argument("--gt", type=Path, required=True, metavar="FILE", help="COCO ground truth")
    p.add_argument("--proposer", required=True, metavar="NAME", help="anomaly, yoloworld[-s|-m|-l|-x], or run:ID")
    _project(p, required=False)
    p.add_argument("--good", type=int, default=5, metavar="N", help="reference images without defects (default: 5)")
    p.add_argument("--min-score", type=float, default=None, metavar="S")
    _models(p)
    _json(p)

    p = bench.add_parser("export", help="export throughput for each format")
    p.add_argument("--n", type=int, default=1000, help="number of images (default: 1000)")
    _seed(p)
    _json(p)

    p = bench.add_parser("import", help="import time of a large COCO dataset (many categories and annotations)")
    p.add_argument("--categories", type=int, default=3000, help="number of categories (default: 3000)")
    p.add_argument("--images", type=int, default=1000, help="number of 640x480 images (default: 1000)")
    p.add_argument("--annotations", type=int, default=20000, help="number of polygon annotations (default: 20000)")
    _seed(p)
    _json(p)

    p = bench.add_parser("loop", help="a simulated user from zero labels to a model: actions, time, test mAP")
    p.add_argument("--images", type=Path, required=True, metavar="DIR", help="the images the user labels")
    p.add_argument("--gt", type=Path, required=True, metavar="FILE", help="their COCO ground truth (the user's eyes)")
    p.add_argument("--test-images", type=Path, required=True, metavar="DIR", help="held-out images")
    p.add_argument("--test-gt", type=Path, required=True, metavar="FILE", help="their COCO ground truth")
    p.add_argument("--budget-actions", type=int, default=150, metavar="N", help="user actions (default: 150)")
    p.add_argument("--budget-min", type=float, default=30.0, metavar="M", help="wall minutes (default: 30)")
    p.add_argument("--no-assist", action="store_true", help="only the baseline: no proposals, one training")
    p.add_argument("--policy", choices=("order", "uncertainty"), default="order", help="next image (default: order)")
    p.add_argument("--imgsz", type=int, default=None, help="training image size (default: the app's)")
    _models(p)
    _seed(p)
    _json(p)

    p = bench.add_parser("roundtrip", help="what each export format keeps of the masks, read by its own reader")
    p.add_argument("--images", type=Path, required=True, metavar="DIR", help="folder of the ground-truth images")
    p.add_argument("--gt", type=Path, required=True, metavar="FILE", help="COCO instances JSON (the masks to export)")
    _json(p)

    p = bench.add_parser("train", help="the whole loop on sample data: import, train from scratch, evaluate")
    p.add_argument("--n-train", type=int, default=80)
    p.add_argument("--n-test", type=int, default=40)
    p.add_argument("--budget-min", type=float, default=15.0, metavar="MIN")
    p.add_argument("--imgsz", type=int, default=None, help="image size (default: the bench's tuned choice)")
    p.add_argument("--overhead", action="store_true", help="seconds per epoch through the app vs bare Ultralytics")
    p.add_argument("--threads-compare", action="store_true",
                   help="seconds per epoch with one CPU thread and with every core, taking turns")
    _seed(p)
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    _json(p)

    p = bench.add_parser("hostile", help="hostile input: label API fuzz on a live server, session load, "
                                         "readers with links and zip bombs, rigged weight files")
    p.add_argument("--sessions", type=int, default=50, help="pages in the session load (default: 50)")
    p.add_argument("--clicks", type=int, default=30, help="clicks per page (default: 30)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None, metavar="OUT", help="also write the results to OUT ('-' for stdout)")
    p = bench.add_parser("store", help="accept, delete, undo and reads on a large image; undo history memory")
    p.add_argument("--n", type=int, nargs="+", default=[1, 50], metavar="N",
                   help="annotations on the image, one run each (default: 1 50)")
    p.add_argument("--size", default="4000x3000", metavar="WxH", help="image size (default: 4000x3000)")
    p.add_argument("--repeats", type=int, default=15, help="runs per timing, the median is reported (default: 15)")
    p.add_argument("--edits", type=int, default=30, help="edits before the undo history is weighed (default: 30)")
    p.add_argument("--random-init", action="store_true",
                   help="a SAM --segmenter with random weights (its candidates and logits weigh as with real ones)")
    _seed(p)
    _models(p)
    _json(p)

    p = bench.add_parser("ui", help="click-to-overlay latency in a headless browser")
    _project(p, required=False)
    p.add_argument("--clicks", type=int, default=30)
    p.add_argument("--with-round", action="store_true",
                   help="also time the clicks while an assist round trains (one thread, low priority), beside idle ones")
    _models(p)
    _json(p)
    return parser


def _serve_args(p: argparse.ArgumentParser) -> None:
    _project(p, required=False, default=DEFAULT_PROJECT)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--auth", default=os.environ.get("DEFECT_STUDIO_AUTH"), metavar="USER:PASS",
                   help="require a login (or set DEFECT_STUDIO_AUTH)")
    p.add_argument("--import-dir", type=Path, default=None, metavar="DIR",
                   help="server-side folder offered for import in the Project screen")
    _models(p)


def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--task", choices=("detect", "segment"), default="segment")
    p.add_argument("--model", default=None, metavar="NAME", help="e.g. yolov8n-seg, yolo11s, or a .pt/.yaml path")
    p.add_argument("--epochs", type=int, default=None, help="at most this many epochs (default: 300)")
    p.add_argument("--time-min", type=float, default=None, metavar="MIN",
                   help="time budget in minutes; 0: epochs only (default: 15)")
    p.add_argument("--imgsz", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="CPU threads; 0: every core (default)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--patience", type=int, default=None)
    p.add_argument("--preset", default=None, help="augmentation preset (default: defects)")
    p.add_argument("--val-fraction", type=float, default=0.2, metavar="F")
    _seed(p)
    _models(p, segmenter=False)


def wire() -> None:
    """Connect the layers that may not import each other: a training run becomes a proposer.

    Imported here, not at the top: like the ``COMMANDS`` table, the entry point loads a room only
    for the command that needs it, so ``python app.py --help`` loads nothing but argparse.
    """
    from train.proposer import register as register_run_proposer

    register_run_proposer()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv or argv[0].startswith("-") and argv[0] not in ("-h", "--help"):
        argv = ["serve", *argv]
    args = parser.parse_args(argv)
    # Never let Ultralytics pip-install packages at run time: offline it hangs, and a
    # labeling server must not change its own environment.
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    checkpoints.enable_safe_yolo()  # before ultralytics is imported: checkpoints load through its allow-list
    key = args.command if args.command != "bench" else f"bench {args.bench}"
    module_name, func_name = COMMANDS[key].split(":")
    wire()
    try:
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(args) or 0)
    except StudioError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into a reader that closed early (``| head``): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush stays quiet
        return 0


if __name__ == "__main__":
    sys.exit(main())
