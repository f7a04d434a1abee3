"""Batch auto-label: storage, no duplicates, accepted never overwritten, resume, cancel, run:ID (and its
classes after a rename or delete), CLI."""

from __future__ import annotations

import argparse
import hashlib
import threading

import cv2
import numpy as np
import pytest

from annotate import autolabel as al
from annotate.proposers.base import Proposer
from annotate.segmenters.base import Prediction, Segmenter
from data.annotations import Annotations
from data.errors import InputError
from data.store import Project

H, W = 48, 64


class BoxProposer(Proposer):
    """Two fixed boxes per image, class 1, scores 0.9 and 0.2; counts its calls."""

    name = "fake"
    keeps_masks = False

    def __init__(self) -> None:
        self.calls = 0

    def propose(self, image, key):
        self.calls += 1
        return Annotations.from_boxes(*image.shape[:2], [[4, 4, 20, 20], [30, 10, 50, 30]], [1, 1], [0.9, 0.2],
                                      source="fake")


class InsetSegmenter(Segmenter):
    """Box -> the box shrunk by 2 px, filled (so masks visibly come from the segmenter)."""

    name = "inset"

    def __init__(self) -> None:
        self.keys: list[str] = []

    def set_image(self, image, key):
        self.keys.append(key)
        self._shape = image.shape[:2]

    def predict(self, key, prompt, multimask=None):
        m = np.zeros(self._shape, bool)
        x0, y0, x1, y1 = (int(v) for v in prompt.box)
        m[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2] = True
        return Prediction(masks=m[None], scores=np.array([1.0]))


def make_project(tmp_path, n=3) -> Project:
    project = Project.create(tmp_path / "p", ["chip", "stain"])
    for i in range(n):
        rgb = np.full((H, W, 3), 100 + i, np.uint8)
        content = cv2.imencode(".png", rgb)[1].tobytes()
        project.add_image(content, f"{i}.png", hashlib.sha256(content).hexdigest(), W, H, ".png")
    return project


def all_annotations(project):
    return [project.annotations(r.id, statuses=("accepted", "proposed", "rejected")) for r in project.images()]


def test_proposals_are_stored_with_source_score_and_segmenter_masks(tmp_path):
    project = make_project(tmp_path)
    chip = project.class_by_name("chip").id
    rep = al.autolabel(project, BoxProposer(), InsetSegmenter(), min_score=0.5, class_id=chip)
    assert (rep.images_done, rep.proposals_added, rep.dropped_low_score) == (3, 3, 3)
    assert rep.images_per_s > 0 and rep.detect_s >= 0 and rep.mask_s >= 0
    for ann in all_annotations(project):
        assert len(ann) == 1
        assert ann.status[0] == "proposed" and ann.source[0] == "fake" and ann.class_id[0] == chip
        assert ann.confidence[0] == pytest.approx(0.9)
        assert ann.xyxy[0].tolist() == [6, 6, 18, 18]  # drawn by the segmenter from the box


def test_never_duplicates_or_overwrites_an_accepted_annotation(tmp_path):
    project = make_project(tmp_path, n=1)
    chip = project.class_by_name("chip").id
    image_id = project.images()[0].id
    rec = project.image(image_id)
    mine = Annotations.from_boxes(rec.height, rec.width, [[5, 5, 21, 21]], [chip], [np.nan], source="manual",
                                  status="accepted")
    project.add_annotations(image_id, mine)
    rep = al.autolabel(project, BoxProposer(), None, class_id=chip)
    assert rep.dropped_duplicates == 1 and rep.proposals_added == 1
    rep = al.autolabel(project, BoxProposer(), None, class_id=chip, redo=True)  # asked to run again
    assert rep.proposals_added == 0 and rep.dropped_duplicates == 2
    ann = all_annotations(project)[0]
    accepted = ann.filter(ann.status == "accepted")
    assert len(accepted) == 1 and accepted.source[0] == "manual" and accepted.xyxy[0].tolist() == [5, 5, 21, 21]
    assert len(ann) == 2


