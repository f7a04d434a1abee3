"""The Project screen's "Import uploaded files" button without a browser: zips that hold labels.

The handler wired to the button (``do_import``) is taken from the built app and called as
Gradio calls it: with the paths of the uploaded files, each in a folder of its own.
"""

from __future__ import annotations

import argparse
import io
import json
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data.store import Project
from ui.app import build_app


def _upload_fn(demo):
    """The upload import handler as wired in the app (the Blocks keep every event's function)."""
    fns = [b.fn for b in demo.fns.values() if getattr(b.fn, "__name__", "") == "do_import"]
    assert len(fns) == 1, "no (or more than one) do_import handler wired"
    return fns[0]


def _as_uploaded(path: Path, tmp_path: Path) -> str:
    """A copy where Gradio would keep it: one folder per uploaded file."""
    d = Path(tempfile.mkdtemp(prefix="gradio-", dir=tmp_path))
    (d / path.name).write_bytes(path.read_bytes())
    return str(d / path.name)


def _upload(project: Project, fake, files: list[str]) -> str:
    demo = build_app(project, fake)
    try:
        return _upload_fn(demo)(files, progress=lambda *a, **k: None)
    finally:
        demo.ds_service.close()


def _counts(project: Project) -> dict[str, tuple[str, int]]:
    """sha256 -> (status, number of accepted annotations)."""
    n = project.annotation_counts()
    return {r.sha256: (r.status, n.get(r.id, {}).get("accepted", 0)) for r in project.images()}


def _class_counts(project: Project) -> dict[str, int]:
    return {name: row["accepted"] for name, row in project.stats()["annotations"].items() if row["accepted"]}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Project:
    """A small project of sample images with their ground truth as accepted labels."""
    from data.importers import import_sources
    from data.sample import generate

    root = tmp_path_factory.mktemp("labelled")
    generate(root / "sample", n=4, seed=0)
    project = Project.create(root / "project")
    rep = import_sources(project, [root / "sample" / "ground_truth.json"])
    assert rep.annotations_added > 0 and not rep.rejected
    return project


def _zip_folder_with_top(folder: Path, out: Path) -> Path:
    """The export folder zipped by hand: every member under one top folder."""
    with zipfile.ZipFile(out, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, f"{folder.name}/{p.relative_to(folder).as_posix()}")
    return out


@pytest.mark.parametrize("fmt, how", [("coco", "export"), ("yolo-segment", "export"), ("coco", "zipped-folder"),
                                      ("yolo-detect", "zipped-folder")])
def test_uploaded_export_zip_imports_images_and_labels_like_the_cli(labelled, tmp_path, project, fake, fmt, how):
    from data.cli import cmd_import
    from data.export import export_project

    res = export_project(labelled, fmt, tmp_path / "export", zip=how == "export")
    zpath = res.out_path if how == "export" else _zip_folder_with_top(res.out_path, tmp_path / "dataset.zip")
    before = _counts(project)
    exported = {sha: c for sha, c in _counts(labelled).items() if c[0] == "done"}

    msg = _upload(project, fake, [_as_uploaded(zpath, tmp_path)])
    assert f"Imported **{len(exported)}** images, {res.n_annotations} annotations" in msg and "0 rejected" in msg
    after = _counts(project)
    assert {sha: after[sha] for sha in before} == before  # what the project held is untouched
    assert {sha: after[sha] for sha in exported} == exported  # every image with its labels, marked done
    assert _class_counts(project) == _class_counts(labelled)

    cli = tmp_path / "cli"  # the CLI import of the same zip gives the same project content
    assert cmd_import(argparse.Namespace(project=str(cli), sources=[str(zpath)], json=None)) == 0
    cli_project = Project(cli)
    assert _counts(cli_project) == exported and _class_counts(cli_project) == _class_counts(labelled)
    assert sorted(r.name for r in cli_project.images()) == sorted(
        r.name for r in project.images() if r.sha256 in exported)


def _png(seed: int, h: int = 48, w: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def test_uploaded_yolo_zip_with_broken_label_file_imports_the_rest(tmp_path, project, fake):
    zpath = _zip(tmp_path / "batch.zip", {
        "data.yaml": b"names: [chip, stain]\n",
        "images/good.png": _png(1),
        "images/bad_labels.png": _png(2),
        "images/truncated.png": _png(3)[:-80],
        "labels/good.txt": b"0 0.5 0.5 0.25 0.25\n1 0.2 0.2 0.1 0.1\n",
        "labels/bad_labels.txt": b"\xff\xfe not utf-8 \x00\x81",
    })
    before = _counts(project)
    msg = _upload(project, fake, [_as_uploaded(zpath, tmp_path)])
    assert "Imported **2** images, 2 annotations" in msg and "2 rejected" in msg
    assert "- rejected `batch.zip/labels/bad_labels.txt`: unreadable label file" in msg
    assert "- rejected `batch.zip/images/truncated.png`:" in msg and "truncated" in msg
    by_name = {r.name: r for r in project.images()}
    counts = project.annotation_counts()
    good, bad = by_name["batch.zip/images/good.png"], by_name["batch.zip/images/bad_labels.png"]
    assert good.status == "done" and counts[good.id]["accepted"] == 2
    assert bad.status == "unlabeled" and not counts.get(bad.id, {}).get("accepted")
    after = _counts(project)
    assert {sha: after[sha] for sha in before} == before
    assert {"chip", "stain"} <= {c.name for c in project.classes()}


def test_uploaded_zip_with_coco_json_beside_its_images(tmp_path, project, fake):
    doc = {"images": [{"id": 1, "file_name": "a.png", "width": 64, "height": 48},
                      {"id": 2, "file_name": "b.png", "width": 64, "height": 48}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]]},
                           {"id": 2, "image_id": 2, "category_id": 3, "segmentation": [[10, 10, 20, 10]]}],
           "categories": [{"id": 3, "name": "dent"}]}
    zpath = _zip(tmp_path / "roboflow.zip", {
        "train/_annotations.coco.json": json.dumps(doc).encode(),
        "train/a.png": _png(1), "train/b.png": _png(2),
        "train/extra.png": _png(3),  # named by no JSON: imports on its own
    })
    msg = _upload(project, fake, [_as_uploaded(zpath, tmp_path)])
    assert "Imported **3** images, 1 annotations" in msg and "1 rejected" in msg
    assert "- rejected `_annotations.coco.json: b.png annotation 2`:" in msg and "fewer than 3 points" in msg
    names = {r.name: r.status for r in project.images()}
    assert names["a.png"] == "done" and names["b.png"] == "unlabeled"
    assert names["roboflow.zip/train/extra.png"] == "unlabeled"


def test_uploaded_zip_with_broken_coco_json_imports_the_images(tmp_path, project, fake):
    zpath = _zip(tmp_path / "shots.zip", {"annotations.json": b'{"images": [', "a.png": _png(1), "b.png": _png(2)})
    before = _counts(project)
    msg = _upload(project, fake, [_as_uploaded(zpath, tmp_path)])
    assert "Imported **2** images, 0 annotations" in msg and "1 rejected" in msg
    assert "- rejected `annotations.json`: shots.zip/annotations.json: not a readable COCO JSON file" in msg
    after = _counts(project)
    assert {sha: after[sha] for sha in before} == before and len(after) == len(before) + 2
    assert not list(project.path("cache").iterdir())  # the unpacked zip and the upload folder are gone
