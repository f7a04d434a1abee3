"""``bench loop`` on a few sample images with a tiny budget: the simulated user's actions are
counted by kind, proposals are reviewed through the Label screen's server side, a model is trained
and scored on held-out images."""

from __future__ import annotations

import pytest

from bench import loop
from data.sample import generate
from train import assist

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    train, test = tmp_path_factory.mktemp("train"), tmp_path_factory.mktemp("test")
    generate(train, n=10, seed=21)
    generate(test, n=3, seed=22)
    return train, test


def test_a_tiny_loop_counts_every_action_and_scores_its_model(sets, monkeypatch):
    train, test = sets
    monkeypatch.setattr(loop, "MIN_TRAIN_S", 5.0)
    monkeypatch.setattr(loop, "FINISH_ALLOWANCE_S", 0.0)  # a 30 s budget has no 30 s to keep
    monkeypatch.setattr(assist, "ANOMALY_MIN_GOOD", 1)  # the first good image starts the proposals
    settings = loop.LoopSettings(budget_actions=45, budget_min=0.5, assist=True, imgsz=64, device="cpu", seed=0,
                                 policy="uncertainty")  # before any model: the seeded order
    r = loop.run_loop(train / "images", train / "ground_truth.json", test / "images", test / "ground_truth.json",
                      settings, say=lambda line: None)
    assert r["actions"] <= 45 and sum(r["actions_by_kind"].values()) == r["actions"]
    assert r["actions_by_kind"]["open"] >= r["images_done"] + r["images_good"]  # each image opened once
    assert r["actions_by_kind"]["mark"] == r["images_done"] + r["images_good"]
    assert r["instances_labelled"] > 0 and r["actions_per_instance"] >= 2  # at least a box and an accept
    assert r["train"] is not None and r["test"]["test_images"] == 3
    assert 0.0 <= r["test"]["mask"]["mAP50"] <= 1.0 and r["curve"][0][0] == r["actions"]
    assert r["wall_min"] <= 0.5 + 0.5  # the budget holds, up to the final validation
    assert r["actions_per_instance_by_source"].get("anomaly") is None or r["proposals"]


def test_an_unknown_policy_is_refused(sets):
    train, test = sets
    with pytest.raises(Exception, match="--policy must be one of order, uncertainty"):
        loop.run_loop(train / "images", train / "ground_truth.json", test / "images", test / "ground_truth.json",
                      loop.LoopSettings(policy="random"), say=lambda line: None)
