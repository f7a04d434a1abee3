"""Import: every kind of bad input is listed with its reason and the rest imports (data/importers.py)."""

from __future__ import annotations

import json
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest

from data.geometry import encode_rle
from data.importers import import_sources
from data.store import Project
from tests.data.conftest import png_bytes, random_rgb


@pytest.fixture
def empty(tmp_path: Path) -> Project:
    return Project.create(tmp_path / "proj")


def _reasons(report) -> dict[str, str]:
    return dict(report.rejected)


def test_folder_with_bad_files_imports_the_rest(tmp_path, empty):
    src = tmp_path / "shots"
    (src / "line1").mkdir(parents=True)
    (src / "line2").mkdir()
    (src / "line1" / "part.png").write_bytes(png_bytes(random_rgb(1)))
    (src / "line2" / "part.png").write_bytes(png_bytes(random_rgb(2)))  # same name, other folder
    (src / "line2" / "défaut_瓶.png").write_bytes(png_bytes(random_rgb(3)))  # unicode name
    (src / "copy.png").write_bytes(png_bytes(random_rgb(1)))  # same content as line1/part.png
    (src / "broken.png").write_bytes(png_bytes(random_rgb(4))[:-80])  # truncated
    (src / "readme.jpg").write_text("not a photo")  # text with an image extension
    (src / "notes.txt").write_text("skipped, not an image type")
    rep = import_sources(empty, [src])
    names = {im.name for im in empty.images()}
    assert names == {"shots/copy.png", "shots/line2/part.png", "shots/line2/défaut_瓶.png"}
    assert rep.imported == 3 and rep.duplicates == ("shots/line1/part.png",)  # sorted: copy.png came first
    reasons = _reasons(rep)
    assert "truncated" in reasons["shots/broken.png"]
    assert "not an image" in reasons["shots/readme.jpg"]
    assert rep.skipped == ("shots/notes.txt",)
    assert all(im.status == "unlabeled" for im in empty.images())


