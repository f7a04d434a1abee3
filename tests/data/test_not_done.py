"""Accepted labels on images not marked done never leave an export silently: export and the CLI say
how many were left out, and one action marks done the images whose proposals are all reviewed."""

from __future__ import annotations

import argparse
import json

import numpy as np

from data.annotations import Annotations
from data.cli import cmd_export, cmd_mark_done
from data.export import export_project
from tests.data.conftest import make_project


def _label(project, rec, status: str, y: int = 5) -> None:
    m = np.zeros((rec.height, rec.width), bool)
    m[y : y + 6, 5:15] = True
    project.add_annotations(rec.id, Annotations.from_masks(m[None], project.classes()[0].id).with_status(status))


def _project(tmp_path):
    project = make_project(tmp_path / "p", n_done=2, n_good=1, n_unlabeled=3)
    a, b, c = project.images(status="unlabeled")
    _label(project, a, "accepted")  # labelled, never marked done
    _label(project, b, "accepted")
    _label(project, b, "proposed", y=30)  # ... with a proposal still to review
    return project, (a, b, c)


def test_labels_on_images_not_done_are_counted_and_named_in_the_export(tmp_path, capsys):
    project, (a, b, _) = _project(tmp_path)
    assert project.labels_not_done() == [(a.id, 1, 0), (b.id, 1, 1)]
    res = export_project(project, "coco", tmp_path / "out")
    assert res.not_done == (2, 2) and res.n_annotations == 6  # the done images' 3 + 3 only
    args = argparse.Namespace(project=project.root, format="coco", out=tmp_path / "out2", val_fraction=0.2, seed=0,
                              zip=False, rle=False, include_proposed=False, json=str(tmp_path / "e.json"))
    assert cmd_export(args) == 0
    out = capsys.readouterr().out
    assert "2 accepted annotations on 2 images not marked done were left out" in out and "mark-done" in out
    assert json.loads((tmp_path / "e.json").read_text())["not_done"] == {"images": 2, "accepted_annotations": 2}


def test_mark_done_marks_the_reviewed_ones_and_leaves_the_rest(tmp_path, capsys):
    project, (a, b, c) = _project(tmp_path)
    assert cmd_mark_done(argparse.Namespace(project=project.root, json=None)) == 0
    assert "marked 1 images done; 1 still have proposals to review" in capsys.readouterr().out
    status = {r.id: r.status for r in project.images()}
    assert (status[a.id], status[b.id], status[c.id]) == ("done", "unlabeled", "unlabeled")
    assert export_project(project, "coco", tmp_path / "out").not_done == (1, 1)
