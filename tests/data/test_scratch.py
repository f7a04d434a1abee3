"""Scratch left by a crash is removed at start; scratch a running process holds is not."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from data import scratch
from data.store import Project

pytestmark = pytest.mark.skipif(scratch.fcntl is None, reason="advisory locks are POSIX")

HOLDER = """
import sys, time
from pathlib import Path
from data import scratch
with scratch.hold(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(60)
"""


def _left_by_a_crash(root: Path) -> list[Path]:
    cache, exports, run = root / "cache", root / "exports", root / "runs" / "r1"
    run.mkdir(parents=True)
    paths = [cache / "upload-abc123", cache / "import-zip-x9", exports / ".coco.tmp-1a2b3c4d",
             exports / ".coco.old-0f0f0f0f", run / ".dataset.tmp-deadbeef"]
    for p in paths:
        p.mkdir(parents=True)
        (p / "big.bin").write_bytes(bytes(2**20))
    part = exports / ".coco.zip.part-12345678"
    part.write_bytes(bytes(2**20))
    return [*paths, part]


def test_clean_removes_what_nobody_holds_and_keeps_the_rest(tmp_path):
    project = Project.create(tmp_path / "p")
    root = project.root
    left = _left_by_a_crash(root)
    keep = [root / "cache" / "embeddings", root / "exports" / "coco", root / "exports" / "notes.tmp-1a2b3c4d"]
    for p in keep:
        p.mkdir(parents=True, exist_ok=True)
    busy = root / "cache" / "upload-running"
    busy.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(busy)], stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[2])
    try:
        assert holder.stdout.readline().strip() == "held"
        done = scratch.clean(root)
        assert sorted(done.removed) == sorted(str(p.relative_to(root)) for p in left)
        assert done.bytes >= 6 * 2**20 and not any(p.exists() for p in left)
        assert busy.is_dir() and all(p.exists() for p in keep)  # another process's work, and no scratch
    finally:
        holder.kill()
        holder.wait()
    time.sleep(0.05)
    assert scratch.clean(root).removed == ("cache/upload-running",)  # its process is gone: now it goes


def test_temp_dir_is_held_while_in_use_and_gone_after(tmp_path):
    with scratch.temp_dir("upload-", tmp_path) as tmp:
        assert scratch.in_use(tmp) and tmp.name.startswith("upload-")
    assert not tmp.exists()