def _zip_with(path: Path, entries: list[tuple[str, bytes, bool]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, link in entries:
            info = zipfile.ZipInfo(name)
            if link:
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, data)
    return path


@pytest.mark.parametrize(
    "entry, reason",
    [
        ("../evil.png", "'..'"),  # parent traversal
        ("a/../../evil.png", "'..'"),  # traversal inside a path
        ("/etc/evil.png", "absolute path"),  # absolute path
        ("C:/evil.png", "absolute path"),  # Windows drive path
        ("link.png", "symbolic link"),  # symlink entry
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "drive", "symlink"],
)
def test_zip_refuses_unsafe_entries(tmp_path, empty, entry, reason):
    zpath = _zip_with(tmp_path / "batch.zip", [
        ("ok/a.png", png_bytes(random_rgb(5)), False),
        (entry, b"/etc/passwd" if entry == "link.png" else png_bytes(random_rgb(6)), entry == "link.png"),
    ])
    rep = import_sources(empty, [zpath])
    assert rep.imported == 1 and [im.name for im in empty.images()] == ["batch.zip/ok/a.png"]
    assert reason in _reasons(rep)[f"batch.zip/{entry}"]
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")}
    assert all(p.startswith("proj/images/") for p in written)  # nothing written outside the project


@pytest.mark.parametrize(
    "entry, reason",
    [("../evil.png", "'..'"), ("/etc/evil.png", "absolute path"), ("link.png", "symbolic link")],
    ids=["dotdot", "absolute", "symlink"],
)
def test_zip_with_labels_is_unpacked_safely(tmp_path, empty, entry, reason):
    """A zip holding a data.yaml is unpacked to import its labels: the same entries are refused."""
    zpath = _zip_with(tmp_path / "ds.zip", [
        ("data.yaml", b"names: [chip]\n", False),
        ("images/a.png", png_bytes(random_rgb(5)), False),
        ("labels/a.txt", b"0 0.5 0.5 0.25 0.5\n", False),
        (entry, b"/etc/passwd" if entry == "link.png" else png_bytes(random_rgb(6)), entry == "link.png"),
    ])
    rep = import_sources(empty, [zpath])
    assert rep.imported == 1 and rep.annotations_added == 1
    assert [(im.name, im.status) for im in empty.images()] == [("ds.zip/images/a.png", "done")]
    assert reason in _reasons(rep)[f"ds.zip/{entry}"]
    written = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    assert all(p == "ds.zip" or p.startswith("proj/") for p in written)  # nothing written outside the project
    assert not list((empty.root / "cache").iterdir())  # the unpacked copy is gone


def test_folder_with_a_coco_json_imports_its_labels_and_the_other_images(tmp_path, empty):
    path = _coco(tmp_path, [{"id": 1, "image_id": 1, "segmentation": [GOOD_POLY], "category_id": 7}])
    (path.parent / "images" / "other.png").write_bytes(png_bytes(random_rgb(40)))  # named by no JSON
    rep = import_sources(empty, [path.parent])
    assert rep.imported == 3 and rep.annotations_added == 1 and not rep.rejected
    assert {im.name: im.status for im in empty.images()} == {
        "im0.png": "done", "im1.png": "unlabeled", "coco/images/other.png": "unlabeled"}


def _coco(tmp_path: Path, annotations: list[dict], n_images: int = 2) -> Path:
    root = tmp_path / "coco"
    (root / "images").mkdir(parents=True)
    images = []
    for i in range(n_images):
        (root / "images" / f"im{i}.png").write_bytes(png_bytes(random_rgb(10 + i)))
        images.append({"id": i + 1, "file_name": f"im{i}.png", "width": 64, "height": 48})
    doc = {"images": images, "annotations": annotations,
           "categories": [{"id": 7, "name": "chip"}, {"id": 9, "name": "stain"}]}
    (root / "gt.json").write_text(json.dumps(doc))
    return root / "gt.json"


def _mask() -> np.ndarray:
    m = np.zeros((48, 64), bool)
    m[10:20, 10:30] = True
    m[13:16, 15:20] = False  # a hole
    return m


GOOD_POLY = [10, 10, 30, 10, 30, 20, 10, 20]
RLE = encode_rle(_mask())
_RUNS = [480 + 10, 10] + [38, 10] * 19
UNCOMPRESSED = {"size": [48, 64], "counts": [*_RUNS, 48 * 64 - sum(_RUNS)]}  # runs cover the image exactly


@pytest.mark.parametrize(
    "ann, reason",
    [
        ({"segmentation": [[10, 10, 20, 10]], "category_id": 7}, "fewer than 3 points"),  # 2-point polygon
        ({"segmentation": {"size": [48, 64], "counts": encode_rle(np.zeros((48, 64), bool))["counts"]},
          "category_id": 7}, "empty mask"),  # empty RLE
        ({"segmentation": [GOOD_POLY], "category_id": 3}, "unknown category id 3"),  # unknown category
        ({"segmentation": {"size": [10, 10], "counts": RLE["counts"]}, "category_id": 7}, "does not match"),  # size
    ],
    ids=["short-polygon", "empty-mask", "unknown-category", "rle-size"],
)
def test_coco_bad_annotations_rejected_rest_imports(tmp_path, empty, ann, reason):
    good = [
        {"id": 1, "image_id": 1, "segmentation": [GOOD_POLY], "category_id": 7, "iscrowd": 0},  # polygon
        {"id": 2, "image_id": 1, "segmentation": RLE, "category_id": 9, "iscrowd": 0},  # compressed RLE
        {"id": 3, "image_id": 1, "segmentation": UNCOMPRESSED, "category_id": 9, "iscrowd": 0},  # list counts
        {"id": 4, "image_id": 1, "bbox": [1, 2, 5, 6], "category_id": 7, "iscrowd": 0},  # box only
    ]
    rep = import_sources(empty, [_coco(tmp_path, [*good, {"id": 5, "image_id": 1, **ann}])])
    assert rep.imported == 2 and rep.annotations_added == 4
    assert reason in _reasons(rep)["gt.json: im0.png annotation 5"]  # the file, the annotation, the fault
    assert [c.name for c in empty.classes()] == ["chip", "stain"]
    first, second = empty.images()
    assert (first.status, second.status) == ("done", "unlabeled")  # no annotations: not assumed good
    ann_ = empty.annotations(first.id)
    assert set(ann_.source) == {"import"} and set(ann_.status) == {"accepted"}
    assert np.array_equal(ann_.full_mask(1), _mask())  # RLE kept exactly, hole included
    assert ann_.full_mask(2).sum() > 0
    assert ann_.has_mask.tolist() == [True, True, True, False]  # bbox-only stored box-only
    assert tuple(ann_.xyxy[3]) == (1, 2, 6, 8)


def test_coco_missing_image_file_is_reported(tmp_path, empty):
    path = _coco(tmp_path, [])
    (path.parent / "images" / "im1.png").unlink()
    rep = import_sources(empty, [path])
    assert rep.imported == 1 and "not found" in _reasons(rep)["im1.png"]


def _yolo(tmp_path: Path, lines: list[str], names_as_dict: bool) -> Path:
    root = tmp_path / "yolo"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
    (root / "images" / "train" / "a.png").write_bytes(png_bytes(random_rgb(20)))
    (root / "labels" / "train" / "a.txt").write_text("\n".join(lines) + "\n")
    (root / "images" / "val" / "b.png").write_bytes(png_bytes(random_rgb(21)))
    (root / "labels" / "val" / "b.txt").write_text("")  # background image
    names = "names:\n  0: chip\n  1: stain\n" if names_as_dict else "names: [chip, stain]\n"
    (root / "data.yaml").write_text("train: images/train\nval: images/val\n" + names)
    return root


@pytest.mark.parametrize(
    "line, reason",
    [
        ("0 0.5 0.5 1.2 0.1", "out of range"),  # box wider than the image
        ("1 -0.1 0.2 0.3 0.2 0.3 0.4", "out of range"),  # negative polygon coordinate
        ("2 0.5 0.5 0.1 0.1", "class id 2 out of range"),  # class id beyond names
        ("-1 0.5 0.5 0.1 0.1", "class id -1 out of range"),  # negative class id
        ("0 0.1 0.2 0.3", "polygon values"),  # odd count
        ("zero 0.1 0.2 0.3 0.4", "malformed"),  # not a number
    ],
    ids=["box-out", "poly-negative", "class-high", "class-negative", "odd-values", "malformed"],
)
@pytest.mark.parametrize("names_as_dict", [False, True], ids=["names-list", "names-dict"])
def test_yolo_bad_lines_rejected_rest_imports(tmp_path, empty, line, reason, names_as_dict):
    good = ["0 0.5 0.5 0.25 0.5", "1 0.1 0.1 0.4 0.1 0.4 0.5 0.1 0.5"]  # detect box, segment polygon
    root = _yolo(tmp_path, [good[0], line, good[1]], names_as_dict)
    rep = import_sources(empty, [root])
    assert rep.imported == 2 and rep.annotations_added == 2
    assert reason in _reasons(rep)["yolo/labels/train/a.txt:2"]
    a, b = sorted(empty.images(), key=lambda r: r.name)
    assert a.name == "yolo/images/train/a.png" and a.status == "done"
    assert b.status == "good"  # an empty label file marks a background image (Ultralytics' convention)
    assert rep.background == 1
    rows = empty.annotations(a.id, ("accepted",))
    boxes = [tuple(float(v) for v in b) for b, m in zip(rows.xyxy, rows.has_mask, strict=True) if not m]
    assert boxes == [(24.0, 12.0, 40.0, 36.0)]  # detect line: stored box-only, in pixels
    assert int(rows.has_mask.sum()) == 1  # segment line: a mask
    assert [c.name for c in empty.classes()] == ["chip", "stain"]


def test_import_twice_adds_nothing(tmp_path, empty):
    path = _coco(tmp_path, [{"id": 1, "image_id": 1, "segmentation": [GOOD_POLY], "category_id": 7}])
    first = import_sources(empty, [path])
    again = import_sources(empty, [path])
    assert first.imported == 2 and again.imported == 0 and len(again.duplicates) == 2
    assert len(empty.images()) == 2 and empty.stats()["annotations"]["chip"]["accepted"] == 1


def test_interrupted_import_finishes_without_duplicates(tmp_path, empty, monkeypatch):
    path = _coco(tmp_path, [{"id": 1, "image_id": 2, "segmentation": [GOOD_POLY], "category_id": 7}], n_images=3)
    import data.importers as importers

    real, calls = importers._import_one, []

    def crash_on_second(*args, **kw):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user kills the import mid-way
        return real(*args, **kw)

    monkeypatch.setattr(importers, "_import_one", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        import_sources(empty, [path])
    monkeypatch.undo()
    rep = import_sources(empty, [path])
    assert rep.imported == 2 and rep.duplicates == ("im0.png",)
    assert len(empty.images()) == 3 and empty.stats()["annotations"]["chip"]["accepted"] == 1


def test_missing_source_and_unknown_type(tmp_path, empty):
    (tmp_path / "x.docx").write_text("?")
    rep = import_sources(empty, [tmp_path / "nope", tmp_path / "x.docx"])
    assert rep.imported == 0 and len(rep.rejected) == 2


@pytest.mark.parametrize(
    "path_value",
    [
        "/",  # absolute: the whole disk
        "../outside",  # a sibling folder of the dataset
    ],
)
def test_yolo_yaml_path_cannot_leave_its_folder(tmp_path, empty, path_value):
    outside = tmp_path / "outside" / "images"
    outside.mkdir(parents=True)
    (outside / "secret.png").write_bytes(png_bytes(random_rgb(30)))
    root = _yolo(tmp_path, ["0 0.5 0.5 0.25 0.5"], False)
    (root / "data.yaml").write_text(f"path: {path_value}\ntrain: images/train\nnames: [chip, stain]\n")
    rep = import_sources(empty, [root])
    assert all("secret" not in im.name for im in empty.images())
    assert {im.name for im in empty.images()} == {"yolo/images/train/a.png", "yolo/images/val/b.png"}
    (where, what), = [n for n in rep.notes if n[0] == "data.yaml"]  # said, with how to fix it
    assert f"'path: {path_value}' points outside its folder" in what and "set 'path: .'" in what


def test_yolo_symlinked_images_are_not_followed(tmp_path, empty):
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(png_bytes(random_rgb(31)))
    root = _yolo(tmp_path, ["0 0.5 0.5 0.25 0.5"], False)
    (root / "images" / "train" / "link.png").symlink_to(outside)
    import_sources(empty, [root])
    assert "link" not in " ".join(im.name for im in empty.images())
