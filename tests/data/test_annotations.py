"""The one container: every constructor, every writer, and the round trips between them (table-driven)."""

from __future__ import annotations

import hashlib
import json
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from data.annotations import NO_CLASS, Annotations
from data.errors import InputError
from data.geometry import decode_rle, encode_rle, fill_holes, mask_iou, mask_to_box, mask_to_polygons, polygons_to_mask
from data.store import Project

H, W = 40, 56


def _masks() -> np.ndarray:
    """Four masks on a 56x40 image: a ring with a hole, two parts, one touching two edges, one pixel."""
    m = np.zeros((4, H, W), bool)
    m[0, 5:15, 6:20] = True
    m[0, 8:11, 10:14] = False
    m[1, 20:24, 2:6] = True
    m[1, 30:36, 40:50] = True
    m[2, 0:7, 50:56] = True
    m[3, 25, 30] = True
    return m


MASKS = _masks()
BOX = [3.5, 2.25, 9.75, 12.0]


def _mixed() -> Annotations:
    """The four masks and one box-only row, in one container."""
    masked = Annotations.from_masks(MASKS, [1, 2, 1, 2], [0.9, 0.8, np.nan, 0.5], source="manual")
    box = Annotations.from_boxes(H, W, [BOX], 2, 0.7, source="anomaly", status="proposed")
    return Annotations.merge([masked, box])


# ------------------------------------------------------------ constructors
def _from_crops() -> Annotations:
    crops, origins = [], []
    for m in MASKS:
        x0, y0, x1, y1 = (int(v) for v in mask_to_box(m))
        crops.append(m[y0:y1, x0:x1])
        origins.append((x0, y0))
    return Annotations.from_crops(H, W, crops, origins, [1, 2, 1, 2])


def _from_sam() -> Annotations:
    return Annotations.from_sam(MASKS, np.array([0.9, 0.8, 0.7, 0.6]), source="sam")


def _from_ultralytics() -> Annotations:
    """A Results-shaped object: boxes, and masks at the model's letterboxed 64x64 (what Ultralytics returns)."""
    boxes = np.array([mask_to_box(m) for m in MASKS], np.float32)
    # The image is 56x40, letterboxed into 64x64: gain 64/56, content 64x46 with 9 px of padding on top.
    model = np.zeros((len(MASKS), 64, 64), np.float32)
    for i, m in enumerate(MASKS):
        model[i, 9:55] = cv2.resize(m.astype(np.float32), (64, 46), interpolation=cv2.INTER_LINEAR)
    res = SimpleNamespace(orig_shape=(H, W), boxes=SimpleNamespace(xyxy=boxes, conf=np.full(4, 0.5), cls=np.arange(4.0)),
                          masks=SimpleNamespace(data=model))
    return Annotations.from_ultralytics(res, source="run:x")


def _from_rows(tmp_path) -> Annotations:
    p = Project.create(tmp_path / "p", ["a", "b"])
    ok, buf = cv2.imencode(".png", np.zeros((H, W, 3), np.uint8))
    image_id, _ = p.add_image(buf.tobytes(), "a.png", hashlib.sha256(buf.tobytes()).hexdigest(), W, H, ".png")
    p.add_annotations(image_id, _mixed())
    return p.annotations(image_id)


def _from_coco() -> Annotations:
    objs = _mixed().to_coco(1, {1: 1, 2: 2}, as_rle=True)
    return Annotations.from_coco(objs, {1: "a", 2: "b"}, H, W)


def _from_yolo() -> Annotations:
    lines = _mixed()[:4].to_yolo("yolo-segment", {1: 0, 2: 1})
    return Annotations.from_yolo(lines, ["a", "b"], H, W)


@pytest.mark.parametrize(
    "make, n, exact, boxes_from_masks",
    [
        (lambda tmp: _from_crops(), 4, True, True),
        (lambda tmp: Annotations.from_masks(MASKS, 1), 4, True, True),
        (lambda tmp: _from_sam(), 4, True, True),
        (lambda tmp: _from_ultralytics(), 4, False, False),  # resampled from the model's size
        (lambda tmp: _from_rows(tmp)[:4], 4, True, True),
        (lambda tmp: _from_coco()[:4], 4, True, True),  # RLE: exact
        (lambda tmp: _from_yolo(), 4, False, True),  # polygons: within a pixel at the edges
    ],
    ids=["from_crops", "from_masks", "from_sam", "from_ultralytics", "from_rows", "from_coco", "from_yolo"],
)
def test_every_constructor_gives_the_masks_as_crops(make, n, exact, boxes_from_masks, tmp_path):
    ann = make(tmp_path)
    assert len(ann) == n and ann.shape == (H, W) and ann.has_mask.all()
    for i in range(n):
        crop, x0, y0 = ann.crop(i)
        full = ann.full_mask(i)
        assert full.shape == (H, W) and crop.shape[0] <= H and crop.shape[1] <= W
        assert np.array_equal(full[y0 : y0 + crop.shape[0], x0 : x0 + crop.shape[1]], crop)
        assert full.sum() == crop.sum()  # nothing outside the crop
        if exact:
            assert np.array_equal(full, MASKS[i]), i
        elif MASKS[i].sum() > 1:
            assert mask_iou(full, MASKS[i]) > 0.5, i
        if boxes_from_masks:
            assert ann.xyxy[i].tolist() == mask_to_box(full).tolist()
    assert np.array_equal(ann.full_masks(), np.stack([ann.full_mask(i) for i in range(n)]))