def test_cancel_then_resume_where_it_stopped(tmp_path):
    project = make_project(tmp_path, n=4)
    cancel = threading.Event()
    prop = BoxProposer()

    def progress(done, total):
        if done == 2:
            cancel.set()

    rep = al.autolabel(project, prop, None, class_id=1, progress=progress, cancel=cancel)
    assert rep.cancelled and rep.images_done == 2
    rep = al.autolabel(project, prop, None, class_id=1)
    assert not rep.cancelled and (rep.images_done, rep.images_skipped) == (2, 2)
    assert prop.calls == 4  # each image proposed on once
    assert [len(a) for a in all_annotations(project)] == [2, 2, 2, 2]


def test_select_unlabeled_skips_done_and_good_images(tmp_path):
    project = make_project(tmp_path, n=3)
    ids = [r.id for r in project.images()]
    project.set_image_status(ids[0], "done")
    project.set_image_status(ids[1], "good")
    assert [r.id for r in al.select_images(project, "unlabeled")] == [ids[2]]
    assert [r.id for r in al.select_images(project, "all")] == [ids[0], ids[2]]
    with pytest.raises(InputError):
        al.select_images(project, "some")


def test_run_proposer_keeps_its_own_classes_and_masks(tmp_path, monkeypatch):
    from annotate.proposers.registry import create_proposer
    from train import proposer as run_mod

    project = make_project(tmp_path, n=2)
    stain = project.class_by_name("stain").id

    def fake_predict(project_, run_id, image, device):
        assert run_id == "3"
        m = np.zeros((1, H, W), bool)
        m[0, 10:20, 10:30] = True
        return Annotations.from_masks(m, stain, 0.8, source="whatever", status="proposed")

    monkeypatch.setattr(run_mod, "predict_run", fake_predict)
    prop = create_proposer("run:3", project=project, device="cpu")
    seg = InsetSegmenter()
    rep = al.autolabel(project, prop, seg, min_score=0.25)
    assert rep.proposals_added == 2 and seg.keys == []  # a segmentation run's masks are kept
    ann = all_annotations(project)[0]
    assert ann.source[0] == "run:3" and ann.class_id[0] == stain and ann.full_mask(0).sum() == 200


class TwoClassModel:
    """A trained run's model at the ``train.predict.predictor_for`` seam: one chip and one stain per image."""

    names = ("chip", "stain")

    def predict_raw(self, image, conf=0.25, iou=0.7):
        from train.predict import RawPrediction

        masks = np.zeros((2, H, W), bool)
        masks[0, 4:14, 4:20] = masks[1, 20:40, 30:50] = True
        return RawPrediction.from_arrays(H, W, np.array([[4, 4, 20, 14], [30, 20, 50, 40]], np.float32),
                                         np.array([0.9, 0.8], np.float32), np.array([0, 1]), masks, self.names, conf,
                                         iou, 1.0)


def _recorded_run(project, monkeypatch, class_ids):
    """A succeeded run record (nothing trained) whose model is :class:`TwoClassModel`."""
    import train.predict as tp
    from train import jobs
    from train.models import TrainSettings

    monkeypatch.setattr(jobs, "start_next", lambda project: None)
    monkeypatch.setattr(jobs, "_check_trainable", lambda project: None)
    run_id = jobs.submit(project, TrainSettings(epochs=1, imgsz=64))
    fields = {} if class_ids is None else {"class_ids": class_ids}
    jobs.update(project, run_id, status="succeeded", class_names=list(TwoClassModel.names), **fields)
    monkeypatch.setattr(tp, "predictor_for", lambda project, run_id, device="auto": TwoClassModel())
    return run_id


def _proposer(project, run_id):
    from annotate.proposers.registry import create_proposer

    return create_proposer(f"run:{run_id}", project=project, device="cpu")


def _proposed_classes(project, run_id):
    ann = _proposer(project, run_id).propose(np.zeros((H, W, 3), np.uint8), "k")
    assert set(ann.source.tolist()) <= {f"run:{run_id}"} and set(ann.status.tolist()) <= {"proposed"}
    return ann.class_id.tolist()


