"""``bench export``: export throughput of each format on a project of ``n`` sample-style images, the
import of each export into a new project, and the round trip of the masks through each format's
own reader (``bench.roundtrip``) on up to ``ROUNDTRIP_IMAGES`` of them."""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import struct
import tempfile
import time
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.roundtrip import measure_project
from data.annotations import Annotations
from data.errors import InputError
from data.export import FORMATS, export_project
from data.importers import import_sources
from data.sample import CLASSES, SIZE, render_image
from data.store import Project

BENCH_BASE_IMAGES = 20
ROUNDTRIP_IMAGES = 100  # the round-trip figures are measured on the first this many images

Progress = Callable[[int, int], None]


def build_bench_project(root: Path, n: int, seed: int, progress: Progress | None = None) -> Project:
    """A project of ``n`` 900x900 sample-style images with about 5 accepted masks each, all ``done``.

    Speed-up, stated: ``BENCH_BASE_IMAGES`` distinct images are rendered with
    ``data.sample.render_image`` and PNG-encoded once; each copy gets a distinct PNG text
    chunk (so content hashes differ without re-encoding) and its own 5 random masks.
    """
    project = Project.create(root, classes=CLASSES)
    class_ids = [c.id for c in project.classes()]
    rng = np.random.default_rng(seed)
    bases = []
    for k in range(min(n, BENCH_BASE_IMAGES)):
        rgb, _ = render_image(np.random.default_rng([seed, k]), CLASSES[k % len(CLASSES)])
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
        bases.append(buf.tobytes())
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
    body = b"Comment\0" + text.encode("latin-1")
    chunk = struct.pack(">I", len(body)) + b"tEXt" + body + struct.pack(">I", zlib.crc32(b"tEXt" + body))
    return png[:33] + chunk + png[33:]  # after the 8-byte signature and the 25-byte IHDR chunk


@contextlib.contextmanager
def _no_bar(desc: str) -> Any:
    yield None


def run_bench(n: int, seed: int, bar: Callable[[str], Any] = _no_bar,
              say: Callable[[str], None] = print) -> dict[str, Any]:
    """Build the project, export it in every format; seconds and images/s per format.

    ``bar(desc)`` is a context manager yielding a ``progress(done, total)`` callback (or None);
    ``say`` prints each line of the report as it is measured.
    """
    if n < 1:
        raise InputError(f"--n must be at least 1, got {n}.")
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-"))
    results: dict[str, Any] = {"n_images": n, "seed": seed, "formats": {}}
    try:
        t0 = time.perf_counter()
        with bar("building bench project") as progress:
            project = build_bench_project(tmp / "project", n, seed, progress)
        results["build_s"] = round(time.perf_counter() - t0, 2)
        say(f"built a project of {n} images (5 masks each) in {results['build_s']} s")
        for fmt in FORMATS:
            t0 = time.perf_counter()
            with bar(f"export {fmt}") as progress:
                export_project(project, fmt, tmp / f"out-{fmt}", seed=seed, progress=progress)
            dt = time.perf_counter() - t0
            t0 = time.perf_counter()
            with bar(f"import {fmt}") as progress:
                report = import_sources(Project.create(tmp / f"in-{fmt}"), [tmp / f"out-{fmt}"], progress=progress)
            di = time.perf_counter() - t0
            results["formats"][fmt] = {"seconds": round(dt, 2), "images_per_s": round(n / dt, 1),
                                       "import_seconds": round(di, 2), "imported": report.imported,
                                       "labels_imported": report.annotations_added}
            say(f"{fmt:<13} {dt:7.2f} s  {n / dt:8.1f} images/s; imported back in {di:6.2f} s "
                f"({report.imported} images, {report.annotations_added} labels)")
        rt_n = min(n, ROUNDTRIP_IMAGES)
        rt_project = project if rt_n == n else build_bench_project(tmp / "rt-project", rt_n, seed)
        say(f"round trip on {rt_n} of the images, each format read back by its own reader:")
        results["roundtrip"] = measure_project(rt_project, tmp, say)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results
