"""``python app.py serve``, and the project and segmenter it serves (``bench ui`` is in ``bench.ui``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from annotate.cache import embeddings_dir
from annotate.segmenters.registry import create_segmenter, default_segmenter_name
from data import scratch
from data.bootstrap import ensure_sample_project
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
    path = Path(path or "projects/sample")
    if (path / "project.db").is_file():
        return Project(path)
    if path.exists() and any(path.iterdir()):
        raise InputError(f"{path} exists and is not a Defect Studio project; choose an empty or new folder.")
    print(f"creating the sample project in {path} (first run)...", file=sys.stderr)
    return ensure_sample_project(path)


def make_segmenter(project: Project, name: str | None, weights_dir: str | None, device: str):
    if not name:
        name, reason = default_segmenter_name(weights_dir, device)
        print(f"segmenter: {name} ({reason})", file=sys.stderr)
    return create_segmenter(name, weights_dir, device, cache_dir=embeddings_dir(project.root))


def cmd_serve(args: argparse.Namespace) -> int:
    from ui.app import build_app, launch_kwargs  # Gradio

    auth = parse_auth(getattr(args, "auth", None) or os.environ.get(AUTH_ENV))
    import_dir = getattr(args, "import_dir", None)
    if import_dir is not None and not Path(import_dir).is_dir():
        raise InputError(f"--import-dir {import_dir} is not a folder.")
    project = open_project(args.project)
    left = scratch.clean(project.root)  # what a crashed upload, import or export left (never a running one's)
    if left.removed:
        print(f"removed {len(left.removed)} scratch files and folders left by an earlier crash "
              f"({left.bytes / 2**20:.1f} MiB)", file=sys.stderr)
    segmenter = make_segmenter(project, args.segmenter, args.weights_dir, args.device)
    demo = build_app(project, segmenter, weights_dir=args.weights_dir, import_dir=import_dir, assist_on=True)
    if args.host not in ("127.0.0.1", "localhost") and auth is None:
        print(f"warning: serving on {args.host} without --auth: anyone who can reach it can edit the project.",
              file=sys.stderr)
    demo.queue(default_concurrency_limit=1)
    demo.launch(**launch_kwargs(project, args.host, args.port, auth))
    return 0
