"""Labels for images the project already holds land on those images (not dropped as duplicates)."""

from __future__ import annotations

import json

import numpy as np

from data.importers import import_sources
from data.sample import generate
from data.store import Project


def _gt_count(root) -> int:
    return len(json.loads((root / "ground_truth.json").read_text())["annotations"])


def test_images_and_their_coco_file_imported_together_keep_every_label(tmp_path):
    generate(tmp_path / "s", n=6, seed=0)
    n_gt = _gt_count(tmp_path / "s")
    project = Project.create(tmp_path / "p")
    # The natural command: the folder of images, then the ground truth naming the same images.
    rep = import_sources(project, [tmp_path / "s" / "images", tmp_path / "s" / "ground_truth.json"])
    assert rep.imported == 6 and len(rep.duplicates) == 6
    assert rep.labels_merged == n_gt and rep.labels_already_there == 0 and rep.annotations_added == n_gt
    stored = sum(len(project.annotations(r.id, ("accepted",))) for r in project.images())
    assert stored == n_gt
    labelled = {r.id for r in project.images() if len(project.annotations(r.id, ("accepted",)))}
    assert all(r.status == "done" for r in project.images() if r.id in labelled)


def test_importing_the_same_labels_again_adds_nothing_and_counts_them(tmp_path):
    generate(tmp_path / "s", n=4, seed=1)
    n_gt = _gt_count(tmp_path / "s")
    project = Project.create(tmp_path / "p")
    import_sources(project, [tmp_path / "s" / "ground_truth.json"])
    again = import_sources(project, [tmp_path / "s" / "ground_truth.json"])
    assert again.imported == 0 and again.labels_merged == 0 and again.labels_already_there == n_gt
    assert sum(len(project.annotations(r.id, ("accepted",))) for r in project.images()) == n_gt


def test_a_new_label_on_a_known_image_is_added_beside_the_old_ones(tmp_path):
    generate(tmp_path / "s", n=2, seed=2)
    project = Project.create(tmp_path / "p")
    import_sources(project, [tmp_path / "s" / "ground_truth.json"])
    doc = json.loads((tmp_path / "s" / "ground_truth.json").read_text())
    im = doc["images"][0]
    extra = {"id": 999, "image_id": im["id"], "category_id": doc["categories"][0]["id"], "iscrowd": 0,
             "bbox": [1, 1, 6, 6]}
    doc["annotations"] = [a for a in doc["annotations"] if a["image_id"] == im["id"]] + [extra]
    (tmp_path / "s" / "more.json").write_text(json.dumps(doc))
    before = {r.name: len(project.annotations(r.id, ("accepted",))) for r in project.images()}
    rep = import_sources(project, [tmp_path / "s" / "more.json"])
    assert rep.labels_merged == 1 and rep.labels_already_there == len(doc["annotations"]) - 1
    rec = next(r for r in project.images() if r.name.endswith(im["file_name"]))
    ann = project.annotations(rec.id, ("accepted",))
    assert len(ann) == before[rec.name] + 1 and not ann.has_mask[-1]  # the box-only label, as a box
    assert np.allclose(ann.xyxy[-1], [1, 1, 7, 7])
