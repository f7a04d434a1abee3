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
    assert ann.full_mask(0).sum() == mask_payload(*ann.crop(0))["area"] > 300  # the largest disc (r=12)
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


def _saved_and_editing(service, project) -> tuple[str, int, np.ndarray]:
    """A click accepted, then opened for editing: ``(token, annotation id, its saved full mask)``."""
    token = _open(service)
    service.prompt(token, "pos", [40, 30])
    ann_id = service.accept(token, 1)["saved"]
    saved = project.annotations(1).full_mask(0)
    service.edit(token, ann_id)
    return token, ann_id, saved


def test_edit_existing_annotation_updates_it_and_undo_restores(service, project):
    token, ann_id, before = _saved_and_editing(service, project)
    service.stroke(token, "brush", [[70, 50]], 5)  # replaces the pending mask by a hand edit
    service.accept(token, 2)
    ann = project.annotations(1)
    assert len(ann) == 1 and ann.source[0] == "manual" and ann.class_id[0] == 2
    service.undo(token)
    ann = project.annotations(1)
    assert np.array_equal(ann.full_mask(0), before) and ann.class_id[0] == 1 and ann.source[0] == "fake"


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
    mask = project.annotations(1).full_mask(0)
    service.delete(token, first)
    out = service.undo(token)  # the delete, not the accept before it
    assert "restored" in out["undone"]
    ann = project.annotations(1)
    assert len(ann) == 2 and second in ann.ids.tolist()
    restored = ann.filter(ann.ids != second)
    assert np.array_equal(restored.full_mask(0), mask) and restored.class_id[0] == 1
    service.undo(token)  # the second accept
    service.undo(token)  # the second click
    service.undo(token)  # the first accept: removes the restored copy, by its new id
    assert len(project.annotations(1)) == 0


def test_first_click_on_an_edited_annotation_refines_its_mask(service, project, fake):
    token = _open(service)
    service.prompt(token, "pos", [40, 30])
    ann_id = service.accept(token, 1)["saved"]
    saved = project.annotations(1).full_mask(0)
    service.edit(token, ann_id)
    service.prompt(token, "neg", [41, 31])
    _, prompt = fake.calls[-1]
    assert prompt.prev_mask is not None and np.array_equal(prompt.prev_mask, saved)


