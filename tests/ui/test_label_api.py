"""The Label screen's handlers with a fake segmenter: what the page sends and gets back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ui.label_api import LabelService, mask_payload
from ui.label_component import dispatch
from ui.sessions import SessionStore


@pytest.fixture()
def service(project, fake) -> LabelService:
    return LabelService(project, fake, prefetch=False)


def _open(service: LabelService, image_id: int = 1) -> str:
    token = service.open_page("owner-a")
    service.open_image(token, image_id)
    return token


def test_click_returns_only_the_overlay_with_three_candidates(service):
    token = _open(service)
    view = service.prompt(token, "pos", [40, 30])
    assert len(view["candidates"]) == 3  # the three candidates of a single click
    assert [c["score"] for c in view["candidates"]] == [0.9, 0.8, 0.7]
    small = view["candidates"][0]["mask"]
    assert (small["x"], small["y"], small["w"], small["h"]) == (36, 26, 9, 9)  # crop only, not the image
    assert len(json.dumps(view)) < 5000
    assert view["server_ms"] >= view["predict_ms"] >= 0


def test_accept_saves_chosen_candidate_with_class_and_source(service, project):
    token = _open(service)
    service.prompt(token, "pos", [40, 30])
    service.choose(token, 2)
    out = service.accept(token, project.class_by_name("stain").id)
    ann = project.annotations(1)
    assert out["saved"] == int(ann.ids[0])
    assert ann.source[0] == "fake" and ann.status[0] == "accepted"
    assert ann.class_id[0] == project.class_by_name("stain").id
    assert ann.mask[0].sum() == mask_payload(ann.mask[0])["area"] > 300  # the largest disc (r=12)
    assert out["pending"]["candidates"] == []


def test_undo_takes_back_prompt_then_accepted_annotation(service, project):
    token = _open(service)
    service.prompt(token, "pos", [40, 30])
    service.accept(token, 1)
    service.undo(token)  # the accept
    assert len(project.annotations(1)) == 0
    view = service.undo(token)["pending"]  # the click
    assert view["candidates"] == [] and view["points"] == []


def test_negative_point_and_box_reach_the_segmenter(service, fake):
    token = _open(service)
    service.prompt(token, "pos", [40, 30])
    service.prompt(token, "neg", [10, 10])
    _, prompt = fake.calls[-1]
    assert prompt.labels.tolist() == [1, 0]
    assert prompt.prev_mask is not None  # later clicks refine the chosen mask
    service.clear(token)
    view = service.prompt(token, "box", [70, 50, 5, 10])  # dragged up-left: normalised
    assert view["box"] == [5, 10, 70, 50]


def test_brush_eraser_and_polygon_make_manual_masks(service, project):
    token = _open(service)
    view = service.stroke(token, "brush", [[10, 10], [30, 10]], 3)
    assert view["manual"] and view["candidates"][0]["mask"]["w"] >= 26
    view = service.stroke(token, "eraser", [[20, 10]], 4)
    assert view["candidates"][0]["mask"]["area"] < 7 * 27
    service.accept(token, 1)
    assert project.annotations(1).source[0] == "manual"
    service.polygon(token, [[5, 5], [25, 5], [25, 25], [5, 25]])
    poly = service.polygon_of(token)["points"]
    assert len(poly) >= 4
    service.accept(token, 2)
    assert list(project.annotations(1).source) == ["manual", "manual"]


def test_edit_existing_annotation_updates_it_and_undo_restores(service, project):
    token = _open(service)
    service.prompt(token, "pos", [40, 30])
    ann_id = service.accept(token, 1)["saved"]
    before = project.annotations(1).mask[0].copy()
    service.edit(token, ann_id)
    service.stroke(token, "brush", [[70, 50]], 5)  # replaces the pending mask by a hand edit
    service.accept(token, 2)
    ann = project.annotations(1)
    assert len(ann) == 1 and ann.source[0] == "manual" and ann.class_id[0] == 2
    service.undo(token)
    ann = project.annotations(1)
    assert np.array_equal(ann.mask[0], before) and ann.class_id[0] == 1 and ann.source[0] == "fake"


def test_sessions_do_not_share_prompts(service, project):
    a, b = _open(service, 1), _open(service, 2)
    service.prompt(a, "pos", [40, 30])
    assert service.prompt(b, "pos", [10, 10])["points"] == [[10.0, 10.0, 1]]
    service.accept(a, 1)
    assert len(project.annotations(1)) == 1 and len(project.annotations(2)) == 0
    service.sessions.close_owner("owner-a")
    assert len(service.sessions) == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["bogus-token", "boot"], "expired"),  # unknown token
        (["T", "open_image", 999], "does not exist"),  # image id not in the project
        (["T", "open_image", "../../etc/passwd"], "number"),  # a path is never an id
        (["T", "prompt", "pos", [500, 5]], "outside"),  # point outside the image
        (["T", "prompt", "zap", [5, 5]], "unknown prompt"),  # bad kind
        (["T", "accept", 1], "nothing to accept"),  # no pending mask
        (["T", "delete", 12345], "does not exist"),  # annotation id unknown
        (["T", "__init__"], "unknown request"),  # only whitelisted methods
        (["T", "stroke", "brush", [[1, 2]], 1e9], "radius"),  # absurd brush
        ("not a list", "unknown request"),  # malformed call
    ],
)
def test_dispatch_turns_bad_requests_into_messages(service, args, message):
    token = _open(service)
    if isinstance(args, list):
        args = [token if a == "T" else a for a in args]
    out = dispatch(service, args)
    assert message in out["error"]


def test_annotation_of_another_image_cannot_be_touched(service, project):
    a = _open(service, 1)
    service.prompt(a, "pos", [40, 30])
    ann_id = service.accept(a, 1)["saved"]
    b = _open(service, 2)
    assert "not on the open image" in dispatch(service, [b, "delete", ann_id])["error"]
    assert len(project.annotations(1)) == 1


def test_session_tokens_are_unique_and_unguessable():
    store = SessionStore()
    tokens = {store.open().token for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) >= 20 for t in tokens)
    assert store.get("") is None and store.get(None) is None and store.get("x" * 100) is None


def test_fallback_notice_names_the_weight_file(project):
    from annotate.segmenters.classical import ClassicalSegmenter

    service = LabelService(project, ClassicalSegmenter(), weights_dir="/w", prefetch=False)
    from annotate.segmenters.registry import default_segmenter_name

    # The same recommendation as 'python app.py models' (the registry's default-choice reason).
    assert default_segmenter_name("/w", "cpu")[1] in service.notice and "weight-free" in service.notice
    assert "put 'sam_vit_b_01ec64.pth'" in service.notice and "/w" in service.notice


def test_undo_after_delete_puts_the_annotation_back(service, project):
    token = _open(service)
    service.prompt(token, "pos", [40, 30])
    first = service.accept(token, 1)["saved"]
    service.prompt(token, "pos", [10, 10])
    second = service.accept(token, 2)["saved"]
    mask = project.annotations(1).mask[0].copy()
    service.delete(token, first)
    out = service.undo(token)  # the delete, not the accept before it
    assert "restored" in out["undone"]
    ann = project.annotations(1)
    assert len(ann) == 2 and second in ann.ids.tolist()
    restored = ann.filter(ann.ids != second)
    assert np.array_equal(restored.mask[0], mask) and restored.class_id[0] == 1
    service.undo(token)  # the second accept
    service.undo(token)  # the second click
    service.undo(token)  # the first accept: removes the restored copy, by its new id
    assert len(project.annotations(1)) == 0


def test_first_click_on_an_edited_annotation_refines_its_mask(service, project, fake):
    token = _open(service)
    service.prompt(token, "pos", [40, 30])
    ann_id = service.accept(token, 1)["saved"]
    saved = project.annotations(1).mask[0]
    service.edit(token, ann_id)
    service.prompt(token, "neg", [41, 31])
    _, prompt = fake.calls[-1]
    assert prompt.prev_mask is not None and np.array_equal(prompt.prev_mask, saved)
