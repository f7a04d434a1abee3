"""Submitting a run: what is refused before anything is recorded."""

from __future__ import annotations

import pytest

from data.errors import InputError
from data.store import Project
from tests.train.conftest import CLASSES
from train import jobs
from train.models import TrainSettings


@pytest.mark.parametrize(
    "label_status",
    [
        None,  # no image labeled at all
        "unlabeled",  # images exist, none marked done
        "done-without-labels",  # done images, but their labels were rejected
    ],
)
def test_nothing_to_train_on_is_refused_before_a_run_exists(tmp_path, label_status):
    project = Project.create(tmp_path / "p", CLASSES)
    if label_status:
        from tests.train.conftest import make_project

        project = make_project(tmp_path / "q", n=2, n_good=0)
        for im in project.images():
            project.set_image_status(im.id, "unlabeled" if label_status == "unlabeled" else "done")
            if label_status == "done-without-labels":
                ann = project.annotations(im.id)
                project.set_annotation_status(ann.ids.tolist(), "rejected")
    with pytest.raises(InputError, match="nothing to train on"):
        jobs.submit(project, TrainSettings(epochs=1, imgsz=64))
    assert jobs.list_runs(project) == []