# ------------------------------------------------------------ masks as crops
def _old_mask_payload(mask: np.ndarray) -> dict | None:
    """The overlay as it was computed from a full-size mask (the reference for the crop version)."""
    import base64

    import cv2

    from data.geometry import mask_to_box

    if not mask.any():
        return None
    x0, y0, x1, y1 = (int(v) for v in mask_to_box(mask))
    crop = mask[y0:y1, x0:x1].astype(np.uint8) * 255
    ok, buf = cv2.imencode(".png", np.dstack([crop] * 4), [cv2.IMWRITE_PNG_COMPRESSION, 1])
    contours, _ = cv2.findContours(crop, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    outline = [(c.reshape(-1, 2) + (x0, y0)).astype(int).ravel().tolist() for c in contours if len(c) >= 2]
    return {"x": x0, "y": y0, "w": x1 - x0, "h": y1 - y0, "png": base64.b64encode(buf.tobytes()).decode("ascii"),
            "outline": outline, "area": int(np.count_nonzero(crop))}


def _old_stroke(base: np.ndarray, pts: list, r: float, paint: bool) -> np.ndarray:
    """A stroke drawn on a full-size canvas, as it was (the reference for the windowed version)."""
    import cv2

    canvas = base.astype(np.uint8)
    ipts = np.round(np.asarray(pts, dtype=np.float64)).astype(np.int32)
    value = 1 if paint else 0
    if len(ipts) == 1:
        cv2.circle(canvas, tuple(int(v) for v in ipts[0]), int(round(r)), value, -1)
    else:
        cv2.polylines(canvas, [ipts.reshape(-1, 1, 2)], False, value, max(1, int(round(2 * r))))
        for p in (ipts[0], ipts[-1]):
            cv2.circle(canvas, (int(p[0]), int(p[1])), int(round(r)), value, -1)
    return canvas.astype(bool)


def _pending_full(service: LabelService, token: str) -> np.ndarray:
    one = service.sessions.get(token).pending.mask
    return one.full_mask(0)


def test_mask_payload_of_a_crop_is_the_payload_of_its_full_mask():
    rng = np.random.default_rng(3)
    for _ in range(20):
        full = np.zeros((60, 80), bool)
        for _ in range(3):
            y, x = rng.integers(0, 60), rng.integers(0, 80)
            full[y:y + rng.integers(1, 15), x:x + rng.integers(1, 15)] = True
        from data.annotations import Annotations

        ann = Annotations.from_masks(full, 1)
        assert mask_payload(*ann.crop(0)) == _old_mask_payload(full)
        padded = np.pad(ann.crops[0], 3)  # a crop that is not tight gives the same payload
        assert mask_payload(padded, ann.origins[0, 0] - 3, ann.origins[0, 1] - 3) == _old_mask_payload(full)
    assert mask_payload(np.zeros((0, 0), bool), 5, 5) is None and mask_payload(np.zeros((4, 4), bool)) is None


def test_brush_and_eraser_strokes_equal_a_full_size_drawing(service):
    """Strokes are drawn in a window around the stroke and the mask: pixel for pixel what a drawing
    on the whole image gives, inside the image and at its edges."""
    rng = np.random.default_rng(7)
    token = _open(service)
    ref = np.zeros((60, 80), bool)
    for k in range(60):
        paint = k < 3 or rng.random() < 0.6
        n = int(rng.integers(1, 6))
        pts = np.round(rng.uniform([-15, -15], [95, 75], (n, 2)), 1).tolist()  # some points off the image
        r = float(rng.choice([0.5, 1.0, 2.6, 4.0, 9.5]))
        service.stroke(token, "brush" if paint else "eraser", pts, r)
        ref = _old_stroke(ref, pts, r, paint)
        assert np.array_equal(_pending_full(service, token), ref), (k, pts, r, paint)
        one = service.sessions.get(token).pending.mask
        crop = one.crops[0]
        assert crop.size == 0 or (crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any())


def test_brush_starts_from_the_mask_being_edited(service, project):
    token, ann_id, saved = _saved_and_editing(service, project)
    service.stroke(token, "eraser", [[40, 30], [44, 30]], 2)
    assert np.array_equal(_pending_full(service, token), _old_stroke(saved, [[40, 30], [44, 30]], 2, False))


def test_polygon_equals_a_full_size_rasterisation(service):
    """Fractional vertices included, where rasterising a shifted polygon in a smaller window moves pixels."""
    from data.geometry import polygons_to_mask

    rng = np.random.default_rng(11)
    token = _open(service)
    for _ in range(150):
        pts = np.round(rng.uniform([-10, -10], [90, 70], (int(rng.integers(3, 8)), 2)), 1)
        ref = polygons_to_mask([pts.ravel().tolist()], 60, 80)
        out = dispatch(service, [token, "polygon", pts.tolist()])
        if not ref.any():
            assert "covers no pixel" in out["error"]
            continue
        assert np.array_equal(_pending_full(service, token), ref), pts.tolist()
        assert out["candidates"][0]["mask"] == _old_mask_payload(ref)


def test_polygon_of_traces_the_crop_as_the_full_mask(service):
    import cv2

    from data.geometry import mask_to_polygons

    token = _open(service)
    service.polygon(token, [[12.3, 8.1], [60.2, 14.7], [70.9, 50.5], [30.4, 55.2], [8.8, 30.3]])
    service.stroke(token, "eraser", [[40, 30]], 5)  # a hole: still one outer contour
    full = _pending_full(service, token)
    flat = max(mask_to_polygons(full), key=len)
    pts = np.asarray(flat, dtype=np.float32).reshape(-1, 2)
    approx = cv2.approxPolyDP(pts.reshape(-1, 1, 2), 0.8, True).reshape(-1, 2)
    expected = [[round(float(x), 1), round(float(y), 1)] for x, y in (approx if len(approx) >= 3 else pts)]
    assert service.polygon_of(token)["points"] == expected


def test_edit_accept_then_delete_and_undo_restores_the_old_shape_by_its_new_id(service, project):
    """Undo of an edit-accept writes the annotation's previous row back, also after a delete and its
    undo gave the annotation a new id."""
    token = _open(service)
    service.prompt(token, "pos", [40, 30])
    ann_id = service.accept(token, 1)["saved"]
    before = project.annotations(1)
    service.edit(token, ann_id)
    service.stroke(token, "brush", [[60, 30], [70, 30]], 3)  # grows the mask being edited
    service.accept(token, 2)
    step = service.sessions.get(token).undo[-1]
    assert step.restored is not None and len(step.restored) == 1 and int(step.restored.ids[0]) == ann_id
    assert step.restored.unpack().crops[0].shape == before.crops[0].shape  # a crop, not a full-size mask
    service.delete(token, ann_id)
    assert len(project.annotations(1)) == 0
    service.undo(token)  # the delete: the annotation comes back under a new id
    (new_id,) = project.annotations(1).ids.tolist()
    out = service.undo(token)  # the edit-accept: the old shape and class, on the new id
    assert out["undone"] == f"annotation #{new_id} restored"
    ann = project.annotations(1)
    assert ann.ids.tolist() == [new_id] and ann.class_id[0] == 1 and ann.source[0] == "fake"
    assert np.array_equal(ann.full_mask(0), before.full_mask(0))
    assert [a["mask"] for a in out["annotations"]] == [_old_mask_payload(before.full_mask(0))]


def test_edit_of_a_box_only_annotation_starts_from_its_filled_box(service, project):
    from data.annotations import Annotations
    from data.geometry import box_to_mask

    (ann_id,) = project.add_annotations(1, Annotations.from_boxes(60, 80, [[10, 12, 30, 25]], 1, 0.8,
                                                                  source="det", status="proposed"))
    token = _open(service)
    listed = service._annotations(1)
    assert listed[0]["mask"] == _old_mask_payload(box_to_mask([10, 12, 30, 25], 60, 80)) and listed[0]["score"] == 0.8
    view = service.edit(token, ann_id)
    assert view["candidates"][0]["score"] == 0.8 and not view["manual"]
    service.stroke(token, "eraser", [[10, 12]], 3)
    service.accept(token, 2)
    service.undo(token)  # written back as its filled box (a mask now), class and status as they were
    ann = project.annotations(1)
    assert np.array_equal(ann.full_mask(0), box_to_mask([10, 12, 30, 25], 60, 80))
    assert (ann.class_id[0], ann.status[0], ann.source[0]) == (1, "proposed", "det")


def test_annotation_overlays_follow_the_stored_masks(service, project):
    """Overlays are cached by the stored mask: a mask changed behind the page's back (another
    screen, same box) is drawn anew, an unchanged one is not encoded again."""
    from data.annotations import Annotations

    m = np.zeros((60, 80), bool)
    m[10:30, 10:30] = True
    (ann_id,) = project.add_annotations(1, Annotations.from_masks(m, 1))
    token = _open(service)
    first = service._annotations(1)[0]["mask"]
    assert first == _old_mask_payload(m)
    cached = len(service.payloads)
    holed = m.copy()
    holed[15:20, 15:20] = False  # same box, other pixels
    project.update_annotation(ann_id, shape=Annotations.from_masks(holed, 1))
    out = service.open_image(token, 1)["annotations"]
    assert out[0]["mask"] == _old_mask_payload(holed) and out[0]["mask"]["area"] == first["area"] - 25
    assert len(service.payloads) == cached + 1
    service._annotations(1)
    assert len(service.payloads) == cached + 1


class _LargeSegmenter:
    """A SAM-like stub on a large image: three full-size discs and (C, 1, 256, 256) logits per click."""

    name = "large"
    device = "cpu"
    is_fallback = False

    def __init__(self, huge: bool = False) -> None:
        self.shapes: dict[str, tuple[int, int]] = {}
        self.prompts: list = []
        self.huge = huge  # candidates covering most of the image (a large part, or random weights)

    def set_image(self, image, key):
        self.shapes[key] = image.shape[:2]

    def is_ready(self, key):
        return key in self.shapes

    def predict(self, key, prompt, multimask=None):
        from annotate.segmenters.base import Prediction

        self.prompts.append(prompt)
        h, w = self.shapes[key]
        x, y = (int(v) for v in prompt.points[-1])
        masks = np.zeros((3, h, w), bool)
        yy, xx = np.mgrid[-60:61, -60:61]
        for k, r in enumerate((20, 40, 60)):
            masks[k, y - 60:y + 61, x - 60:x + 61] = xx ** 2 + yy ** 2 <= r * r
        if self.huge:
            masks[1:, 10:h - 10, 10:w - 10] = True
        low = np.random.default_rng(len(self.prompts)).normal(0, 8, (3, 1, 256, 256)).astype(np.float32)
        return Prediction(masks, np.array([0.9, 0.8, 0.7], np.float32), low, 1.0)


@pytest.mark.parametrize("huge", [False, True], ids=["defect-sized", "image-sized"])
def test_undo_history_of_30_edits_on_a_12_mp_image_holds_no_full_size_mask(tmp_path, huge):
    from bench.store import held_bytes
    from data.store import Project
    from tests.ui.conftest import add_image

    project = Project.create(tmp_path / "big", classes=["scratch"])
    image_id = add_image(project, "big.png", 90, size=(3000, 4000))
    seg = _LargeSegmenter(huge)
    service = LabelService(project, seg, prefetch=False)
    token = _open(service, image_id)
    session = service.sessions.get(token)
    edits = 0
    for k in range(10):  # two clicks and an accept, ten times
        cx, cy = 300 + 350 * k, 200 + 250 * k
        service.prompt(token, "pos", [cx, cy])
        service.prompt(token, "pos", [cx + 5, cy])
        service.accept(token, 1)
        edits += 3
    assert edits == 30 and len(session.undo) == 30 and len(project.annotations(image_id)) == 10
    held = held_bytes([session.undo, session.pending])
    assert held < 3000 * 4000  # less than one full-size mask (before: 458 MB)
    assert held < 10 * 2**20
    # Refinement still gets what it got: the chosen logits (as float32) and the full-size previous mask.
    last = seg.prompts[-1]
    assert last.mask_input.dtype == np.float32 and last.mask_input.shape == (1, 256, 256)
    assert last.prev_mask.shape == (3000, 4000) and last.prev_mask.sum() == (np.hypot(*np.mgrid[-20:21, -20:21]) <= 20).sum()
    # Every step undoes, the accepted annotations go away again.
    for _ in range(30):
        service.undo(token)
    assert len(project.annotations(image_id)) == 0


def test_next_image_is_in_order_or_the_choosers_pick_among_those_not_done(service, project):
    token = service.open_page("owner-a")
    assert service.open_image(token, 1)["image"]["next"] == 2
    project.set_image_status(3, "good")
    seen = []
    service.next_chooser = lambda todo: seen.append(todo) or todo[-1]
    assert service.open_image(token, 2)["image"]["next"] == 1  # past the last, the first is not done yet
    assert seen == [[1]]  # image 3 is good: not offered
    service.next_chooser = lambda todo: None  # nothing to choose: the next in order
    assert service.open_image(token, 1)["image"]["next"] == 2


def test_a_proposal_reviewed_on_another_page_first_keeps_that_decision(service, project):
    """Page B rejects a proposal; page A, still showing it, accepts: A is told, the rejection stands."""
    import numpy as np

    m = np.zeros((60, 80), bool)
    m[5:15, 5:15] = True
    from data.annotations import Annotations

    aid, = project.add_annotations(1, Annotations.from_masks(m, 1, 0.9, source="anomaly", status="proposed"))
    a, b = _open(service, 1), _open(service, 1)
    assert service.review(b, aid, "rejected")["reviewed"] == "rejected"
    out = dispatch(service, [a, "review", aid, "accepted"])  # as A's page calls it
    assert "changed by another page" in out["conflict"] and "it is rejected now" in out["conflict"]
    assert project.annotation(aid)[1].status[0] == "rejected"
    assert all(x["id"] != aid for x in out["annotations"])  # A's screen now shows it gone


def test_a_change_made_against_a_stale_state_is_refused_and_the_screen_redrawn(service, project):
    """B re-classes an accepted label; A, still showing the old class, deletes it: refused, with A's screen
    as it is now; then A (now up to date) re-classes it, and B's stale change is refused in turn."""
    import numpy as np

    from data.annotations import Annotations

    m = np.zeros((60, 80), bool)
    m[5:15, 5:15] = True
    aid, = project.add_annotations(1, Annotations.from_masks(m, 1))
    a, b = _open(service, 1), _open(service, 1)
    service.set_class(b, aid, 2)
    out = dispatch(service, [a, "delete", aid])
    assert "changed by another page" in out["conflict"] and "nothing changed" in out["conflict"]
    assert [x["class_id"] for x in out["annotations"] if x["id"] == aid] == [2] and len(project.annotations(1))
    assert "conflict" not in dispatch(service, [a, "set_class", aid, 1])  # A has seen the new state now
    assert "changed by another page" in dispatch(service, [b, "delete", aid])["conflict"]  # B has not
    assert "conflict" not in dispatch(service, [b, "delete", aid])
    assert not len(project.annotations(1))
    assert "deleted by another page" in dispatch(service, [a, "set_class", aid, 2])["conflict"]


def test_undo_names_what_it_takes_back(service):
    t = _open(service, 1)
    service.prompt(t, "pos", [40, 30])
    service.stroke(t, "brush", [[10, 10], [20, 20]], 3)
    assert service.undo(t)["undone"] == "brush, eraser or polygon edit"
    assert service.undo(t)["undone"] == "point"
    service.prompt(t, "box", [5, 5, 30, 30])
    assert service.undo(t)["undone"] == "box"
