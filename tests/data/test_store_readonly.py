"""A project that cannot be written says so once, in words; nothing saved before is lost."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from data.annotations import Annotations
from data.errors import ProjectError
from data.store import Project
from tests.data.conftest import png_bytes, random_rgb


@pytest.fixture()
def mount(tmp_path: Path):
    """``tmp_path/src`` seen through a bind mount at ``tmp_path/view``, made read-only on demand."""
    src, view = tmp_path / "src", tmp_path / "view"
    src.mkdir()
    view.mkdir()
    if subprocess.run(["mount", "--bind", str(src), str(view)], capture_output=True).returncode:
        pytest.skip("bind mounts need root (a read-only file system is simulated with one)")

    def readonly(on: bool) -> None:
        subprocess.run(["mount", "-o", f"remount,bind,{'ro' if on else 'rw'}", str(view)], check=True)

    try:
        yield view, readonly
    finally:
        subprocess.run(["umount", "-l", str(view)], capture_output=True)  # lazy: a connection may still be open


def _project(root: Path) -> Project:
    project = Project.create(root, classes=["chip"])
    content = png_bytes(random_rgb(1))
    import hashlib

    project.add_image(content, "a.png", hashlib.sha256(content).hexdigest(), 64, 48, ".png")
    return project


def test_opening_a_read_only_project_says_why(mount):
    view, readonly = mount
    _project(view / "p").close()  # no file open for writing: the kernel refuses a read-only remount otherwise
    readonly(True)
    with pytest.raises(ProjectError, match=r"cannot be written \(Read-only file system\).*copy the project"):
        Project(view / "p")


def test_a_project_that_turns_read_only_refuses_changes_in_words_and_keeps_what_was_saved(mount):
    view, readonly = mount
    project = _project(view / "p")
    m = np.zeros((48, 64), bool)
    m[5:15, 5:15] = True
    saved = project.add_annotations(1, Annotations.from_masks(m, 1))
    project.close()
    readonly(True)
    with pytest.raises(ProjectError, match="cannot be written now .*not saved; everything saved before is kept"):
        project.add_annotations(1, Annotations.from_masks(m, 1))
    with pytest.raises(ProjectError, match="cannot be written now"):
        project.set_image_status(1, "done")
    project.close()
    readonly(False)
    again = Project(view / "p")
    assert again.annotations(1).ids.tolist() == saved and again.image(1).status == "unlabeled"
