"""The one renderer: the Label/Review overlay, the close-up and the Predict picture, one palette."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from data.annotations import Annotations
from data.colors import UNKNOWN, hex_to_rgb, palette_color
from data.render import FullMasks, draw_annotations, draw_predictions, zoom_on
from data.store import Project


def test_zoom_on_enlarges_the_proposal_and_outlines_it():
    image = np.full((300, 400, 3), 90, np.uint8)
    m = np.zeros((300, 400), bool)
    m[100:110, 200:212] = True
    ann = Annotations.from_masks(m, 1, 0.5, source="anomaly", status="proposed")
    out = zoom_on(image, ann, 0, {1: "#00FF00"}, side=360)
    assert out.shape == (360 * 58 // 60, 360, 3)  # 12x10 box + 24 px context: 60 wide, 58 high
    assert (out[..., 1] > 200).any() and (out[..., 0] < 50).any()  # the green outline is drawn
    edge = zoom_on(image, Annotations.from_masks(np.roll(m, (-100, -200), (0, 1)), 1), 0, {}, side=120)
    assert edge.shape[:2] == (120 * 34 // 36, 120)  # clipped at the image corner
    outside = Annotations(xyxy=np.array([[500.0, 400.0, 520.0, 410.0]], np.float32), class_id=np.array([1]),
                          confidence=np.array([0.5], np.float32))
    assert zoom_on(image, outside, 0, {}) is None


def test_overlay_fills_accepted_and_outlines_proposals():
    image = np.zeros((80, 100, 3), np.uint8)
    masks = np.zeros((2, 80, 100), bool)
    masks[0, 10:40, 10:40] = masks[1, 40:70, 55:90] = True
    ann = Annotations.from_masks(masks, np.array([1, 9]), 0.5)
    ann.data["status"] = np.array(["accepted", "proposed"], dtype=object)
    out = draw_annotations(image, ann, {1: "#FF0000"})
    assert not image.any() and out.shape == image.shape and out.dtype == np.uint8
    assert tuple(out[25, 25]) == (round(0.4 * 255), 0, 0)  # accepted: filled at 0.4
    assert not out[55, 72].any()  # proposed: not filled ...
    drawn = out[38:72, 53:92][out[38:72, 53:92].any(-1)].astype(int)  # ... outlined (anti-aliased), in magenta:
    assert hex_to_rgb(UNKNOWN) == (255, 0, 255) and (drawn[:, 1] == 0).all() and (drawn[:, 0] == drawn[:, 2]).all()
    assert drawn[:, 0].max() > 200  # the colour of an unknown class
    assert draw_annotations(image, Annotations.empty(80, 100), {}).shape == image.shape


@dataclass(frozen=True)
class _Detections:
    height: int
    width: int
    xyxy: np.ndarray
    scores: np.ndarray
    classes: np.ndarray
    masks: object
    names: tuple[str, ...]


def test_prediction_and_overlay_draw_a_class_in_the_same_colour(tmp_path):
    project = Project.create(tmp_path / "p", ["chip", "stain"])
    stain = project.class_by_name("stain")
    image = np.zeros((100, 100, 3), np.uint8)
    mask = np.zeros((1, 100, 100), bool)
    mask[0, 30:70, 30:70] = True
    box = np.array([[30, 30, 70, 70]], np.float32)

    ann = Annotations.from_masks(mask, stain.id)  # accepted
    overlay = draw_annotations(image, ann, {c.id: c.color for c in project.classes()})
    names = ("stain", "chip", "rust")  # model class order differs from the project's
    det = _Detections(100, 100, box, np.array([0.9], np.float32), np.array([0]), FullMasks(mask), names)
    predicted = draw_predictions(image, det, {c.name: c.color for c in project.classes()})

    rgb = np.array(hex_to_rgb(stain.color))
    assert np.allclose(overlay[50, 50], 0.4 * rgb, atol=1) and np.allclose(predicted[50, 50], 0.45 * rgb, atol=1)
    assert (predicted[30:71, 30:71] == rgb).all(-1).any()  # the box in the class colour itself
    assert (overlay[28:73, 28:73] == rgb).all(-1).any()  # the outline too

    # A model class that matches no project class takes the palette colour at its index.
    rust = _Detections(100, 100, box, np.array([0.9], np.float32), np.array([2]), None, names)
    assert (draw_predictions(image, rust, {})[30:71, 30:71] == hex_to_rgb(palette_color(2))).all(-1).any()


def test_prediction_masks_are_painted_without_making_them_full_size():
    class Painter:  # what ``train.predict.BoxMasks`` offers: no full-size array, only paint
        def __len__(self):
            return 1

        def paint(self, image, i, value):
            image[10:20, 10:20] = value

    image = np.zeros((40, 40, 3), np.uint8)
    det = _Detections(40, 40, np.array([[10, 10, 20, 20]], np.float32), np.array([0.5], np.float32),
                      np.array([0]), Painter(), ("chip",))
    out = draw_predictions(image, det, {"chip": "#0000FF"}, alpha=0.5)
    assert tuple(out[15, 15]) == (0, 0, 128) and not image.any()
