"""Export: selection, split, layout, determinism, atomicity, zip (data/export.py)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml

import data.export as export_mod
from data.errors import InputError, ProjectError
from data.export import export_project, stratified_split
from tests.data.conftest import make_project


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("fmt", ["coco", "yolo-detect", "yolo-segment"], ids=["coco", "detect", "segment"])
def test_only_done_and_good_images_and_accepted_annotations(project, tmp_path, fmt):
    done = project.images(status="done")[0]
    ids = project.annotations(done.id, ("accepted",)).ids
    project.set_annotation_status([int(ids[0])], "proposed")
    res = export_project(project, fmt, tmp_path / "out")
    assert sum(res.n_images.values()) == 8  # 6 done + 2 good; the unlabeled one is left out
    assert res.n_annotations == 6 * 3 - 1
    with_proposed = export_project(project, fmt, tmp_path / "out2", include_proposed=True)
    assert with_proposed.n_annotations == 18 and with_proposed.content_hash != res.content_hash
    images = [p.name for p in (tmp_path / "out" / "images").rglob("*.png")]
    assert len(images) == 8 and not any(p.startswith("img_8_") for p in images)
    if fmt != "coco":
        labels = list((tmp_path / "out" / "labels").rglob("*.txt"))
        assert len(labels) == 8 and sum(1 for p in labels if p.read_text() == "") == 2  # good = empty file
        doc = yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())
        assert "path" not in doc and doc["names"] == {0: "a", 1: "b", 2: "c"}
    else:
        doc = json.loads((tmp_path / "out" / "annotations" / "instances_train.json").read_text())
        assert [c["id"] for c in doc["categories"]] == [1, 2, 3] and "1..K" in doc["info"]["description"]
        assert [im["id"] for im in doc["images"]] == list(range(1, len(doc["images"]) + 1))


@pytest.mark.parametrize("fmt", ["coco", "yolo-detect", "yolo-segment"], ids=["coco", "detect", "segment"])
@pytest.mark.parametrize("as_zip", [False, True], ids=["folder", "zip"])
def test_export_is_deterministic(project, tmp_path, fmt, as_zip):
    a = export_project(project, fmt, tmp_path / "a", zip=as_zip, rle=True)
    b = export_project(project, fmt, tmp_path / "b", zip=as_zip, rle=True)
    assert a.content_hash == b.content_hash
    if as_zip:
        assert a.out_path.read_bytes() == b.out_path.read_bytes()
        with zipfile.ZipFile(a.out_path) as zf:
            kinds = {i.filename.split("/")[0]: i.compress_type for i in zf.infolist()}
        assert kinds["images"] == zipfile.ZIP_STORED  # PNGs are not recompressed
    else:
        assert _files(tmp_path / "a") == _files(tmp_path / "b")


@pytest.mark.parametrize(
    "labels, fraction",
    [
        ({i: frozenset({i % 3}) for i in range(30)}, 0.2),  # one class per image
        ({i: frozenset({i % 3, (i + 1) % 4}) for i in range(12)}, 0.3),  # several classes per image
        ({0: frozenset({1}), 1: frozenset({1}), 2: frozenset({2}), 3: frozenset()}, 0.2),  # tiny, rare class
        ({i: frozenset({0}) if i < 40 else frozenset({1}) for i in range(42)}, 0.1),  # skewed 40:2
    ],
    ids=["single-label", "multi-label", "tiny", "skewed"],
)
@pytest.mark.parametrize("seed", [0, 1, 7])
def test_split_puts_every_class_with_two_images_in_both(labels, fraction, seed):
    split = stratified_split(labels, fraction, seed)
    classes = set().union(*labels.values())
    for c in classes:
        members = [i for i, cs in labels.items() if c in cs]
        if len(members) >= 2:
            assert {split[i] for i in members} == {"train", "val"}, c
    assert split == stratified_split(labels, fraction, seed)  # seeded
    assert set(stratified_split(labels, 0.0, seed).values()) == {"train"}


def test_val_fraction_zero_writes_train_only(project, tmp_path):
    res = export_project(project, "yolo-segment", tmp_path / "out", val_fraction=0)
    assert res.n_images == {"train": 8, "val": 0}
    assert yaml.safe_load((tmp_path / "out" / "data.yaml").read_text())["val"] == "images/train"


def test_good_images_are_split_by_fraction(tmp_path):
    p = make_project(tmp_path / "p", n_done=0, n_good=10, n_unlabeled=0)
    res = export_project(p, "coco", tmp_path / "out", val_fraction=0.3)
    assert res.n_images == {"train": 7, "val": 3}


def test_crash_mid_export_leaves_nothing(project, tmp_path, monkeypatch):
    calls = []

    def failing_write(path, content):
        calls.append(path)
        if len(calls) == 3:
            raise OSError("disk full")
        path.write_bytes(content)

    monkeypatch.setattr(export_mod, "_write", failing_write)
    with pytest.raises(OSError, match="disk full"):
        export_project(project, "yolo-segment", tmp_path / "out")
    assert list(tmp_path.iterdir()) == [tmp_path / "project"]  # no out, no temp folder


def test_crash_keeps_the_previous_export(project, tmp_path, monkeypatch):
    first = export_project(project, "yolo-detect", tmp_path / "out")
    before = _files(tmp_path / "out")
    monkeypatch.setattr(export_mod, "_write", lambda path, content: (_ for _ in ()).throw(OSError("boom")))
    with pytest.raises(OSError):
        export_project(project, "yolo-detect", tmp_path / "out")
    assert _files(tmp_path / "out") == before and first.out_path.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "project"]


def test_refuses_to_overwrite_foreign_folder_but_replaces_own_export(project, tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.docx").write_text("precious")
    with pytest.raises(InputError, match="refusing to overwrite"):
        export_project(project, "coco", foreign)
    assert (foreign / "thesis.docx").read_text() == "precious"
    export_project(project, "coco", tmp_path / "out")
    res = export_project(project, "yolo-segment", tmp_path / "out")  # our previous export: replaced
    assert (res.out_path / "data.yaml").is_file() and not (res.out_path / "annotations").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    export_project(project, "coco", empty)  # an empty folder is fine


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"fmt": "voc"}, "unknown export format"),  # format
        ({"fmt": "coco", "val_fraction": 1.0}, "val-fraction"),  # everything in val
        ({"fmt": "coco", "val_fraction": -0.1}, "val-fraction"),  # negative
    ],
    ids=["format", "fraction-1", "fraction-negative"],
)
def test_bad_arguments(project, tmp_path, kwargs, message):
    with pytest.raises(InputError, match=message):
        export_project(project, out=tmp_path / "o", **kwargs)


def test_export_names_are_readable_and_unique(tmp_path):
    p = make_project(tmp_path / "p", n_done=3, n_good=0, n_unlabeled=0)
    res = export_project(p, "yolo-detect", tmp_path / "out", val_fraction=0)
    names = sorted(x.name for x in (res.out_path / "images" / "train").iterdir())
    shas = {r.sha256[:10] for r in p.images()}
    assert [n.split("_")[0] for n in names] == ["img"] * 3 and {n[-14:-4] for n in names} == shas


@pytest.mark.parametrize("seed", range(5))
def test_fast_crop_tracing_matches_full_decode(seed):
    """Exports trace polygons on the mask's crop only; same result as tracing the whole mask."""
    from data.annotations import Annotations
    from data.geometry import encode_rle, mask_to_polygons, rle_crop
    from tests.data.conftest import blob_masks

    for m in blob_masks(48, 64, seed):
        rle = encode_rle(m)
        assert Annotations.from_masks(m, 1).polygons(0) == mask_to_polygons(m)
        assert np.array_equal(rle_crop(rle, 5, 40), m[:, 5:40])