def test_box_only_rows_stay_box_only_beside_masked_ones(tmp_path):
    for ann in (_mixed(), _from_rows(tmp_path)):
        assert ann.has_mask.tolist() == [True, True, True, True, False]
        assert ann.crops[4] is None
        assert ann.full_mask(4).sum() == 6 * 10 and ann.full_mask(4)[2:12, 4:10].all()  # its filled box
        assert ann.area[4] == pytest.approx((9.75 - 3.5) * (12.0 - 2.25))
        assert ann.area[:4].tolist() == MASKS.reshape(4, -1).sum(1).tolist()
    stored = _from_rows(tmp_path / "again")
    assert stored.xyxy[4].tolist() == BOX and stored.confidence[4] == pytest.approx(0.7)
    assert list(stored.status) == ["accepted"] * 4 + ["proposed"] and stored.source[4] == "anomaly"


def test_empty_and_bad_constructors():
    e = Annotations.empty(H, W)
    assert len(e) == 0 and e.shape == (H, W) and e.full_masks().shape == (0, H, W)
    assert len(Annotations.from_masks(np.zeros((0, H, W), bool), 1)) == 0
    with pytest.raises(ValueError, match="crops"):
        Annotations(H, W, np.zeros((2, 4)), [1, 1], [0, 0], crops=[np.ones((2, 2), bool)])
    with pytest.raises(ValueError, match="data"):
        Annotations(H, W, np.zeros((1, 4)), [1], [0], data={"x": np.arange(3)})
    with pytest.raises(ValueError, match="merge"):
        Annotations.merge([Annotations.empty(H, W), Annotations.empty(H + 1, W)])


def test_an_empty_candidate_is_an_empty_crop():
    masks = np.zeros((2, H, W), bool)
    masks[0, 3:5, 3:5] = True
    ann = Annotations.from_sam(masks, None, source="sam")
    assert ann.crops[1].shape == (0, 0) and ann.full_mask(1).sum() == 0 and ann.area[1] == 0
    assert np.isnan(ann.confidence).all() and ann.class_id.tolist() == [NO_CLASS] * 2


# ------------------------------------------------------------ access and changes
def test_indexing_keeps_rows_and_data_together():
    ann = _mixed().with_data({"name": ["r", "s", "t", "u", "v"]})
    sub = ann[[4, 0]]
    assert sub.data["name"].tolist() == ["v", "r"] and sub.has_mask.tolist() == [False, True]
    assert np.array_equal(sub.full_mask(1), MASKS[0])
    assert len(ann.filter(ann.has_mask)) == 4 and [len(a) for a in ann] == [1] * 5
    assert ann.with_status("rejected").status.tolist() == ["rejected"] * 5 and ann.status[0] == "accepted"
    assert ann.with_class_ids(7).class_id.tolist() == [7] * 5 and ann.class_id[0] == 1
    assert not ann.without_masks().has_mask.any() and ann.has_mask.sum() == 4


def test_window_paint_and_iou_match_full_masks():
    ann = _mixed()
    for i in range(len(ann)):
        full = ann.full_mask(i)
        assert np.array_equal(ann.window(i, 4, 3, 30, 28), full[3:28, 4:30])
        assert np.array_equal(ann.window(i, -5, -5, 10, 10)[5:, 5:], full[:10, :10])
        canvas = np.zeros((H, W, 3), np.uint8)
        ann.paint(canvas, i, (1, 2, 3))
        assert np.array_equal(canvas.any(-1), full)
        for j in range(len(ann)):
            assert ann.iou(i, ann, j) == pytest.approx(mask_iou(full, ann.full_mask(j)))


