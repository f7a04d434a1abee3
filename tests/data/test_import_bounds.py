"""Datasets that try to leave their folder or fill the disk: links are refused, archives are bounded
and only the members that can be imported are unpacked."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import pytest

from data import importers
from data.importers import import_sources
from data.store import Project
from tests.data.conftest import png_bytes, random_rgb

COCO = {"categories": [{"id": 1, "name": "chip"}],
        "images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5], "area": 25, "iscrowd": 0}]}


@pytest.fixture()
def outside(tmp_path: Path) -> Path:
    """A folder outside every dataset: an image, and a text file standing for /etc/passwd."""
    out = tmp_path / "outside"
    out.mkdir()
    (out / "a.png").write_bytes(png_bytes(random_rgb(7)))
    (out / "secret.txt").write_text("root:x:0:0:root:/root:/bin/bash\n")
    return out


def _project(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


def _yolo(root: Path) -> Path:
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    (root / "data.yaml").write_text("names: [chip]\n")
    return root


def _case_coco_file_name(root: Path, outside: Path) -> None:
    root.mkdir()
    os.symlink(outside / "a.png", root / "a.png")
    (root / "ann.json").write_text(json.dumps(COCO))


def _case_coco_images_folder(root: Path, outside: Path) -> None:
    root.mkdir()
    os.symlink(outside, root / "images")
    (root / "ann.json").write_text(json.dumps(COCO))


def _case_yolo_images_folder(root: Path, outside: Path) -> None:
    root.mkdir()
    os.symlink(outside, root / "images")
    (root / "labels").mkdir()
    (root / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (root / "data.yaml").write_text("names: [chip]\n")


def _case_yolo_label_file(root: Path, outside: Path) -> None:
    _yolo(root)
    (root / "images" / "a.png").write_bytes(png_bytes(random_rgb(3)))
    os.symlink(outside / "secret.txt", root / "labels" / "a.txt")


def _case_yolo_image(root: Path, outside: Path) -> None:
    _yolo(root)
    os.symlink(outside / "a.png", root / "images" / "a.png")


@pytest.mark.parametrize("case, where", [
    (_case_coco_file_name, "a.png"), (_case_coco_images_folder, "a.png"), (_case_yolo_images_folder, "ds/images"),
    (_case_yolo_label_file, "ds/images/a.png"), (_case_yolo_image, "ds/images/a.png"),
])
def test_links_in_a_dataset_are_refused_by_name(tmp_path, outside, case, where):
    case(tmp_path / "ds", outside)
    project = _project(tmp_path)
    report = import_sources(project, [tmp_path / "ds"])
    assert report.imported == 0 and not project.images()
    assert any(n == where and "symbolic link; not followed" in why for n, why in report.rejected), report.rejected
    assert "root:x" not in json.dumps(report.rejected + report.notes)  # the linked file's lines are not echoed


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_members_that_cannot_be_imported_are_never_unpacked(tmp_path, monkeypatch):
    zeros = bytes(32 * 2**20)  # 32 MiB of zeros: a few KiB compressed
    archive = _zip(tmp_path / "ds.zip", {"annotations.json": json.dumps(COCO).encode(),
                                         "a.png": png_bytes(random_rgb(3)), **{f"pad{k}.bin": zeros for k in range(3)}})
    assert archive.stat().st_size < 2**20
    written: list[int] = []
    real = importers.shutil.copyfileobj
    monkeypatch.setattr(importers.shutil, "copyfileobj",
                        lambda src, dst, n=0: (real(src, dst, n), written.append(dst.tell()))[0])
    project = _project(tmp_path)
    report = import_sources(project, [archive])
    assert report.imported == 1 and report.annotations_added == 1
    assert sum(written) < 2**20  # the 96 MiB of padding stayed in the archive
    assert sum("pad" in name for name in report.skipped) == 3


def test_an_archive_that_expands_too_much_is_refused_before_unpacking(tmp_path):
    zeros = bytes(8 * 2**20)
    archive = _zip(tmp_path / "bomb.zip", {"annotations.json": json.dumps(COCO).encode(),
                                           **{f"images/b{k}.png": zeros for k in range(3)}})
    project = _project(tmp_path)
    report = import_sources(project, [archive])
    (name, why), = report.rejected
    assert name == "bomb.zip" and "times allowed" in why and "DEFECT_STUDIO_MAX_UNPACK_RATIO" in why
    assert report.imported == 0 and not any(project.path("cache").iterdir())


def test_the_unpacked_total_is_bounded_and_configurable(tmp_path, monkeypatch):
    archive = _zip(tmp_path / "big.zip", {"annotations.json": json.dumps(COCO).encode(),
                                          "a.png": png_bytes(random_rgb(3))})
    monkeypatch.setattr(importers, "MAX_UNPACK_BYTES", 1000)
    report = import_sources(_project(tmp_path), [archive])
    assert report.imported == 0 and "GiB allowed (DEFECT_STUDIO_MAX_UNPACK_GB)" in report.rejected[0][1]
    monkeypatch.setattr(importers, "MAX_UNPACK_BYTES", 2**30)
    assert import_sources(_project(tmp_path / "again"), [archive]).imported == 1


def test_the_report_counts_the_bytes_unpacked(tmp_path):
    archive = _zip(tmp_path / "ds.zip", {"annotations.json": json.dumps(COCO).encode(),
                                         "a.png": png_bytes(random_rgb(3)), "pad.bin": bytes(2**20)})
    report = import_sources(_project(tmp_path), [archive])
    assert 0 < report.unpacked_bytes < 10_000  # the image and its labels; never the padding