def test_zipping_an_export_folder_gives_the_same_bytes_as_a_zip_export(tmp_path, project):
    from data.export import export_project, zip_export

    folder = export_project(project, "yolo-segment", tmp_path / "ds").out_path
    zipped = zip_export(folder)
    direct = export_project(project, "yolo-segment", tmp_path / "direct.zip", zip=True).out_path
    assert zipped.read_bytes() == direct.read_bytes()


@pytest.mark.parametrize("fmt", ["coco", "yolo-segment"], ids=["coco", "segment"])
def test_export_writes_the_labels_as_they_were_when_it_started(project, tmp_path, fmt):
    """Another session labels during an export: a new class and its annotations, a deletion.

    The export reads one state of the project, so it neither fails on a class its class list
    lacks nor writes half of the edit; the next export has all of it.
    """
    import threading

    from data.annotations import Annotations

    before = export_project(project, fmt, tmp_path / "before")
    done = project.images(status="done")
    edited = []

    def other_session() -> None:
        cid = project.add_class("late").id
        m = np.zeros((done[-1].height, done[-1].width), bool)
        m[2:9, 2:9] = True
        project.add_annotations(done[-1].id, Annotations.from_masks(m[None], [cid], source="manual"))
        project.delete_annotations([int(project.annotations(done[-1].id, ("accepted",)).ids[0])])
        edited.append(True)

    def progress(i: int, n: int) -> None:
        if i == 1:  # in another thread, as a second browser session would
            t = threading.Thread(target=other_session)
            t.start()
            t.join()

    during = export_project(project, fmt, tmp_path / "during", progress=progress)
    assert edited
    assert during.content_hash == before.content_hash and during.class_names == before.class_names
    after = export_project(project, fmt, tmp_path / "after")
    assert after.class_names == (*before.class_names, "late") and after.content_hash != before.content_hash


def test_an_image_file_gone_mid_export_is_a_clear_error_and_the_previous_export_stays(project, tmp_path):
    first = export_project(project, "coco", tmp_path / "out")
    rec = project.images(status="done")[-1]
    (project.root / rec.file).unlink()
    with pytest.raises(ProjectError, match="is missing"):
        export_project(project, "coco", tmp_path / "out")
    assert export_mod._is_our_export(tmp_path / "out")
    assert json.loads((tmp_path / "out" / export_mod.MARKER).read_text())["content_hash"] == first.content_hash


def test_an_unwritable_target_is_a_clear_error_and_keeps_the_previous_export(project, tmp_path):
    out = tmp_path / "out"
    export_project(project, "coco", out)
    before = _files(out)
    blocker = tmp_path / "plain-file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="cannot write the export"):
        export_project(project, "coco", blocker / "export")  # its parent is a file
    assert _files(out) == before and not (tmp_path / "plain-file").is_dir()