def test_tight_cuts_crops_to_their_pixels_and_the_image():
    big = np.zeros((10, 10), bool)
    big[2:4, 3:6] = True
    ann = Annotations.from_crops(H, W, [big, np.ones((6, 6), bool)], [(0, 0), (52, 36)], 1)
    t = ann.tight()
    assert t.crops[0].shape == (2, 3) and t.origins[0].tolist() == [3, 2]
    assert t.crops[1].shape == (4, 4) and t.origins[1].tolist() == [52, 36]  # cut at the image's edge
    assert np.array_equal(t.full_masks(), ann.full_masks())


# ------------------------------------------------------------ writers and round trips
@pytest.mark.parametrize("as_rle", [False, True], ids=["polygons", "rle"])
def test_to_coco_and_back(as_rle):
    ann = _mixed()
    objs = ann.to_coco(3, {1: 10, 2: 20}, first_id=5, as_rle=as_rle)
    assert [o["id"] for o in objs] == [5, 6, 7, 8, 9] and {o["image_id"] for o in objs} == {3}
    assert [o["category_id"] for o in objs] == [10, 20, 10, 20, 20]
    filled = MASKS.copy()
    filled[0, 8:11, 10:14] = True  # polygons cannot hold the hole; their area is what they draw
    assert [o["area"] for o in objs[:4]] == (MASKS if as_rle else filled).reshape(4, -1).sum(1).astype(float).tolist()
    for o, m in zip(objs[:4], MASKS, strict=True):
        x0, y0, x1, y1 = mask_to_box(m).tolist()
        assert o["bbox"] == [x0, y0, x1 - x0, y1 - y0]
        if as_rle:
            assert o["segmentation"] == encode_rle(m)  # the full-image RLE, made from the crop
        elif len(mask_to_polygons(m)) == 1 and len(mask_to_polygons(m)[0]) == 8:  # a rectangle: closed
            assert o["segmentation"] == [mask_to_polygons(m)[0] + mask_to_polygons(m)[0][:2]]
        else:
            assert o["segmentation"] == mask_to_polygons(m)  # traced on the crop, as on the full mask
    assert objs[4]["segmentation"] == [[3.5, 2.25, 9.75, 2.25, 9.75, 12.0, 3.5, 12.0]]
    back = Annotations.from_coco(objs, {10: "a", 20: "b"}, H, W)
    assert back.class_id.tolist() == [10, 20, 10, 20, 20] and back.data["name"].tolist() == list("ababb")
    for i in range(4):
        if as_rle:
            assert np.array_equal(back.full_mask(i), MASKS[i])
        else:  # pixel-edge polygons redraw the mask exactly, its hole filled
            assert np.array_equal(back.full_mask(i), filled[i])
    # A box-only row is written as its bbox and the box polygon, which reads back as a box-only row;
    # a rectangular mask (rows 2 and 3) is written closed, and reads back as a mask.
    assert back.has_mask.tolist() == [True] * 4 + [False]
    assert back.xyxy[4].tolist() == BOX


def test_to_coco_results():
    ann = _mixed()
    res = ann.to_coco_results(9, {1: 1, 2: 2})
    assert [r["category_id"] for r in res] == [1, 2, 1, 2, 2] and {r["image_id"] for r in res} == {9}
    assert all(np.array_equal(decode_rle(r["segmentation"]), m) for r, m in zip(res[:4], MASKS, strict=True))
    assert "segmentation" not in res[4] and res[4]["bbox"] == [3.5, 2.25, 6.25, 9.75]
    assert res[0]["score"] == pytest.approx(0.9) and np.isnan(res[2]["score"])
    rounded = ann[[4]].to_coco_results(9, rounded=True)[0]
    assert rounded == {"image_id": 9, "category_id": 2, "bbox": [3.5, 2.25, 6.25, 9.75], "score": 0.7}


@pytest.mark.parametrize("fmt", ["yolo-detect", "yolo-segment"])
def test_to_yolo_and_back(fmt):
    ann = _mixed()
    lines = ann.to_yolo(fmt, {1: 0, 2: 1})
    assert [int(line.split()[0]) for line in lines] == [0, 1, 0, 1, 1]
    back = Annotations.from_yolo(lines + [""], ["a", "b"], H, W)
    assert len(back) == 5 and back.class_id.tolist() == [0, 1, 0, 1, 1]
    if fmt == "yolo-detect":
        assert not back.has_mask.any()
        assert np.allclose(back.xyxy, ann.xyxy, atol=1e-3)
    else:
        assert back.has_mask.all()  # a box-only row is written as its box polygon
        for i in range(4):
            assert mask_iou(back.full_mask(i), MASKS[i]) > (0.3 if MASKS[i].sum() < 3 else 0.5), i


