"""``python app.py bench hostile``: what hostile input does to a running server, the readers and the loaders.

Four parts, each counted, on a fresh sample project in a scratch folder:

- the label API over HTTP on a live server: every method with every pair of hostile values
  (huge and non-finite numbers, wrong types, paths, far polygons); HTTP 500s and crashes are
  counted, and a normal click must still answer afterwards;
- the session load: ``sessions`` pages of ``clicks`` clicks each on the loopback, the server's
  memory growth (RSS), and whether every live session still answers;
- the readers: datasets with links out of their folder and zip archives that expand; files
  that land outside the project, and bytes unpacked per byte uploaded;
- the loaders: rigged checkpoints (a pickle that runs a shell command) handed to every loader;
  how many ran code.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import shutil
import time
import zipfile
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import torch

from annotate.proposers.yoloworld import CLIP_FILE, ClipText
from annotate.segmenters import registry
from annotate.segmenters.classical import ClassicalSegmenter
from bench.ui import bench_project
from data.importers import import_sources
from data.store import Project
from runtime import checkpoints
from ui.browser import serve
from ui.label_component import METHODS

VALUES: tuple[Any, ...] = (None, True, -1, 0, 10**30, 2**64, 1e308, math.nan, math.inf, "x" * 5000,
                           "../../etc/passwd", [], {"a": 1}, [[0, 0], [1e9, 0], [0, 50]], [[1e9, 1e9]] * 3, "pos")


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


class _Rigged:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def label_api(url: str, label_id: int, token: str, image_id: int) -> dict[str, Any]:
    """Every method with every pair of ``VALUES`` (and none); the count of replies of each kind."""
    counts = {"calls": 0, "http_500": 0, "error_replies": 0, "transport_failures": 0}
    with httpx.Client(base_url=url, timeout=60) as client:
        def call(*args: Any) -> Any:
            body = json.dumps({"session_hash": "hostile", "component_id": label_id, "fn_name": "api",
                               "data": list(args)})
            counts["calls"] += 1
            try:
                r = client.post("/gradio_api/component_server", content=body,
                                headers={"content-type": "application/json"})
            except httpx.TransportError:
                counts["transport_failures"] += 1
                return None
            if r.status_code >= 500:
                counts["http_500"] += 1
                return None
            out = r.json()
            counts["error_replies"] += isinstance(out, dict) and "error" in out
            return out

        call(token, "open_image", image_id)
        for method in METHODS:
            for n in range(3):
                for args in itertools.product(VALUES, repeat=n):
                    call(token, method, *args)
                    if method == "open_image":
                        call(token, "open_image", image_id)
        call(token, "clear")
        after = call(token, "prompt", "pos", [450, 450])
        counts["normal_click_after"] = bool(after and "error" not in after)
    return counts


def session_load(service: Any, project: Project, sessions: int, clicks: int, seed: int) -> dict[str, Any]:
    """``sessions`` pages of ``clicks`` clicks each (through the service, as the page's calls reach it)."""
    rng = np.random.default_rng(seed)
    images = project.images()
    before = _rss_mb()
    tokens = []
    t0 = time.perf_counter()
    for k in range(sessions):
        token = service.open_page(f"load-{k}")
        tokens.append(token)
        rec = images[k % len(images)]
        service.open_image(token, rec.id)
        for c in range(clicks):
            if c % 10 == 0:
                service.clear(token)
            service.prompt(token, "pos" if c % 3 else "neg",
                           [float(rng.uniform(0, rec.width - 1)), float(rng.uniform(0, rec.height - 1))])
    live = [t for t in tokens if service.sessions.get(t) is not None]
    answering = sum("error" not in service.prompt(t, "pos", [10.0, 10.0]) for t in live)
    return {"sessions": sessions, "clicks_each": clicks, "rss_before_mb": round(before, 1),
            "rss_growth_mb": round(_rss_mb() - before, 1), "live_sessions": len(live),
            "live_answering": answering, "wall_s": round(time.perf_counter() - t0, 1)}


def readers(root: Path) -> dict[str, Any]:
    """Datasets with links out of their folder and archives that expand, imported into a fresh project."""
    outside = root / "outside"
    outside.mkdir(parents=True)
    img = np.zeros((48, 64, 3), np.uint8)
    cv2.imwrite(str(outside / "a.png"), img)
    (outside / "secret.txt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    coco = {"categories": [{"id": 1, "name": "chip"}],
            "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}]}
    cases: dict[str, Path] = {}
    d = root / "coco-link"
    d.mkdir()
    os.symlink(outside / "a.png", d / "a.png")
    (d / "ann.json").write_text(json.dumps(coco))
    cases["COCO file_name through a link"] = d
    d = root / "yolo-images-link"
    (d / "labels").mkdir(parents=True)
    os.symlink(outside, d / "images")
    (d / "data.yaml").write_text("names: [chip]\n")
    cases["YOLO images/ folder a link"] = d
    d = root / "yolo-label-link"
    (d / "images").mkdir(parents=True)
    (d / "labels").mkdir()
    cv2.imwrite(str(d / "images" / "a.png"), img + 1)
    os.symlink(outside / "secret.txt", d / "labels" / "a.txt")
    (d / "data.yaml").write_text("names: [chip]\n")
    cases["YOLO label file a link"] = d
    zeros = bytes(64 * 2**20)
    bomb = root / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("annotations.json", json.dumps(coco))
        for k in range(3):
            zf.writestr(f"images/b{k}.png", zeros)
    cases["zip that expands 1000x (images of zeros)"] = bomb
    padded = root / "padded.zip"
    ok, png = cv2.imencode(".png", img + 2)
    with zipfile.ZipFile(padded, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        zf.writestr("annotations.json", json.dumps(coco))
        zf.writestr("a.png", png.tobytes())
        for k in range(3):
            zf.writestr(f"pad{k}.bin", zeros)
    cases["zip padded with members no reader takes"] = padded

    rows, worst_ratio, leaked_lines = [], 0.0, 0
    for what, src in cases.items():
        rep = import_sources(Project.create(root / f"p-{src.name}"), [src])
        size = src.stat().st_size if src.is_file() else 0
        ratio = rep.unpacked_bytes / size if size else 0.0
        worst_ratio = max(worst_ratio, ratio)
        leaked_lines += "root:x" in json.dumps([rep.rejected, rep.notes])
        rows.append({"input": what, "imported": rep.imported, "refused": len(rep.rejected), "bytes_in": size,
                     "bytes_unpacked": rep.unpacked_bytes, "bytes_unpacked_per_byte": round(ratio, 4)})
    outside_files = sorted(p.name for p in outside.iterdir())
    return {"cases": rows, "files_written_outside": int(outside_files != ["a.png", "secret.txt"]),
            "outside_lines_echoed": leaked_lines, "max_bytes_unpacked_per_byte": round(worst_ratio, 2)}


def loaders(root: Path) -> dict[str, Any]:
    """A rigged checkpoint handed to every loader; how many ran its command."""
    root.mkdir(parents=True, exist_ok=True)
    marker = root / "code-ran"
    bad = root / "rigged.pt"
    torch.save({"model": {"w": torch.zeros(2)}, "train_args": {}, "x": _Rigged(marker)}, bad)
    tries: dict[str, Any] = {"YOLO checkpoint (predict, train --model, resume)": lambda: checkpoints.load_yolo(bad)}
    for name in ("mobile-sam", "sam2.1-t", "sam-vit-b"):
        tries[f"segmenter {name}"] = lambda n=name: registry_create(registry, n, bad)
    clip_dir = root / "clip"
    clip_dir.mkdir()
    shutil.copy(bad, clip_dir / CLIP_FILE)
    tries["YOLO-World text encoder (CLIP)"] = lambda: ClipText(clip_dir)
    rows, ran = [], 0
    for what, fn in tries.items():
        marker.unlink(missing_ok=True)
        try:
            fn()
            outcome = "loaded"
        except Exception as err:  # noqa: BLE001 - every refusal is an outcome to report
            outcome = f"{type(err).__name__}: {str(err)[:90]}"
        ran += marker.exists()
        rows.append({"loader": what, "code_ran": marker.exists(), "outcome": outcome})
    return {"cases": rows, "code_executed": ran}


def registry_create(registry: Any, name: str, path: Path) -> Any:
    original = registry.find_weights
    registry.find_weights = lambda *a, **k: path
    try:
        return registry.create_segmenter(name, str(path.parent), "cpu")
    finally:
        registry.find_weights = original


def run(root: Path, sessions: int = 50, clicks: int = 30, seed: int = 0) -> dict[str, Any]:
    from ui.app import build_app

    checkpoints.enable_safe_yolo()
    root.mkdir(parents=True, exist_ok=True)
    project, _ = bench_project(root, n=6)
    demo = build_app(project, ClassicalSegmenter())
    service = demo.ds_service
    label = next(bid for bid, b in demo.blocks.items() if getattr(b, "elem_id", None) == "ds-label")
    out: dict[str, Any] = {}
    try:
        with serve(demo) as url:
            token = service.open_page("hostile")
            t0 = time.perf_counter()
            out["label_api"] = {**label_api(url, label, token, project.images()[0].id),
                                "wall_s": round(time.perf_counter() - t0, 1)}
            out["sessions"] = session_load(service, project, sessions, clicks, seed)
    finally:
        service.close()
    out["readers"] = readers(root / "readers")
    out["loaders"] = loaders(root / "loaders")
    out["summary"] = {
        "hostile_calls": out["label_api"]["calls"],
        "server_crashes_or_500": out["label_api"]["http_500"] + out["label_api"]["transport_failures"],
        "files_written_outside": out["readers"]["files_written_outside"],
        "code_executed_from_weights": out["loaders"]["code_executed"],
        "session_memory_growth_mb": out["sessions"]["rss_growth_mb"],
        "max_bytes_unpacked_per_byte": out["readers"]["max_bytes_unpacked_per_byte"],
    }
    return out


def format_report(r: dict[str, Any]) -> str:
    s, api, ses = r["summary"], r["label_api"], r["sessions"]
    lines = [
        f"label API: {api['calls']} hostile calls over HTTP ({len(METHODS)} methods), {api['error_replies']} answered "
        f"with an error reply, HTTP 500 {api['http_500']}, lost connections {api['transport_failures']}; a normal "
        f"click afterwards {'answered' if api['normal_click_after'] else 'FAILED'} ({api['wall_s']} s)",
        f"sessions: {ses['sessions']} pages x {ses['clicks_each']} clicks, server memory +{ses['rss_growth_mb']} MB "
        f"(target <= 1500), {ses['live_sessions']} live, {ses['live_answering']} answering ({ses['wall_s']} s)",
    ]
    lines += [f"reader: {c['input']}: imported {c['imported']}, refused {c['refused']}, {c['bytes_unpacked']} bytes "
              f"unpacked from {c['bytes_in']} ({c['bytes_unpacked_per_byte']} per byte)" for c in r["readers"]["cases"]]
    lines += [f"loader: {c['loader']}: code ran {c['code_ran']}; {c['outcome']}" for c in r["loaders"]["cases"]]
    lines.append(f"summary: server crashes {s['server_crashes_or_500']} (target 0), files written outside "
                 f"{s['files_written_outside']} (0), code executed from weight files {s['code_executed_from_weights']} "
                 f"(0), session memory +{s['session_memory_growth_mb']} MB (<= 1500), bytes unpacked per byte at "
                 f"most {s['max_bytes_unpacked_per_byte']} (<= 100)")
    return "\n".join(lines)

