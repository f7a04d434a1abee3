"""Predict screen handlers with a fake predictor at the seam: one model call per image, sliders re-filter."""

from __future__ import annotations

import numpy as np
import pytest

from data.errors import InputError
from train import jobs
from train.models import TrainSettings
from train.predict import RawPrediction, refilter
from ui import predict_tab


class FakePredictor:
    """Two overlapping chips and a weak stain; counts model calls."""

    def __init__(self) -> None:
        self.calls = 0

    def predict_raw(self, image, conf, iou):
        self.calls += 1
        h, w = image.shape[:2]
        masks = np.zeros((3, h, w), bool)
        masks[0, 2:20, 2:20] = masks[1, 4:20, 4:20] = masks[2, 30:40, 30:40] = True
        raw = RawPrediction.from_arrays(
            h, w, np.array([[2, 2, 20, 20], [4, 4, 20, 20], [30, 30, 40, 40]], np.float32),
            np.array([0.9, 0.6, 0.2], np.float32), np.array([0, 0, 1]), masks, ("scratch", "stain"), conf, iou, 7.5)
        return refilter(raw, conf, iou)

    def predict(self, image, conf, iou, cached=None):
        if cached is not None and conf >= cached.conf and iou <= cached.iou:
            return refilter(cached, conf, iou)
        return self.predict_raw(image, conf, iou)


@pytest.fixture()
def fake_model(monkeypatch):
    model = FakePredictor()
    monkeypatch.setattr(predict_tab, "predictor_for", lambda project, run_id, device="auto": model)
    return model


def test_slider_change_rerenders_without_running_the_model(project, fake_model):
    image = np.full((60, 80, 3), 100, np.uint8)
    shown, info, cached = predict_tab.predict(project, "run-1", image, 0.25, 0.9)
    assert fake_model.calls == 1 and "**2 detections**" in info and "scratch: **2**" in info and "7.5 ms" in info
    assert shown.shape == image.shape and (shown != image).any()

    shown2, info2, cached2 = predict_tab.rerender(project, cached, 0.1, 0.9)
    assert fake_model.calls == 1  # the model was not run again
    assert "**3 detections**" in info2 and "stain: **1**" in info2 and "not re-run" in info2
    _, info3, _ = predict_tab.rerender(project, cached2, 0.1, 0.5)  # NMS at a lower IoU drops the overlapping chip
    assert fake_model.calls == 1 and "**2 detections**" in info3 and "scratch: **1**" in info3

    predict_tab.rerender(project, cached, 0.01, 0.7)  # below the floor the cache cannot answer: re-run
    assert fake_model.calls == 2


def test_predict_needs_a_run_and_an_image(project, fake_model):
    with pytest.raises(InputError, match="pick a trained run"):
        predict_tab.predict(project, None, np.zeros((8, 8, 3), np.uint8), 0.25, 0.7)
    with pytest.raises(InputError, match="upload an image"):
        predict_tab.predict(project, "r", None, 0.25, 0.7)
    assert predict_tab.rerender(project, None, 0.3, 0.7) is None


def test_grey_and_rgba_images_are_accepted(project, fake_model):
    assert predict_tab.predict(project, "r", np.zeros((60, 80), np.uint8), 0.25, 0.7)[0].shape == (60, 80, 3)
    assert predict_tab.predict(project, "r", np.zeros((60, 80, 4), np.uint8), 0.25, 0.7)[0].shape == (60, 80, 3)


def test_only_succeeded_runs_are_offered(project, monkeypatch):
    monkeypatch.setattr(jobs, "start_next", lambda project: None)
    monkeypatch.setattr(jobs, "_check_trainable", lambda project: None)  # the project has no labels
    ok = jobs.submit(project, TrainSettings(epochs=1, imgsz=160))
    jobs.update(project, ok, status="succeeded", class_names=["scratch", "stain"])
    jobs.submit(project, TrainSettings(epochs=1, imgsz=160))  # still queued
    assert [v for _, v in predict_tab.run_choices(project)] == [ok]
    assert len(predict_tab.image_choices(project)) == 3


def test_colours_follow_a_class_renamed_after_training(project, fake_model, monkeypatch):
    monkeypatch.setattr(jobs, "start_next", lambda project: None)
    monkeypatch.setattr(jobs, "_check_trainable", lambda project: None)
    scratch, stain = project.class_by_name("scratch").id, project.class_by_name("stain").id
    old = jobs.submit(project, TrainSettings(epochs=1, imgsz=160))
    jobs.update(project, old, status="succeeded", class_names=["scratch", "stain"])  # recorded without ids
    new = jobs.submit(project, TrainSettings(epochs=1, imgsz=160))
    jobs.update(project, new, status="succeeded", class_names=["scratch", "stain"], class_ids=[scratch, stain])
    project.update_class(scratch, name="crack", color="#FF0000")
    raw = fake_model.predict_raw(np.zeros((60, 80, 3), np.uint8), 0.05, 0.9)
    stain_color = project.get_class(stain).color
    assert predict_tab._colors(project, new, raw) == {"scratch": "#FF0000", "stain": stain_color}
    assert predict_tab._colors(project, old, raw) == {"stain": stain_color}  # by name: "scratch" is gone
    shown, _, _ = predict_tab.predict(project, new, np.zeros((60, 80, 3), np.uint8), 0.25, 0.9)
    assert (shown[2, 2] == (255, 0, 0)).all()  # the chip's box is drawn in the renamed class's colour
