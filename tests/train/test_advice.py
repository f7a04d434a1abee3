"""Before a run, what keeps its settings from learning; after it, whether it learned; the epoch cap
under a time budget; the threads a run trains with (table-driven where there are cases)."""

from __future__ import annotations

import argparse
import types
from dataclasses import replace

import numpy as np
import pytest

from data.annotations import Annotations
from tests.train.conftest import make_project
from train import advice
from train.models import MIN_VAL_EARLY_STOP, TrainSettings, training_threads, ultralytics_args
from train.worker import _Progress


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "p", n=6, n_good=2)  # 96x96 images, a 19x15 chip and a 19 px disc on each


def _problems(project, **settings) -> list[str]:
    s = replace(TrainSettings(weights_dir="/nonexistent-weights"), **settings)
    return [a.problem for a in advice.check(project, s)]


@pytest.mark.parametrize(
    "settings, expected",
    [
        ({}, None),  # the defaults: a 15-minute budget from scratch, the defects 70 px wide at 448
        ({"imgsz": 32}, None),  # the 15 px chip of a 96 px image is 5 px at 32: still findable
        ({"time_hours": None, "epochs": 5}, "trains from scratch, and 5 epochs are far too few"),
        ({"time_hours": None, "epochs": 300}, None),  # enough epochs without a budget
    ],
)
def test_settings_that_cannot_learn_are_named(project, settings, expected):
    problems = _problems(project, **settings)
    assert not [p for p in problems if "only" in p], problems  # 6 labelled images are enough
    if expected is None:
        assert not problems, problems
    else:
        assert any(expected in p for p in problems), problems


def test_a_tiny_defect_asks_for_a_larger_image_size(project):
    rec = project.images("done")[0]
    m = np.zeros((rec.height, rec.width), bool)
    m[40:42, 40:43] = True  # 2 px high on a 96 px image: 0.7 px at 32
    project.add_annotations(rec.id, Annotations.from_masks(m[None], project.classes()[0].id))
    s = replace(TrainSettings(weights_dir="/nonexistent-weights"), imgsz=32)
    found = [a for a in advice.check(project, s) if "shrinks" in a.problem]
    assert len(found) == 1 and found[0].change == {"imgsz": 288}  # 2 px * 288 / 96 = 6 px
    assert advice.recommended(s, found).imgsz == 288
    assert advice.flags(found[0].change) == "--imgsz 288"


def test_too_few_labelled_images(tmp_path):
    small = make_project(tmp_path / "small", n=2, n_good=1)
    assert any("only 2 done images with accepted defects" in p for p in _problems(small))


def test_scratch_advice_recommends_the_measured_budget(project):
    s = replace(TrainSettings(weights_dir="/nonexistent-weights"), time_hours=None, epochs=5)
    r = advice.recommended(s, advice.check(project, s))
    assert (r.time_hours, r.epochs) == (advice.SCRATCH_BUDGET_HOURS, 300)
    assert "--time-min 15" in advice.flags({"time_hours": 0.25})


@pytest.mark.parametrize(
    "metrics, learned",
    [({}, None), ({"box_map50": 0.0, "mask_map50": 0.0}, False), ({"box_map50": 0.049}, False),
     ({"box_map50": 0.02, "mask_map50": 0.3}, True), ({"mask_map50": 0.05}, True)],
)
def test_learned(metrics, learned):
    assert advice.learned(metrics) is learned


def test_the_recipe_and_the_threads():
    s = TrainSettings()
    args = ultralytics_args(s)
    assert (args["optimizer"], args["lr0"], args["nbs"], args["cache"]) == ("AdamW", 0.002, s.batch, "ram")
    assert ultralytics_args(replace(s, overrides={"lr0": 0.01}))["lr0"] == 0.01  # overrides win
    assert training_threads(replace(s, threads=1)) == 1
    assert training_threads(s) >= 1 and training_threads(s) == max(1, __import__("os").cpu_count() or 1)


class _Scheduler:
    last_epoch = -1


@pytest.mark.parametrize(
    "replanned, epoch, cap, epochs_after, stop",
    [
        (900, 0, 300, 300, False),  # Ultralytics fills 15 minutes with 900 epochs: capped at 300
        (900, 299, 300, 300, True),  # ... and stops after the 300th
        (40, 10, 300, 40, False),  # the budget comes first: left as Ultralytics planned
        (900, 0, 1, 1, True),  # a one-epoch run with a budget ends after one epoch
    ],
)
def test_a_time_budget_stops_at_the_epochs_too(tmp_path, replanned, epoch, cap, epochs_after, stop):
    progress = _Progress(None, "r", tmp_path / "cancel", max_epochs=cap)
    trainer = types.SimpleNamespace(epochs=replanned, epoch=epoch, stop=False, scheduler=_Scheduler(),
                                    args=argparse.Namespace(time=0.25, epochs=replanned))
    trainer._setup_scheduler = lambda: setattr(trainer, "scheduler", _Scheduler())
    progress.cap_epochs(trainer)
    assert (trainer.epochs, trainer.args.epochs, trainer.stop) == (epochs_after, epochs_after, stop)


def test_early_stopping_is_off_below_ten_validation_images():
    s = TrainSettings(patience=30)
    assert ultralytics_args(s, MIN_VAL_EARLY_STOP - 1)["patience"] == 10**6  # a few images: stops on noise
    assert ultralytics_args(s, MIN_VAL_EARLY_STOP)["patience"] == 30
    assert ultralytics_args(s)["patience"] == 30  # not known (a given dataset folder read later): as asked