@pytest.mark.parametrize(
    "obj, reason",
    [
        ({"category_id": 9, "bbox": [1, 1, 2, 2]}, "unknown category"),
        ({"category_id": 1, "segmentation": [[1, 1, 2, 2]]}, "fewer than 3 points"),
        ({"category_id": 1, "segmentation": {"size": [3, 3], "counts": "abc"}}, "does not match"),
        ({"category_id": 1, "segmentation": [[100, 100, 120, 100, 120, 120]]}, "covers no pixel"),
        ({"category_id": 1, "bbox": [200, 200, 5, 5]}, "outside"),
        ({"category_id": 1}, "no segmentation"),
        ({"category_id": 1, "bbox": [1, 1, float("nan"), 2]}, "no segmentation"),
        ("not an object", "JSON object"),
    ],
)
def test_from_coco_rejects_what_it_cannot_use(obj, reason):
    seen: list[tuple[int, str]] = []
    ok = {"category_id": 1, "bbox": [1, 1, 4, 4]}
    ann = Annotations.from_coco([obj, ok], {1: "a"}, H, W, on_error=lambda k, why: seen.append((k, why)))
    assert len(ann) == 1 and seen[0][0] == 0 and reason in seen[0][1]
    with pytest.raises(InputError, match=reason):
        Annotations.from_coco([obj], {1: "a"}, H, W)


def test_from_coco_notes_what_arrives_otherwise_than_written():
    notes: list[tuple[int, str]] = []
    crowd = {"category_id": 1, "iscrowd": 1, "segmentation": encode_rle(MASKS[0])}
    short = {"category_id": 1, "segmentation": [[1, 1, 2, 2]], "bbox": [1, 1, 4, 4]}
    result = {"category_id": 1, "bbox": [1, 1, 4, 4], "score": 0.25}
    ann = Annotations.from_coco([crowd, short, result], {1: "a"}, H, W, on_note=lambda k, w: notes.append((k, w)))
    assert ann.has_mask.tolist() == [True, False, False]  # crowd: a mask; short polygon: its box kept
    assert np.array_equal(ann.full_mask(0), MASKS[0])
    assert ann.status.tolist() == ["accepted", "accepted", "proposed"] and ann.confidence[2] == np.float32(0.25)
    assert [k for k, _ in notes] == [0, 1] and "crowd" in notes[0][1] and "kept its bbox" in notes[1][1]
    seen: list[tuple[int, str]] = []
    assert len(Annotations.from_coco([crowd], {1: "a"}, H, W, skip_crowd=True,
                                     on_error=lambda k, w: seen.append((k, w)))) == 0
    assert "--skip-crowd" in seen[0][1]


@pytest.mark.parametrize(
    "line, reason",
    [
        ("0 0.5 0.5 1.2 0.1", "out of range"),
        ("3 0.5 0.5 0.1 0.1", "class id 3"),
        ("0 0.1 0.1 0.2 0.2 0.3", "even number"),
        ("x 0.5 0.5 0.1 0.1", "malformed"),
        ("0 0.5 0.5 0 0.1", "zero width"),
    ],
)
def test_from_yolo_rejects_what_it_cannot_use(line, reason):
    seen: list[tuple[int, str]] = []
    ann = Annotations.from_yolo([line, "1 0.5 0.5 0.2 0.2"], ["a", "b"], H, W, on_error=lambda k, w: seen.append((k, w)))
    assert len(ann) == 1 and ann.data["name"].tolist() == ["b"] and seen[0][0] == 0 and reason in seen[0][1]


def test_the_store_keeps_crops_not_full_size_masks(tmp_path):
    p = Project.create(tmp_path / "p", ["a", "b"])
    ok, buf = cv2.imencode(".png", np.zeros((H, W, 3), np.uint8))
    image_id, _ = p.add_image(buf.tobytes(), "a.png", hashlib.sha256(buf.tobytes()).hexdigest(), W, H, ".png")
    ids = p.add_annotations(image_id, _mixed())
    rows = p.query("SELECT rle, crop_x, crop_y FROM annotations ORDER BY id")
    for (rle, cx, cy), m in zip(rows[:4], MASKS, strict=True):
        x0, y0, x1, y1 = (int(v) for v in mask_to_box(m))
        assert json.loads(rle)["size"] == [y1 - y0, x1 - x0] and (cx, cy) == (x0, y0)
    assert rows[4] == (None, None, None)
    image, one = p.annotation(ids[1])
    assert image == image_id and len(one) == 1 and np.array_equal(one.full_mask(0), MASKS[1])
    new = np.zeros((H, W), bool)
    new[30:39, 0:4] = True
    p.update_annotation(ids[1], shape=Annotations.from_masks(new, NO_CLASS))
    _, one = p.annotation(ids[1])
    assert np.array_equal(one.full_mask(0), new) and one.xyxy[0].tolist() == [0, 30, 4, 39]
    with pytest.raises(InputError, match="empty"):
        p.update_annotation(ids[1], shape=Annotations.from_masks(np.zeros((H, W), bool), NO_CLASS))
    with pytest.raises(InputError, match="does not match"):
        p.add_annotations(image_id, Annotations.from_masks(np.ones((1, H + 1, W), bool), 1))


