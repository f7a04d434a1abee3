"""Fixtures shared by every test package."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Tests never reach the network: make Ultralytics fail fast instead of probing it.
os.environ.setdefault("YOLO_OFFLINE", "true")
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

import app  # noqa: E402  (after the path and the environment above)

app.wire()  # as the entry point does: a training run is a proposer (``run:ID``)


def realdata_dir() -> Path:
    """The real defect photographs (not part of the project: see README)."""
    env = os.environ.get("DEFECT_STUDIO_REALDATA")
    return Path(env) if env else REPO.parent / "shared" / "realdata"


@pytest.fixture(scope="session")
def realdata() -> Path:
    path = realdata_dir()
    if not (path / "ground_truth.json").is_file():
        pytest.skip(f"real defect photographs not found at {path} (set DEFECT_STUDIO_REALDATA to their folder)")
    return path
