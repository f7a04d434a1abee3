"""``bench ui``: click-to-overlay latency of the Label screen in headless Chromium.

Each click is timed in the browser (click to overlay drawn) next to the server's own
predict time for the same click; the first two clicks warm up and are not counted.
Without ``--project`` the clicks go to one interior point of every defect of a fresh
8-image sample project.

``--with-round``: the same clicks while an assist round trains (its settings: one thread, low
priority, on a labelled 24-image sample project of its own), measured side by side in one run:
the clicks come in blocks of :data:`BLOCK`, the training paused (SIGSTOP) for one block and
running for the next, so both halves see the same page, caches and machine state.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from data.coco import read_ground_truth
from data.errors import InputError
from data.importers import import_sources
from data.sample import CLASSES, generate
from data.store import Project
from train import jobs
from train.models import TrainSettings
from ui.browser import LabelPage, browser_unavailable, chromium, serve
from ui.cli import make_segmenter

BLOCK = 4  # clicks per block of --with-round (idle, busy, idle, ...)


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


def _round_project(root: Path) -> Project:
    """A labelled sample project, every image done: what an assist round trains on."""
    generate(root / "round", n=24, seed=1)
    project = Project.create(root / "round-project", classes=CLASSES)
    import_sources(project, [root / "round" / "ground_truth.json"])
    for rec in project.images():
        project.set_image_status(rec.id, "done" if len(project.annotations(rec, with_masks=False)) else "good")
    return project


def _process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the trainer's dataloader workers), from /proc."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _signal_tree(pid: int, sig: int) -> None:
    for p in _process_tree(pid):
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass


def _start_round(root: Path, device: str) -> tuple[Project, str]:
    """A training with an assist round's settings (``train.assist.start_round``: one thread, nice 10)
    and a budget that outlasts the clicks; returns once it trains (past the dataset caching)."""
    project = _round_project(root)
    s = replace(TrainSettings(), threads=1, nice=10, time_hours=0.25, device=device,
                weights_dir=str(project.path("cache", "no-weights")))
    run_id = jobs.submit(project, s)
    deadline = time.time() + 300
    while time.time() < deadline:
        rec = jobs.get(project, run_id)
        if rec.finished:
            raise RuntimeError(f"the round's training ended before the clicks ({rec.status}: {rec.reason})")
        if rec.pid and rec.epoch >= 1:
            return project, run_id
        time.sleep(1.0)
    raise RuntimeError("the round's training did not reach its first epoch in 5 minutes")


def run_bench_ui(project: Project | None, clicks: int, segmenter_name: str | None, weights_dir: str | None,
                 device: str, with_round: bool = False) -> dict[str, Any]:
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
        busy = _start_round(Path(tmp), "cpu" if device == "auto" else device) if with_round else None
        pid = jobs.get(*busy).pid if busy else None
        t0 = time.perf_counter()
        samples, busy_samples = [], []
        try:
            with serve(demo) as url, chromium() as browser:
                page = LabelPage(browser.new_page(viewport={"width": 1400, "height": 950}), url)
                current = None
                n = clicks * (2 if busy else 1)
                for k in range(n + 2):  # the first two clicks warm up (JIT, caches) and are not counted
                    running = busy is not None and k >= 2 and ((k - 2) // BLOCK) % 2 == 1
                    if pid is not None and (k - 2) % BLOCK == 0 and k >= 2:
                        if jobs.get(*busy).finished:
                            raise RuntimeError("the round's training ended during the clicks; nothing measured")
                        _signal_tree(pid, signal.SIGCONT if running else signal.SIGSTOP)
                        time.sleep(0.5)
                    image_id, x, y = targets[k % len(targets)]
                    if image_id != current:
                        page.open(image_id)
                        current = image_id
                    page.page.keyboard.press("Escape")
                    page.idle()
                    m = page.click(x, y)
                    if k >= 2:
                        (busy_samples if running else samples).append(m)
        finally:
            if busy:
                _signal_tree(pid, signal.SIGCONT)
                jobs.cancel(*busy)
        wall = time.perf_counter() - t0
    browser_ms = np.array([s["browser_ms"] for s in samples])
    server_ms = np.array([s["predict_ms"] for s in samples])
    handler_ms = np.array([s["server_ms"] for s in samples])
    p = lambda a, q: round(float(np.percentile(a, q)), 1)  # noqa: E731
    round_ms = None
    if busy_samples:
        b = np.array([s["browser_ms"] for s in busy_samples])
        round_ms = {"clicks": len(b), "p50": p(b, 50), "p95": p(b, 95), "ratio_p50": round(p(b, 50) / p(browser_ms, 50), 2),
                    "goal": "p50 with a round running <= 1.3x idle", "goal_met": bool(p(b, 50) <= 1.3 * p(browser_ms, 50))}
    return {
        "segmenter": segmenter.name, "device": segmenter.device, "clicks": len(samples),
        "browser_ms": {"p50": p(browser_ms, 50), "p95": p(browser_ms, 95)},
        "server_predict_ms": {"p50": p(server_ms, 50), "p95": p(server_ms, 95)},
        "server_handler_ms": {"p50": p(handler_ms, 50), "p95": p(handler_ms, 95)},
        "overhead_p50_ms": round(p(browser_ms, 50) - p(server_ms, 50), 1),
        "goal": "browser p50 <= server predict p50 + 60 ms",
        "goal_met": bool(p(browser_ms, 50) <= p(server_ms, 50) + 60),
        "wall_s": round(wall, 1),
        "with_round": round_ms,
    }


def format_bench(r: dict[str, Any]) -> str:
    b, s, h = r["browser_ms"], r["server_predict_ms"], r["server_handler_ms"]
    return "\n".join([
        f"bench ui: {r['clicks']} clicks, segmenter {r['segmenter']} on {r['device']}",
        f"  click-to-overlay in the browser  p50 {b['p50']:7.1f} ms   p95 {b['p95']:7.1f} ms",
        f"  server predict (same clicks)     p50 {s['p50']:7.1f} ms   p95 {s['p95']:7.1f} ms",
        f"  server handler (predict+encode)  p50 {h['p50']:7.1f} ms   p95 {h['p95']:7.1f} ms",
        f"  browser - server at p50: {r['overhead_p50_ms']} ms ({r['goal']}: {'met' if r['goal_met'] else 'NOT met'})",
    ] + ([] if not r.get("with_round") else [
        f"  with an assist round training ({r['with_round']['clicks']} clicks, in blocks beside the idle ones): "
        f"p50 {r['with_round']['p50']:.1f} ms, p95 {r['with_round']['p95']:.1f} ms, {r['with_round']['ratio_p50']}x idle "
        f"({r['with_round']['goal']}: {'met' if r['with_round']['goal_met'] else 'NOT met'})"]))
