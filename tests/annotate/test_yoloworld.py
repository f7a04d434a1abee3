"""YOLO-World: the real architecture randomly initialised, text features supplied (no CLIP download).

Proposals flow through auto-label into the store and review; text features are computed once per
vocabulary (memory and disk); missing weights are reported with the file names.
"""

from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from annotate import review
from annotate.autolabel import autolabel
from annotate.proposers.registry import create_proposer, project_vocabulary, proposer_statuses
from annotate.proposers.yoloworld import TextCache, YoloWorldProposer
from data.errors import WeightsMissingError
from data.store import Project


class FakeText:
    """Stands in for CLIP's text encoder: unit vectors, one per prompt."""

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, prompts):
        self.calls += 1
        rng = np.random.default_rng(len(prompts))
        f = rng.standard_normal((len(prompts), 512)).astype(np.float32)
        return f / np.linalg.norm(f, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def world_model():
    from ultralytics import YOLOWorld

    model = YOLOWorld("yolov8s-worldv2.yaml")  # real architecture, random weights
    # Random weights score every anchor near zero (the head's prior bias); lift it so boxes come out.
    for head in model.model.model[-1].cv4:
        head.bias.data.fill_(0.0)
    return model


@pytest.fixture
def project(tmp_path) -> Project:
    project = Project.create(tmp_path / "p", ["contamination", "broken_small"])
    project.update_class(project.class_by_name("contamination").id, prompts=("stain", "dirt"))
    rng = np.random.default_rng(0)
    for i in range(2):
        rgb = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        content = cv2.imencode(".png", rgb)[1].tobytes()
        project.add_image(content, f"{i}.png", hashlib.sha256(content).hexdigest(), 160, 120, ".png")
    return project


def test_prompts_map_back_to_their_class_and_flow_to_review(world_model, project):
    vocab = project_vocabulary(project)
    cont, small = project.class_by_name("contamination").id, project.class_by_name("broken_small").id
    assert vocab == {cont: ("contamination", "stain", "dirt"), small: ("broken small",)}
    text = TextCache(FakeText, project.path("cache", "text"))
    prop = YoloWorldProposer(world_model, vocab, text, imgsz=160, conf=0.3)
    rep = autolabel(project, prop, None, select="unlabeled", min_score=0.3)
    assert rep.images_done == 2 and rep.proposals_added > 0 and rep.detect_s > 0
    anns = [project.annotations(r.id, statuses=("proposed",)) for r in project.images()]
    classes = set(np.concatenate([a.class_id for a in anns]).tolist())
    assert classes <= {cont, small}  # four prompts, two classes
    assert all(set(a.source) <= {"yoloworld-v2-s"} for a in anns)
    assert world_model.model.model[-1].nc == 4 and world_model.model.txt_feats.shape == (1, 4, 512)
    res = review.accept_above(project, 0.0)
    assert res.changed + res.dropped_duplicates == rep.proposals_added


def test_text_features_once_per_vocabulary(tmp_path):
    enc = FakeText()
    cache = TextCache(lambda: enc, tmp_path / "text")
    a = cache.features(["stain", "dirt"])
    b = cache.features(["stain", "dirt"])
    cache.features(["crack"])
    assert enc.calls == 2 and a is b
    fresh_enc = FakeText()
    again = TextCache(lambda: fresh_enc, tmp_path / "text").features(["stain", "dirt"])  # a restart: from disk
    assert fresh_enc.calls == 0 and np.allclose(again, a)


def test_two_vocabularies_do_not_leak(world_model):
    img = np.random.default_rng(1).integers(0, 255, (96, 128, 3), dtype=np.uint8)
    p1 = YoloWorldProposer(world_model, {1: ("stain",)}, TextCache(FakeText), imgsz=128, conf=0.3)
    p2 = YoloWorldProposer(world_model, {5: ("crack",), 6: ("chip",)}, TextCache(FakeText), imgsz=128, conf=0.3)
    assert set(p1.propose(img, "a").class_id.tolist()) <= {1}
    assert set(p2.propose(img, "a").class_id.tolist()) <= {5, 6}
    assert set(p1.propose(img, "a").class_id.tolist()) <= {1}


def test_missing_weights_name_the_files(tmp_path, project):
    with pytest.raises(WeightsMissingError, match="yolov8m-worldv2.pt"):
        create_proposer("yoloworld-m", project=project, weights_dir=str(tmp_path), device="cpu")
    (tmp_path / "yolov8s-worldv2.pt").write_bytes(b"x")
    with pytest.raises(WeightsMissingError, match="ViT-B-32.pt"):
        create_proposer("yoloworld", project=project, weights_dir=str(tmp_path), device="cpu")
    from annotate.proposers.yoloworld import ClipText

    with pytest.raises(WeightsMissingError, match="ViT-B-32.pt"):
        ClipText(tmp_path)
    rows = {r.name: r for r in proposer_statuses(str(tmp_path), "cpu")}
    assert rows["yoloworld-v2-s"].state == "missing" and "ViT-B-32.pt" in rows["yoloworld-v2-s"].note
    assert rows["yoloworld-v2-x"].filename == "yolov8x-worldv2.pt" and rows["anomaly"].state == "builtin"


def test_clip_installed_but_broken_is_told_apart_from_not_installed(monkeypatch):
    from annotate.proposers import yoloworld

    assert yoloworld.clip_problem() is None  # the pinned clip-anytorch imports (without pkg_resources)

    def broken():
        raise ModuleNotFoundError("No module named 'pkg_resources'")

    monkeypatch.setattr(yoloworld, "import_clip", broken)
    assert "installed but cannot be imported" in yoloworld.clip_problem()
    monkeypatch.setattr(yoloworld.importlib.util, "find_spec", lambda name: None)
    assert "not installed: pip install clip-anytorch" in yoloworld.clip_problem()
