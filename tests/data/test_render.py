"""The one renderer: the Label/Review overlay, the close-up and the Predict picture, one palette."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import pytest

from data.annotations import Annotations
from data.colors import UNKNOWN, hex_to_rgb, palette_color
from data.render import (
    OVERLAY_ALPHA,
    class_rgb,
    draw_annotations,
    draw_predictions,
    fill_masks,
    id_tag,
    outline,
    outline_crop,
    zoom_on,
)
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
    outside = Annotations(300, 400, xyxy=np.array([[500.0, 400.0, 520.0, 410.0]], np.float32), class_id=np.array([1]),
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
    det = _Detections(100, 100, box, np.array([0.9], np.float32), np.array([0]), Annotations.from_masks(mask, 0), names)
    predicted = draw_predictions(image, det, {c.name: c.color for c in project.classes()})

    rgb = np.array(hex_to_rgb(stain.color))
    assert np.allclose(overlay[50, 50], 0.4 * rgb, atol=1) and np.allclose(predicted[50, 50], 0.45 * rgb, atol=1)
    assert (predicted[30:71, 30:71] == rgb).all(-1).any()  # the box in the class colour itself
    assert (overlay[28:73, 28:73] == rgb).all(-1).any()  # the outline too

    # A model class that matches no project class takes the palette colour at its index.
    rust = _Detections(100, 100, box, np.array([0.9], np.float32), np.array([2]), None, names)
    assert (draw_predictions(image, rust, {})[30:71, 30:71] == hex_to_rgb(palette_color(2))).all(-1).any()


def test_prediction_masks_are_painted_without_making_them_full_size():
    class Painter:  # what a MaskSet offers: no full-size array, only paint
        def __len__(self):
            return 1

        def paint(self, image, i, value):
            image[10:20, 10:20] = value

    image = np.zeros((40, 40, 3), np.uint8)
    det = _Detections(40, 40, np.array([[10, 10, 20, 20]], np.float32), np.array([0.5], np.float32),
                      np.array([0]), Painter(), ("chip",))
    out = draw_predictions(image, det, {"chip": "#0000FF"}, alpha=0.5)
    assert tuple(out[15, 15]) == (0, 0, 128) and not image.any()


# ------------------------------------------------------------ crops draw what full-size masks drew
def _masks(h: int, w: int) -> np.ndarray:
    """Full-size masks: holes, several parts, every border touched, one pixel, an empty one, overlaps."""
    yy, xx = np.mgrid[:h, :w]
    ms = np.zeros((8, h, w), bool)
    ms[0, 10:40, 12:50] = True
    ms[1] = ((xx - 70) / 25.0) ** 2 + ((yy - 50) / 18.0) ** 2 <= 1
    ms[1, 45:52, 65:75] = False  # a hole
    ms[2, 0:15, 0:20] = True  # the top-left corner
    ms[3, h - 12 :, w - 30 :] = ms[3, h - 20 :, w - 5 :] = True  # the bottom-right corner
    ms[4, 30:50, 100:110] = ms[4, 60:80, 110:118] = True  # two parts
    ms[5, 5, 90] = True  # one pixel
    ms[6, 15:45, 20:60] = True  # overlaps the first; ms[7] is empty
    return ms


class _Full:  # the full-size masks as a MaskSet: the reference
    def __init__(self, masks):
        self.masks = masks

    def __len__(self):
        return len(self.masks)

    def paint(self, image, i, value):
        image[self.masks[i]] = value


def _reference_overlay(image, full, ann, colors):
    """``draw_annotations`` as it was drawn from full-size ``(N, H, W)`` masks."""
    rgb = [class_rgb(colors, int(c)) for c in ann.class_id]
    accepted = [s == "accepted" for s in ann.status]
    out = fill_masks(image.copy(), _Full(full), [c if a else None for c, a in zip(rgb, accepted, strict=True)],
                     OVERLAY_ALPHA)
    for i in range(len(ann)):
        outline(out, full[i], rgb[i], 2 if accepted[i] else 1)
        tag = f"#{int(ann.ids[i])}" + (" ?" if ann.status[i] == "proposed" else "")
        id_tag(out, int(ann.xyxy[i][0]), int(ann.xyxy[i][1]), tag, rgb[i])
    return out


def _reference_zoom(image, full, ann, index, colors, side, context):
    """``zoom_on`` as it was drawn from full-size masks."""
    h, w = image.shape[:2]
    x0, y0, x1, y1 = (float(v) for v in ann.xyxy[index])
    g = max(24.0, context * max(x1 - x0, y1 - y0))
    cx0, cy0 = max(0, int(np.floor(x0 - g))), max(0, int(np.floor(y0 - g)))
    cx1, cy1 = min(w, int(np.ceil(x1 + g))), min(h, int(np.ceil(y1 + g)))
    crop = image[cy0:cy1, cx0:cx1]
    s = side / max(crop.shape[:2])
    size = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
    out = np.ascontiguousarray(cv2.resize(crop, size, interpolation=cv2.INTER_NEAREST if s >= 1 else cv2.INTER_AREA))
    for i in [i for i in range(len(ann)) if i != index] + [index]:
        m = full[i][cy0:cy1, cx0:cx1].astype(np.uint8)
        if m.any():
            m = cv2.resize(m, size, interpolation=cv2.INTER_NEAREST)
            outline(out, m, class_rgb(colors, int(ann.class_id[i])), 3 if i == index else 1, cv2.CHAIN_APPROX_NONE)
    return out


@pytest.mark.parametrize(("h", "w"), [(100, 130), (97, 121)])
def test_pictures_from_crops_equal_the_full_mask_pictures(h, w):
    rng = np.random.default_rng(h)
    image = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    masks = _masks(h, w)
    box_rows = Annotations.from_boxes(h, w, [[30, 60, 60, 85], [0, 70, 25, h]], [2, 1], 0.5)  # read as filled boxes
    ann = Annotations.merge([Annotations.from_masks(masks, [1, 2, 3, 1, 9, 2, 3, 1], 0.5), box_rows])
    ann.data["status"] = np.array(["accepted", "proposed", "accepted", "rejected", "proposed", "accepted",
                                   "accepted", "proposed", "proposed", "accepted"], dtype=object)
    ann.data["id"] = np.arange(len(ann), dtype=np.int64) + 10
    full = ann.full_masks()
    assert all(c.shape != (h, w) for c in ann.crops[:8])  # the container holds crops
    colors = {1: "#FF0000", 2: "#00AAFF", 3: "#123456"}
    assert np.array_equal(draw_annotations(image, ann, colors), _reference_overlay(image, full, ann, colors))
    for i in range(len(ann)):
        for side, context in ((360, 1.0), (120, 0.3)):
            got = zoom_on(image, ann, i, colors, side=side, context=context)
            assert np.array_equal(got, _reference_zoom(image, full, ann, i, colors, side, context)), (i, side)

    xyxy = ann.xyxy[:8] + np.float32(0.37)
    det = _Detections(h, w, xyxy, np.linspace(0.9, 0.1, 8).astype(np.float32), np.arange(8) % 3,
                      Annotations.from_masks(masks, 0), ("chip", "stain", "rust"))
    ref = _Detections(h, w, xyxy, det.scores, det.classes, _Full(masks), det.names)
    colors = {"stain": "#00FF00"}
    assert np.array_equal(draw_predictions(image, det, colors), draw_predictions(image, ref, colors))


def test_a_crop_is_outlined_as_its_full_size_mask():
    for m in _masks(97, 121):
        crop, x0, y0 = Annotations.from_masks(m, 1).crop(0)
        want, got = np.zeros((97, 121, 3), np.uint8), np.zeros((97, 121, 3), np.uint8)
        outline(want, m, (255, 128, 0), 2)
        outline_crop(got, crop, x0, y0, (255, 128, 0), 2)
        assert np.array_equal(got, want)
    part = np.ones((10, 10), bool)  # a crop half outside the image: only its inside part is traced
    want = np.zeros((60, 80, 3), np.uint8)
    outline(want, np.pad(np.ones((5, 5), bool), ((0, 55), (0, 75))), (0, 255, 0), 1)
    got = np.zeros((60, 80, 3), np.uint8)
    outline_crop(got, part, -5, -5, (0, 255, 0), 1)
    assert np.array_equal(got, want)
