"""An assist round end to end on a tiny project (64 px, one epoch): it trains in the background at
one thread and low priority, keeps a model only when it beats the last one, proposes on the images
not yet done (the next ones first) under the one source ``assist``, replaces its own unreviewed
proposals, and never touches a user's decision."""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from data.annotations import Annotations
from tests.train.conftest import make_project, tiny_image
from train import assist, jobs
from train import proposer as run_mod
from train.assist_eval import ImageCheck, ProposalCheck
from train.models import TrainSettings

pytestmark = pytest.mark.slow
TINY = TrainSettings(imgsz=64, batch=4, workers=0, device="cpu", preset="none", patience=0, epochs=1)


def _add_unlabeled(project, n: int, seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    ids = []
    for i in range(n):
        img, _ = tiny_image(rng)
        content = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))[1].tobytes()
        ids.append(project.add_image(content, f"new_{i}.png", hashlib.sha256(content).hexdigest(), 96, 96, ".png")[0])
    return ids


def _fake_predict(project, run_id, image, device):
    """The run's prediction replaced (a one-epoch model finds nothing): one chip at a fixed place."""
    m = np.zeros(image.shape[:2], bool)
    m[10:30, 10:30] = True
    return Annotations.from_masks(m[None], project.classes()[0].id, 0.9, source=f"run:{run_id}", status="proposed")


def _fake_check(benefits: dict[str, float]):
    """assist_eval.check replaced: what a run's proposals save is what the test says (a one-epoch
    model would save nothing); the checks themselves are tested in test_assist_eval."""
    def fake(project, proposer, segmenter, image_ids, class_id=None):
        run = getattr(getattr(proposer, "inner", proposer), "run_id", None)
        labelled = {r.id for r in project.images() if r.status in ("done", "good")}
        assert image_ids and set(image_ids) <= labelled  # the round's validation split, found from its snapshot
        return ProposalCheck(0.5, benefits.get(run, 0.0), 1, 1, 0, [ImageCheck(image_ids[0], "v.png", 1, 1, 0)])
    return fake


def test_an_assist_round_end_to_end(tmp_path, monkeypatch):
    project = make_project(tmp_path / "p", n=6, n_good=2)
    new = _add_unlabeled(project, 3, seed=5)
    # the user accepted a label on the third new image: a proposal must not cover it
    m = np.zeros((96, 96), bool)
    m[10:30, 10:30] = True
    kept = project.add_annotations(new[2], Annotations.from_masks(m[None], project.classes()[1].id))[0]
    monkeypatch.setattr(assist, "MIN_DONE", 4)
    monkeypatch.setattr(assist, "ROUND_HOURS", 20 / 3600)
    monkeypatch.setattr(assist, "LEARNED_MAP50", -1.0)  # keep the one-epoch model: it stands for a real one
    monkeypatch.setattr(run_mod, "predict_run", _fake_predict)
    benefits: dict[str, float] = {}
    monkeypatch.setattr(assist, "check", _fake_check(benefits))

    state = assist.load(project)
    assert assist.due(project, state) and assist.summary(state) == "no assist model yet"
    run_id = assist.start_round(project, state, TINY)
    benefits[run_id] = 2.0
    rec = jobs.get(project, run_id)
    assert (rec.settings.threads, rec.settings.nice, rec.settings.time_hours) == (1, 10, 20 / 3600)
    assert not assist.due(project, assist.load(project))  # one round at a time (the state is saved)
    assert assist.wait(project, run_id).status == "succeeded"
    model = assist.finish_round(project, state, order=[new[1], new[0]])
    assert model is not None and model.version == 1 and model.run_id == run_id
    assert model.proposals == 2 and model.proposed_images == 3  # the covered spot on new[2] is not proposed
    for image_id in new[:2]:
        props = project.annotations(image_id, statuses=("proposed",))
        assert len(props) == 1 and props.source.tolist() == ["assist"]
    assert len(project.annotations(new[2], statuses=("proposed",))) == 0
    assert project.annotation(kept)[1].status.tolist() == ["accepted"]  # the user's decision stands
    assert all(not len(project.annotations(r, statuses=("proposed",))) for r in project.images("done"))
    assert assist.summary(assist.load(project)).startswith("model 1: mask mAP50")
    assert model.min_score == 0.5 and model.replaced == 0.0
    assert "v.png: 1 missed, 0 false" in " ".join(assist.details(assist.load(project)))

    # a rejected spot is not proposed again by a later model; the older model's unreviewed ones are replaced
    first = project.annotations(new[0], statuses=("proposed",))
    project.set_annotation_status([int(first.ids[0])], "rejected")
    assert not assist.due(project, state)  # a round waits for NEW_DONE more done images than the last
    state.last_done -= assist.NEW_DONE
    assert assist.due(project, state)
    run2 = assist.start_round(project, state, TINY)
    benefits[run2] = 3.0  # saves more than model 1 on the same images
    assert jobs.get(project, run2).settings.model == str(jobs.get(project, run_id).best_weights)  # warm start
    assist.wait(project, run2)
    second = assist.finish_round(project, state)
    assert second is not None and second.version == 2
    assert len(project.annotations(new[0], statuses=("proposed",))) == 0  # rejected: not proposed again
    assert len(project.annotations(new[1], statuses=("proposed",))) == 1  # replaced, not doubled


