"""The bundled sample project: created on first run so a user can start clicking at once."""

from __future__ import annotations

from pathlib import Path

from data import scratch
from data.importers import import_sources
from data.sample import CLASSES, generate
from data.store import Project

SAMPLE_N = 50
SAMPLE_SEED = 0


def ensure_sample_project(root: str | Path, n: int = SAMPLE_N, seed: int = SAMPLE_SEED, progress=None) -> Project:
    """Open the sample project at ``root``, creating it on first run.

    It holds the synthetic bottle images (``data.sample``), the three defect classes,
    and no labels: the ground truth stays with the generator, for benchmarks.
    """
    root = Path(root)
    project = Project.create(root, classes=CLASSES)
    if project.images():
        return project
    with scratch.temp_dir("sample-", root / "cache") as tmp:
        generate(tmp, n=n, seed=seed)
        import_sources(project, [Path(tmp) / "images"], progress=progress)
    return project
