"""Command-line functions for the data subcommands: sample, import, export, stats, bench export.

``app.py`` builds argparse and calls ``cmd_xxx(args) -> int``. Bad input raises a
``StudioError`` subclass (app.py prints its one-line message and exits 2).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from data.errors import InputError


@contextmanager
def _bar(desc: str) -> Iterator:
    """A tqdm bar on stderr driven by ``progress(done, total)`` callbacks."""
    from tqdm import tqdm

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


def _write_json(target: str, payload: dict) -> None:
    text = json.dumps(payload, indent=2, sort_keys=True, default=str)
    if target == "-":
        print(text)
    else:
        from data.store import atomic_write_text

        atomic_write_text(Path(target), text + "\n")


# ----------------------------------------------------------------- sample
def cmd_sample(args: argparse.Namespace) -> int:
    from data.sample import generate

    with _bar("rendering") as progress:
        rep = generate(Path(args.out), n=args.n, seed=args.seed, progress=progress)
    print(f"wrote {rep.n_images} images ({rep.n_good} good, {rep.n_instances} defects: "
          + ", ".join(f"{k} {v}" for k, v in rep.instances_per_class.items()) + f") to {rep.out_dir}")
    print(f"best single global threshold: IoU {rep.best_threshold_iou:.3f} "
          f"(grey {rep.best_threshold_direction} {rep.best_threshold}); generator version {rep.version}")
    if getattr(args, "json", None):
        _write_json(args.json, {**rep.__dict__, "out_dir": str(rep.out_dir)})
    return 0


# ----------------------------------------------------------------- import
def cmd_import(args: argparse.Namespace) -> int:
    from data.importers import import_sources
    from data.store import Project

    project = Project.open_or_create(args.project)
    with _bar("importing") as progress:
        rep = import_sources(project, [Path(s) for s in args.sources], progress=progress)
    print(f"imported {rep.imported} images with {rep.annotations_added} annotations into {project.root}")
    if rep.duplicates:
        print(f"{len(rep.duplicates)} duplicates (content already in the project), not imported again:")
        for name in rep.duplicates:
            print(f"  {name}")
    if rep.skipped:
        print(f"{len(rep.skipped)} files of other types skipped")
    if rep.rejected:
        print(f"{len(rep.rejected)} rejected:")
        for name, reason in rep.rejected:
            print(f"  {name}: {reason}")
    if getattr(args, "json", None):
        _write_json(args.json, {"imported": rep.imported, "duplicates": list(rep.duplicates),
                                "rejected": [list(r) for r in rep.rejected],
                                "annotations_added": rep.annotations_added, "skipped": list(rep.skipped)})
    return 0 if rep.imported or rep.duplicates else 1


# ----------------------------------------------------------------- export
def cmd_export(args: argparse.Namespace) -> int:
    from data.export import export_project
    from data.store import Project

    project = Project(args.project)
    with _bar(f"export {args.format}") as progress:
        res = export_project(project, args.format, Path(args.out), val_fraction=args.val_fraction, seed=args.seed,
                             zip=args.zip, rle=args.rle, include_proposed=args.include_proposed, progress=progress)
    print(f"exported {sum(res.n_images.values())} images (train {res.n_images['train']}, val {res.n_images['val']}), "
          f"{res.n_annotations} annotations, classes {', '.join(res.class_names)} to {res.out_path}")
    print(f"content hash {res.content_hash}")
    if getattr(args, "json", None):
        _write_json(args.json, {"out_path": str(res.out_path), "n_images": res.n_images,
                                "n_annotations": res.n_annotations, "class_names": list(res.class_names),
                                "content_hash": res.content_hash, "format": args.format})
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
    from data.store import Project

    stats = Project(args.project).stats()
    if getattr(args, "json", None) == "-":
        _write_json("-", stats)
        return 0
    print(format_stats(stats))
    if getattr(args, "json", None):
        _write_json(args.json, stats)
    return 0


# ------------------------------------------------------------ bench export
BENCH_BASE_IMAGES = 20


def build_bench_project(root: Path, n: int, seed: int, progress=None):
    """A project of ``n`` 900x900 sample-style images with about 5 accepted masks each, all ``done``.

    Speed-up, stated: ``BENCH_BASE_IMAGES`` distinct images are rendered with
    ``data.sample.render_image`` and PNG-encoded once; each copy gets a distinct PNG text
    chunk (so content hashes differ without re-encoding) and its own 5 random masks.
    """
    import cv2

    from data.annotations import Annotations
    from data.sample import CLASSES, SIZE, render_image
    from data.store import Project

    project = Project.create(root, classes=CLASSES)
    class_ids = [c.id for c in project.classes()]
    rng = np.random.default_rng(seed)
    bases = []
    for k in range(min(n, BENCH_BASE_IMAGES)):
        rgb, _ = render_image(np.random.default_rng([seed, k]), CLASSES[k % len(CLASSES)])
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
        bases.append(buf.tobytes())
    import hashlib

    for i in range(n):
        content = _png_with_text(bases[i % len(bases)], f"copy {i}")
        masks = np.zeros((5, SIZE, SIZE), dtype=np.uint8)
        for m in masks:
            cx, cy = (int(v) for v in rng.integers(100, SIZE - 100, 2))
            axes = tuple(int(v) for v in rng.integers(8, 60, 2))
            cv2.ellipse(m, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        ann = Annotations.from_masks(masks.astype(bool), rng.choice(class_ids, 5), source="bench")
        project.add_image(content, f"bench_{i:05d}.png", hashlib.sha256(content).hexdigest(), SIZE, SIZE, ".png",
                          annotations=ann, status="done")
        if progress:
            progress(i + 1, n)
    return project


def _png_with_text(png: bytes, text: str) -> bytes:
    import struct
    import zlib

    body = b"Comment\0" + text.encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return png[:33] + chunk + png[33:]  # after the 8-byte signature and the 25-byte IHDR chunk


def cmd_bench_export(args: argparse.Namespace) -> int:
    from data.export import FORMATS, export_project

    if args.n < 1:
        raise InputError(f"--n must be at least 1, got {args.n}.")
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    results: dict = {"n_images": args.n, "seed": args.seed, "formats": {}}
    try:
        t0 = time.perf_counter()
        with _bar("building bench project") as progress:
            project = build_bench_project(tmp / "project", args.n, args.seed, progress)
        results["build_s"] = round(time.perf_counter() - t0, 2)
        print(f"built a project of {args.n} images (5 masks each) in {results['build_s']} s")
        for fmt in FORMATS:
            t0 = time.perf_counter()
            with _bar(f"export {fmt}") as progress:
                export_project(project, fmt, tmp / f"out-{fmt}", seed=args.seed, progress=progress)
            dt = time.perf_counter() - t0
            results["formats"][fmt] = {"seconds": round(dt, 2), "images_per_s": round(args.n / dt, 1)}
            print(f"{fmt:<13} {dt:7.2f} s  {args.n / dt:8.1f} images/s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if getattr(args, "json", None):
        _write_json(args.json, results)
    return 0
