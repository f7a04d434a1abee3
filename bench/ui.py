"""``bench ui``: click-to-overlay latency of the Label screen in headless Chromium.

Each click is timed in the browser (click to overlay drawn) next to the server's own
predict time for the same click; the first two clicks warm up and are not counted.
Without ``--project`` the clicks go to one interior point of every defect of a fresh
8-image sample project.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from data.coco import read_ground_truth
from data.errors import InputError
from data.importers import import_sources
from data.sample import CLASSES, generate
from data.store import Project
from ui.browser import LabelPage, browser_unavailable, chromium, serve
from ui.cli import make_segmenter


def bench_project(root: Path, n: int = 8) -> tuple[Project, dict[str, list[tuple[float, float]]]]:
    """A sample project plus, per image name, one interior point per ground-truth defect."""
    generate(root / "sample", n=n, seed=0)
    project = Project.create(root / "project", classes=CLASSES)
    import_sources(project, [root / "sample" / "images"])
    points: dict[str, list[tuple[float, float]]] = {}
    for im in read_ground_truth(root / "sample" / "images", root / "sample" / "ground_truth.json"):
        for mask in im.masks:
            d = cv2.distanceTransform(mask.astype(np.uint8), cv2.DIST_L2, 3)
            y, x = np.unravel_index(int(d.argmax()), d.shape)
            points.setdefault(Path(im.file_name).name, []).append((float(x), float(y)))
    return project, points


def run_bench_ui(project: Project | None, clicks: int, segmenter_name: str | None, weights_dir: str | None,
                 device: str) -> dict[str, Any]:
    from ui.app import build_app  # Gradio

    why = browser_unavailable()
    if why:
        raise InputError(f"bench ui needs a browser: {why}.")
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        targets: list[tuple[int, float, float]] = []
        if project is None:
            project, pts = bench_project(Path(tmp))
            by_name = {Path(r.name).name: r.id for r in project.images()}
            targets = [(by_name[n], x, y) for n, ps in sorted(pts.items()) if n in by_name for x, y in ps]
        if not targets:  # a user project: click a grid of points on its first images
            rng = np.random.default_rng(0)
            for r in project.images()[:5]:
                targets += [(r.id, float(rng.uniform(0.2, 0.8) * r.width), float(rng.uniform(0.2, 0.8) * r.height))
                            for _ in range(6)]
        segmenter = make_segmenter(project, segmenter_name, weights_dir, device)
        demo = build_app(project, segmenter, weights_dir=weights_dir)
        t0 = time.perf_counter()
        samples = []
        with serve(demo) as url, chromium() as browser:
            page = LabelPage(browser.new_page(viewport={"width": 1400, "height": 950}), url)
            current = None
            for k in range(clicks + 2):  # the first two clicks warm up (JIT, caches) and are not counted
                image_id, x, y = targets[k % len(targets)]
                if image_id != current:
                    page.open(image_id)
                    current = image_id
                page.page.keyboard.press("Escape")
                page.idle()
                m = page.click(x, y)
                if k >= 2:
                    samples.append(m)
        wall = time.perf_counter() - t0
    browser_ms = np.array([s["browser_ms"] for s in samples])
    server_ms = np.array([s["predict_ms"] for s in samples])
    handler_ms = np.array([s["server_ms"] for s in samples])
    p = lambda a, q: round(float(np.percentile(a, q)), 1)  # noqa: E731
    return {
        "segmenter": segmenter.name, "device": segmenter.device, "clicks": len(samples),
        "browser_ms": {"p50": p(browser_ms, 50), "p95": p(browser_ms, 95)},
        "server_predict_ms": {"p50": p(server_ms, 50), "p95": p(server_ms, 95)},
        "server_handler_ms": {"p50": p(handler_ms, 50), "p95": p(handler_ms, 95)},
        "overhead_p50_ms": round(p(browser_ms, 50) - p(server_ms, 50), 1),
        "goal": "browser p50 <= server predict p50 + 60 ms",
        "goal_met": bool(p(browser_ms, 50) <= p(server_ms, 50) + 60),
        "wall_s": round(wall, 1),
    }


def format_bench(r: dict[str, Any]) -> str:
    b, s, h = r["browser_ms"], r["server_predict_ms"], r["server_handler_ms"]
    return "\n".join([
        f"bench ui: {r['clicks']} clicks, segmenter {r['segmenter']} on {r['device']}",
        f"  click-to-overlay in the browser  p50 {b['p50']:7.1f} ms   p95 {b['p95']:7.1f} ms",
        f"  server predict (same clicks)     p50 {s['p50']:7.1f} ms   p95 {s['p95']:7.1f} ms",
        f"  server handler (predict+encode)  p50 {h['p50']:7.1f} ms   p95 {h['p95']:7.1f} ms",
        f"  browser - server at p50: {r['overhead_p50_ms']} ms ({r['goal']}: {'met' if r['goal_met'] else 'NOT met'})",
    ])
