"""``python app.py serve`` and ``python app.py bench ui``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from data.errors import InputError
from data.store import Project

AUTH_ENV = "DEFECT_STUDIO_AUTH"


def parse_auth(value: str | None) -> tuple[str, str] | None:
    if not value:
        return None
    user, sep, password = value.partition(":")
    if not sep or not user or not password:
        raise InputError("--auth must be USER:PASS (or set DEFECT_STUDIO_AUTH=USER:PASS).")
    return user, password


def open_project(path: Path | None) -> Project:
    """The project to serve; the bundled sample is created on first run when the folder is new."""
    from data.bootstrap import ensure_sample_project

    path = Path(path or "projects/sample")
    if (path / "project.db").is_file():
        return Project(path)
    if path.exists() and any(path.iterdir()):
        raise InputError(f"{path} exists and is not a Defect Studio project; choose an empty or new folder.")
    print(f"creating the sample project in {path} (first run)...", file=sys.stderr)
    return ensure_sample_project(path)


def make_segmenter(project: Project, name: str | None, weights_dir: str | None, device: str):
    from annotate.cache import embeddings_dir
    from annotate.segmenters.registry import create_segmenter, default_segmenter_name

    if not name:
        name, reason = default_segmenter_name(weights_dir, device)
        print(f"segmenter: {name} ({reason})", file=sys.stderr)
    return create_segmenter(name, weights_dir, device, cache_dir=embeddings_dir(project.root))


def cmd_serve(args: argparse.Namespace) -> int:
    from ui.app import build_app, launch_kwargs

    auth = parse_auth(getattr(args, "auth", None) or os.environ.get(AUTH_ENV))
    import_dir = getattr(args, "import_dir", None)
    if import_dir is not None and not Path(import_dir).is_dir():
        raise InputError(f"--import-dir {import_dir} is not a folder.")
    project = open_project(args.project)
    segmenter = make_segmenter(project, args.segmenter, args.weights_dir, args.device)
    demo = build_app(project, segmenter, weights_dir=args.weights_dir, import_dir=import_dir)
    if args.host not in ("127.0.0.1", "localhost") and auth is None:
        print(f"warning: serving on {args.host} without --auth: anyone who can reach it can edit the project.",
              file=sys.stderr)
    demo.queue(default_concurrency_limit=1)
    demo.launch(**launch_kwargs(project, args.host, args.port, auth))
    return 0


# ------------------------------------------------------------------ bench ui
def _bench_project(root: Path, n: int = 8) -> tuple[Project, dict[str, list[tuple[float, float]]]]:
    """A sample project plus, per image name, one interior point per ground-truth defect."""
    import cv2
    from pycocotools import mask as mask_utils

    from data.importers import import_sources
    from data.sample import CLASSES, generate

    generate(root / "sample", n=n, seed=0)
    project = Project.create(root / "project", classes=CLASSES)
    import_sources(project, [root / "sample" / "images"])
    gt = json.loads((root / "sample" / "ground_truth.json").read_text())
    names = {im["id"]: Path(im["file_name"]).name for im in gt["images"]}
    points: dict[str, list[tuple[float, float]]] = {}
    for a in gt["annotations"]:
        m = mask_utils.decode(a["segmentation"]).astype(np.uint8)
        d = cv2.distanceTransform(m, cv2.DIST_L2, 3)
        y, x = np.unravel_index(int(d.argmax()), d.shape)
        points.setdefault(names[a["image_id"]], []).append((float(x), float(y)))
    return project, points


def run_bench_ui(project: Project | None, clicks: int, segmenter_name: str | None, weights_dir: str | None,
                 device: str) -> dict[str, Any]:
    from ui.app import build_app
    from ui.browser import LabelPage, browser_unavailable, chromium, serve

    why = browser_unavailable()
    if why:
        raise InputError(f"bench ui needs a browser: {why}.")
    with tempfile.TemporaryDirectory(prefix="bench-ui-") as tmp:
        targets: list[tuple[int, float, float]] = []
        if project is None:
            project, pts = _bench_project(Path(tmp))
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


def cmd_bench_ui(args: argparse.Namespace) -> int:
    project = Project(args.project) if getattr(args, "project", None) else None
    r = run_bench_ui(project, int(args.clicks), getattr(args, "segmenter", None), getattr(args, "weights_dir", None),
                     getattr(args, "device", "auto"))
    print(format_bench(r))
    if getattr(args, "json", None):
        text = json.dumps(r, indent=2)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0
