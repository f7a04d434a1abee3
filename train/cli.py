"""Command-line functions: train, runs, predict, export-onnx, models (``bench train`` is in ``bench.cli``).

``app.py`` builds argparse and calls ``cmd_xxx(args) -> int``; bad input raises a
``StudioError`` subclass (app.py prints the one-line message and exits 2).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
from tqdm import tqdm

from annotate.proposers.registry import proposer_statuses
from annotate.segmenters.registry import SPECS, default_segmenter_name, model_statuses
from data.cli import bar_options
from data.coco import image_to_coco, write_results
from data.errors import InputError, StudioError
from data.export import not_done_counts, not_done_message
from data.jsonout import write_json
from data.store import Project
from runtime.status import format_table
from train import advice, jobs, predict, runs
from train.models import TrainSettings, base_model_statuses, validate_settings

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    """TrainSettings from parsed flags; flags left at None keep the CPU-laptop defaults."""
    base = TrainSettings()
    task = getattr(args, "task", None) or base.task
    model = getattr(args, "model", None) or ("yolov8n-seg" if task == "segment" else "yolov8n")
    fields: dict[str, Any] = {"task": task, "model": model}
    for name in ("epochs", "imgsz", "batch", "device", "patience", "seed", "preset", "val_fraction", "workers",
                 "weights_dir", "threads"):
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    if getattr(args, "time_min", None) is not None:
        fields["time_hours"] = float(args.time_min) / 60 or None  # 0: no time budget
    if fields.get("weights_dir") is not None:
        fields["weights_dir"] = str(fields["weights_dir"])
    return TrainSettings(**{**base.to_json(), **fields})


def cmd_train(args: argparse.Namespace) -> int:
    """Queue a run, start it, and follow it in the foreground (Ctrl-C cancels it)."""
    project = Project(args.project)
    settings = validate_settings(settings_from_args(args))
    left = not_done_message(*not_done_counts(project),
                            f"`python app.py mark-done --project {args.project}` marks them done.")
    if left:
        print(f"NOTE: {left}", flush=True)
    for a in advice.check(project, settings):
        fix = f" Try: {advice.flags(a.change)}" if a.change else ""
        print(f"WARNING: {a.problem}{fix}", flush=True)
    run_id = jobs.submit(project, settings)
    print(f"run {run_id}", flush=True)
    rec = follow(project, run_id)
    _print_final(rec)
    if rec.status != "succeeded":
        raise StudioError(f"run {run_id} {rec.status}: {rec.reason or 'no reason recorded'} (log: {jobs.log_path(project, run_id)})")
    return 0


def follow(project: Project, run_id: str, poll_s: float = 1.0, out: Any = None) -> jobs.RunRecord:
    """Print a run's notice, epochs and status changes until it ends; Ctrl-C cancels it."""
    out = out or sys.stdout
    shown_epochs, shown_notice, waiting = 0, False, False
    try:
        while True:
            jobs.refresh(project)
            rec = jobs.get(project, run_id)
            if rec.status == "queued" and not waiting:
                print(f"waiting: another run of this project is training; {run_id} is queued", file=out, flush=True)
                waiting = True
            if rec.notice and not shown_notice:
                print(f"NOTICE: {rec.notice}", file=out, flush=True)
                shown_notice = True
            for ep in runs.epochs(project, run_id)[shown_epochs:]:
                print(format_epoch(ep, rec), file=out, flush=True)
                shown_epochs = ep.epoch
            if rec.finished:
                return rec
            time.sleep(poll_s)
    except KeyboardInterrupt:
        print(f"\ncancelling run {run_id} ...", file=out, flush=True)
        return jobs.cancel(project, run_id)


def format_epoch(ep: runs.EpochMetrics, rec: jobs.RunRecord) -> str:
    m = ep.metrics
    losses = " ".join(f"{k.split('/')[1]} {v:.3f}" for k, v in m.items() if k.startswith("train/"))
    parts = [f"epoch {ep.epoch}/{rec.epochs or rec.settings.epochs}", losses]
    for key, label in (("metrics/mAP50(B)", "box mAP50"), ("metrics/mAP50-95(B)", "box mAP50-95"),
                       ("metrics/mAP50(M)", "mask mAP50"), ("metrics/mAP50-95(M)", "mask mAP50-95")):
        if key in m:
            parts.append(f"{label} {m[key]:.3f}")
    if ep.epoch_s is not None:
        parts.append(f"{ep.epoch_s:.1f}s")
    if rec.eta_s is not None and rec.eta_s == rec.eta_s:  # not NaN
        parts.append(f"ETA {_duration(rec.eta_s)}")
    return "  ".join(p for p in parts if p)


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _print_final(rec: jobs.RunRecord) -> None:
    print(f"run {rec.id} {rec.status}" + (f": {rec.reason}" if rec.reason else "") + f" in {_duration(rec.wall_s)}")
    if rec.metrics:
        short = runs.short_metrics(rec.metrics)
        print("final (best.pt on the val split): " + "  ".join(
            f"{k} {v:.3f}" for k, v in short.items() if "map" in k or "precision" in k or "recall" in k))
    if rec.best_weights:
        print(f"weights: {rec.best_weights}")