def test_the_runner_says_what_it_waits_for_and_starts_nothing_early(tmp_path):
    project = make_project(tmp_path / "p", n=6, n_good=2)
    off = assist.Runner(project, enabled=False, poll_s=3600)
    assert off.view() == "Assist is off."
    on = assist.Runner(project, enabled=True, poll_s=3600)
    assert on.step() is None and not jobs.list_runs(project)  # 6 done images: below MIN_DONE
    assert on.view() == ("no assist model yet: the first round starts when 8 images are done (6 so far); "
                         "the anomaly proposer proposes once 3 images are marked good (2 so far)")
    off.close()
    on.close()


def test_before_the_first_model_the_anomaly_proposer_proposes_once(tmp_path):
    project = make_project(tmp_path / "p", n=5, n_good=5)  # uniform good images: some are the same file
    new = _add_unlabeled(project, 2, seed=7)
    on = assist.Runner(project, enabled=True, poll_s=3600)
    assert assist.anomaly_due(project, assist.load(project))
    on.step()
    state = assist.load(project)
    assert state.anomaly and not assist.anomaly_due(project, state)
    assert state.anomaly_class == project.classes()[0].id or state.anomaly_class in {c.id for c in project.classes()}
    sources = {s for i in new for s in project.annotations(i, statuses=("proposed",)).source}
    assert sources <= {"anomaly"}
    assert all(not len(project.annotations(r, statuses=("proposed",))) for r in project.images("done"))
    assert "anomaly proposer proposes" not in on.view()
    on.close()


def test_least_sure_first_takes_the_image_whose_score_is_nearest_the_threshold():
    state = assist.AssistState(unsure={"3": 0.2, "5": 0.9, "7": 0.9})
    assert assist.next_unsure(None, state, [3, 5, 7]) == 5  # a tie goes to the earlier in order
    assert assist.next_unsure(None, state, [9, 3]) == 3  # an image with no detection counts as sure
    assert assist.next_unsure(None, assist.AssistState(), [4, 2]) == 4 and assist.next_unsure(None, state, []) is None
    rec = assist._UnsureRecorder(_ScoreProposer([0.1, 0.45, 0.95]), threshold=0.4)
    rec.propose(np.zeros((8, 8, 3), np.uint8), "k")
    assert rec.unsure["k"] == pytest.approx(1 - 0.05 / 0.6)  # 0.45 is 0.05 from the threshold, at most 0.6 away


class _ScoreProposer:
    name, keeps_masks, predicts_classes = "scores", True, True

    def __init__(self, scores):
        self.scores = scores

    def propose(self, image, key):
        m = np.zeros(image.shape[:2], bool)
        m[2:5, 2:5] = True
        return Annotations.merge([Annotations.from_masks(m[None], 1, s) for s in self.scores])
