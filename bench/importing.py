"""``bench import``: the time to import a large COCO dataset (many categories, images and
annotations), the case where per-class or per-annotation costs that grow with the dataset show.

The dataset is written first (not timed): ``images`` PNGs of 640x480, made from a few rendered
bases with a distinct PNG text chunk each (distinct content, no re-encoding; as ``bench export``
does), and one COCO file with ``categories`` categories and ``annotations`` polygon annotations
spread over the images and the categories. Then ``import_sources`` into a new project is timed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.export import _png_with_text
from data.errors import InputError
from data.importers import import_sources
from data.store import Project

WIDTH, HEIGHT = 640, 480
BASES = 8


def write_dataset(root: Path, categories: int, images: int, annotations: int, seed: int) -> Path:
    """The COCO dataset described above under ``root``; returns its JSON."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    bases = []
    for _ in range(BASES):
        rgb = rng.integers(0, 256, (HEIGHT // 8, WIDTH // 8, 3), dtype=np.uint8)
        big = cv2.resize(rgb, (WIDTH, HEIGHT), interpolation=cv2.INTER_LINEAR)
        bases.append(cv2.imencode(".png", big)[1].tobytes())
    ims = []
    for i in range(images):
        name = f"im_{i:05d}.png"
        (root / "images" / name).write_bytes(_png_with_text(bases[i % BASES], f"image {i}"))
        ims.append({"id": i + 1, "file_name": name, "width": WIDTH, "height": HEIGHT})
    anns = []
    for k in range(annotations):
        cx, cy = rng.uniform(40, WIDTH - 40), rng.uniform(40, HEIGHT - 40)
        r = rng.uniform(5, 30, 8)
        t = np.linspace(0, 2 * np.pi, 8, endpoint=False)
        poly = np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], 1).round(2).reshape(-1).tolist()
        xs, ys = poly[0::2], poly[1::2]
        anns.append({"id": k + 1, "image_id": int(k % images) + 1, "category_id": int(k % categories) + 1,
                     "segmentation": [poly], "bbox": [min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)],
                     "area": 0.0, "iscrowd": 0})
    cats = [{"id": c + 1, "name": f"defect {c:04d}", "supercategory": "defect"} for c in range(categories)]
    path = root / "instances.json"
    path.write_text(json.dumps({"images": ims, "annotations": anns, "categories": cats}))
    return path


def run_bench(categories: int, images: int, annotations: int, seed: int = 0, say=print) -> dict[str, Any]:
    if min(categories, images, annotations) < 1:
        raise InputError("--categories, --images and --annotations must each be at least 1.")
    tmp = Path(tempfile.mkdtemp(prefix="bench-import-"))
    try:
        t0 = time.perf_counter()
        path = write_dataset(tmp / "dataset", categories, images, annotations, seed)
        written = time.perf_counter() - t0
        say(f"wrote {images} images of {WIDTH}x{HEIGHT}, {annotations} annotations, {categories} categories "
            f"in {written:.1f} s (not timed)")
        project = Project.create(tmp / "project")
        t0 = time.perf_counter()
        rep = import_sources(project, [path.parent])
        seconds = time.perf_counter() - t0
        result = {"categories": categories, "images": images, "annotations": annotations, "seed": seed,
                  "import_seconds": round(seconds, 2), "imported": rep.imported,
                  "labels_imported": rep.annotations_added, "classes": len(project.classes()),
                  "rejected": len(rep.rejected)}
        say(f"imported {rep.imported} images, {rep.annotations_added} labels, {len(project.classes())} classes "
            f"in {seconds:.2f} s ({len(rep.rejected)} rejected)")
        return result
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