def cmd_runs(args: argparse.Namespace) -> int:
    project = Project(args.project)
    jobs.refresh(project)
    if getattr(args, "delete", None):
        runs.delete(project, args.delete)
        print(f"deleted run {args.delete}")
        return 0
    if getattr(args, "onnx", None):
        print(runs.export_onnx(project, args.onnx))
        return 0
    if getattr(args, "cancel", None):
        rec = jobs.cancel(project, args.cancel)
        print(f"run {rec.id}: {rec.status}")
        return 0
    if getattr(args, "resume", None):
        jobs.resume(project, args.resume)
        follow(project, args.resume)
        return 0
    rows = runs.compare(project)
    cols = ("id", "status", "task", "model", "epochs", "imgsz", "dataset", "box_map50", "mask_map50", "wall_s")
    table = [[_cell(r[c]) for c in cols] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in table]) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in table:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))
    if not rows:
        print("(no runs yet: start one with 'python app.py train --project DIR')")
    write_json([runs.as_dict(r) for r in jobs.list_runs(project)], getattr(args, "json", None))
    return 0


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def cmd_export_onnx(args: argparse.Namespace) -> int:
    project = Project(args.project)
    path = runs.export_onnx(project, args.run, imgsz=getattr(args, "imgsz", None))
    print(path)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    """Rendered images and COCO results (``results.json`` + ``images.json``) for a file or folder."""
    project = Project(args.project)
    source = Path(args.source)
    files = _image_files(source)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    pred = predict.predictor_for(project, args.run, getattr(args, "device", None) or "auto")
    colors = predict.class_colors(project, args.run, pred.names)
    images, results, total_ms = [], [], 0.0
    for image_id, path in enumerate(_progress(files, "predict"), 1):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            print(f"skipped {path}: not a readable image", file=sys.stderr)
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        raw = pred.predict_raw(rgb, conf=args.conf, iou=args.iou)
        total_ms += raw.inference_ms
        shown = predict.render(rgb, raw, colors)
        cv2.imwrite(str(out / f"{path.stem}_pred.png"), cv2.cvtColor(shown.image, cv2.COLOR_RGB2BGR))
        images.append(image_to_coco(image_id, str(path), raw.width, raw.height))
        results.extend(coco_results(raw, image_id))
    write_results(out, images, results, pred.names)
    print(f"{len(images)} images, {len(results)} detections, {total_ms / max(len(images), 1):.0f} ms/image -> {out}")
    return 0


def coco_results(raw: predict.RawPrediction, image_id: int) -> list[dict[str, Any]]:
    """COCO detection results, rounded; category ids are model class index + 1 (as in images.json);
    RLE ``segmentation`` written from each crop (``Annotations.to_coco_results``)."""
    return raw.annotations.to_coco_results(image_id, {k: k + 1 for k in range(len(raw.names))}, rounded=True)


def _image_files(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_EXTS)
        if files:
            return files
        raise InputError(f"no images ({', '.join(IMAGE_EXTS)}) found in {source}.")
    raise InputError(f"--source {source} does not exist; pass an image file or a folder of images.")


def _progress(items: list, desc: str) -> Any:
    return tqdm(items, desc=desc, **bar_options())


def cmd_models(args: argparse.Namespace) -> int:
    """Segmenters, proposers and base models, with the state of their weight files."""
    weights, device = getattr(args, "weights_dir", None), getattr(args, "device", "auto")
    default, reason = default_segmenter_name(weights, device)
    sections = [
        ("segmenter", model_statuses(weights, device)),
        ("proposer", proposer_statuses(weights, device)),
        ("base model", base_model_statuses(weights, device)),
    ]
    for title, rows in sections:
        print(format_table(title, rows, default))
        print()
    print(f"default segmenter: {default}: {reason}")
    if SPECS[default].weights is None:
        print(f"note: '{default}' is the weight-free fallback; masks from a SAM model are better.")
    if getattr(args, "json", None):
        write_json({"default": default, "reason": reason,
                    "models": [asdict(r) for _, rows in sections for r in rows]}, args.json)
    return 0