def test_pack_keeps_the_runs_and_gives_the_rows_back():
    ann = _mixed().with_data({"name": list("abcde")})
    big = Annotations.from_masks(np.ones((1, 3000, 4000), bool), 1)
    packed = ann.pack()
    back = packed.unpack()
    assert len(packed) == 5 and packed.ids.tolist() == ann.ids.tolist()
    assert back.has_mask.tolist() == ann.has_mask.tolist() and back.data["name"].tolist() == list("abcde")
    assert np.array_equal(back.full_masks(), ann.full_masks()) and np.array_equal(back.xyxy, ann.xyxy)
    assert packed.with_data({"id": [9] * 5}).unpack().ids.tolist() == [9] * 5
    assert big.crops[0].nbytes == 12_000_000 and len(big.pack().rles[0]) < 100  # runs, not pixels


@pytest.mark.parametrize(
    "poly, area",
    [
        ([0, 0, 1e9, 0, 1e9, 1e9], 1420),  # pycocotools alone crashes the process on these
        ([0, 0, 1e308, 0, 1e308, 1e308], 1420),
        ([-1e9, 5, 30, 5, 30, 20], 450),
        ([-1e308, -1e308, 1e308, 1e308, -1e308, 1e308], None),  # no finite crossing: dropped
        ([0, 0, float("nan"), 0, 5, 5], None),
        ([0, 0, float("inf"), 0, 5, 5], None),
    ],
)
def test_far_or_non_finite_polygon_vertices_are_clipped_or_refused(poly, area):
    got = Annotations.from_coco([{"category_id": 1, "segmentation": [poly]}], {1: "a"}, H, W,
                                on_error=lambda k, why: None)
    if area is None:
        assert len(got) == 0
    else:
        assert got.area.tolist() == [area] and polygons_to_mask([poly], H, W).sum() == area


def test_polygons_near_the_image_rasterise_exactly_as_before():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(5)
    for _ in range(300):
        poly = rng.uniform(-3 * W, 4 * W, 10).tolist()  # inside the window: never clipped
        ref = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([poly], H, W))).astype(bool)
        assert np.array_equal(polygons_to_mask([poly], H, W), ref)


def test_from_masks_takes_a_sequence_without_stacking_and_box_masks_fill_box_only_rows():
    seq = Annotations.from_masks(list(MASKS), 1)
    assert np.array_equal(seq.full_masks(), MASKS)
    assert len(Annotations.from_masks([], 1, size=(H, W))) == 0
    with pytest.raises(ValueError, match="image size"):
        Annotations.from_masks([], 1)
    with pytest.raises(ValueError, match="shape"):
        Annotations.from_masks([MASKS[0], np.zeros((3, 3), bool)], 1)
    filled = _mixed().with_box_masks()
    assert filled.has_mask.all() and np.array_equal(filled.full_masks(), _mixed().full_masks())


def test_yolo_segment_is_exact_on_a_large_image():
    """Six decimals of a normalised coordinate are enough at 4000x3000: Ultralytics' polygon2mask
    (truncation) and this reader both draw back the mask, holes filled."""
    import cv2
    from ultralytics.data.utils import polygon2mask

    h, w = 3000, 4000
    m = np.zeros((h, w), np.uint8)
    cv2.ellipse(m, (3131, 2207), (611, 157), 33, 0, 360, 1, -1)
    cv2.circle(m, (3131, 2207), 40, 0, -1)  # a hole
    m = m.astype(bool)
    line, = Annotations.from_masks(m[None], 1).to_yolo("yolo-segment", {1: 0})
    pts = np.array(line.split()[1:], dtype=np.float64).reshape(-1, 2) * (w, h)
    drawn = polygon2mask((h, w), [pts.reshape(-1)]).astype(bool)
    back = Annotations.from_yolo([line], ["a"], h, w).full_mask(0)
    assert np.array_equal(drawn, back)
    assert np.array_equal(back, fill_holes(m, m.size))