def test_run_proposer_follows_a_class_renamed_after_training(tmp_path, monkeypatch):
    project = make_project(tmp_path, n=1)
    chip, stain = project.class_by_name("chip").id, project.class_by_name("stain").id
    run_id = _recorded_run(project, monkeypatch, [chip, stain])
    project.update_class(stain, name="rust")
    project.update_class(chip, name="stain")  # the model's "stain" name now belongs to another class
    assert _proposed_classes(project, run_id) == [chip, stain]


def test_run_proposer_drops_only_a_class_deleted_after_training(tmp_path, monkeypatch):
    project = make_project(tmp_path, n=1)
    chip, stain = project.class_by_name("chip").id, project.class_by_name("stain").id
    run_id = _recorded_run(project, monkeypatch, [chip, stain])
    project.delete_class(chip)
    project.add_class("chip")  # a new class of the old name is not the class the model learnt
    assert _proposed_classes(project, run_id) == [stain]
    rep = al.autolabel(project, _proposer(project, run_id), InsetSegmenter(), min_score=0.25)
    assert rep.proposals_added == 1 and all_annotations(project)[0].class_id.tolist() == [stain]


def test_run_recorded_without_class_ids_still_maps_by_name(tmp_path, monkeypatch):
    from train import jobs

    project = make_project(tmp_path, n=1)
    chip, stain = project.class_by_name("chip").id, project.class_by_name("stain").id
    run_id = _recorded_run(project, monkeypatch, None)  # a record from before ids were stored
    assert jobs.get(project, run_id).class_ids is None
    assert _proposed_classes(project, run_id) == [chip, stain]
    project.update_class(chip, name="crack")  # by name, a renamed class is not found
    assert _proposed_classes(project, run_id) == [stain]


def test_run_proposer_predicts_on_its_device_at_its_own_floor(tmp_path, monkeypatch):
    """The proposer's device reaches the model, and it predicts at RUN_CONF (--min-score filters later)."""
    import train.predict as tp
    from train.proposer import RUN_CONF

    project = make_project(tmp_path, n=1)
    run_id = _recorded_run(project, monkeypatch, None)
    seen = {}

    class Spy(TwoClassModel):
        def predict_raw(self, image, conf=0.25, iou=0.7):
            seen["conf"] = conf
            return super().predict_raw(image, conf, iou)

    def predictor_for(project_, run_id_, device="auto"):
        seen["device"] = device
        return Spy()

    monkeypatch.setattr(tp, "predictor_for", predictor_for)
    _proposed_classes(project, run_id)
    assert seen == {"device": "cpu", "conf": RUN_CONF}


def _args(**kw):
    base = dict(project=None, proposer="anomaly", select="unlabeled", min_score=None, segmenter=None,
                class_name=None, redo=False, weights_dir=None, device="cpu")
    base.update(kw)
    return argparse.Namespace(**base)


def test_cli_autolabel_anomaly(tmp_path, capsys):
    from annotate.proposers.cli import cmd_autolabel

    project = make_project(tmp_path, n=3)
    ids = [r.id for r in project.images()]
    with pytest.raises(InputError, match="good"):  # no reference images yet
        cmd_autolabel(_args(project=str(project.root), class_name="chip"))
    project.set_image_status(ids[0], "good")
    with pytest.raises(InputError, match="not in the project"):
        cmd_autolabel(_args(project=str(project.root), class_name="dent"))
    assert cmd_autolabel(_args(project=str(project.root), class_name="chip")) == 0
    out = capsys.readouterr().out
    assert "anomaly: 2 images proposed on" in out and "images/s" in out


@pytest.mark.parametrize(
    "predicts_classes, expected",
    [
        (True, {1}),  # a class-predicting proposer (YOLO-World, a run) keeps its own classes
        (False, {2}),  # a class-agnostic one (anomaly) takes the class the user picked
    ],
)
def test_picked_class_applies_only_to_class_agnostic_proposers(tmp_path, predicts_classes, expected):
    project = make_project(tmp_path, n=1)
    proposer = BoxProposer()
    proposer.predicts_classes = predicts_classes
    al.autolabel(project, proposer, None, min_score=0.0, class_id=2)
    assert set(all_annotations(project)[0].class_id.tolist()) == expected
