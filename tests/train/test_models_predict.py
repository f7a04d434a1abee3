"""Fast checks of settings, presets, re-filtering, class mapping and rendering (no training)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from data.errors import InputError
from train.models import PRESETS, TrainSettings, check_model_for_task, ultralytics_args, validate_settings
from train.predict import RawPrediction, _from_result, refilter, render, to_annotations


@pytest.mark.parametrize(
    ("model", "task", "hint"),
    [
        ("yolov8n", "segment", "yolov8n-seg"),  # detect model for a segment task
        ("yolo11s-seg", "detect", "yolo11s"),  # segment model for a detect task
        ("yolov9000", "detect", "unknown model"),  # not a base model
        ("missing/model.pt", "detect", "does not exist"),  # path that is not there
    ],
)
def test_model_must_match_task(model: str, task: str, hint: str) -> None:
    with pytest.raises(InputError, match=hint):
        check_model_for_task(model, task)


@pytest.mark.parametrize("model", ["yolov8n-seg", "yolo11m-seg", "yolov8n-seg.yaml"])
def test_segment_models_accepted(model: str) -> None:
    check_model_for_task(model, "segment")


@pytest.mark.parametrize(
    ("change", "hint"),
    [({"imgsz": 100}, "multiple of 32"), ({"preset": "heavy"}, "preset"), ({"epochs": 0}, "epochs"),
     ({"val_fraction": 1.0}, "val-fraction"), ({"device": "tpu"}, "device")],
)
def test_bad_settings_say_what_to_change(change: dict, hint: str) -> None:
    with pytest.raises(InputError, match=hint):
        validate_settings(TrainSettings(**change))


def test_presets_expand_to_ultralytics_args() -> None:
    args = ultralytics_args(TrainSettings(epochs=30, preset="defects"))
    assert args["flipud"] == 0.5 and args["close_mosaic"] == 9 and "close_mosaic_fraction" not in args
    assert ultralytics_args(TrainSettings(preset="none"))["mosaic"] == 0.0
    assert set(PRESETS) == {"defects", "ultralytics-default", "none"}
    assert ultralytics_args(TrainSettings(overrides={"lr0": 0.01}))["lr0"] == 0.01


def _raw() -> RawPrediction:
    masks = np.zeros((3, 20, 20), bool)
    masks[0, 2:8, 2:8] = masks[1, 3:8, 3:8] = masks[2, 12:18, 12:18] = True
    return RawPrediction.from_arrays(
        20, 20, np.array([[2, 2, 8, 8], [3, 3, 8, 8], [12, 12, 18, 18]], np.float32),
        np.array([0.9, 0.6, 0.2], np.float32), np.array([0, 0, 1]), masks, ("chip", "stain"), 0.05, 0.9, 12.0,
    )


def test_refilter_without_rerunning_the_model() -> None:
    raw = _raw()
    assert len(refilter(raw, 0.05, 0.9)) == 3
    assert len(refilter(raw, 0.5, 0.9)) == 2  # the 0.2 stain goes
    nms = refilter(raw, 0.05, 0.5)  # boxes 0 and 1 overlap at IoU ~0.69: the weaker one goes
    assert nms.scores.tolist() == pytest.approx([0.9, 0.2]) and len(nms.masks) == 2 and nms.masks.shape == (20, 20)


def test_refilter_keeps_the_crops_without_full_size_masks() -> None:
    raw = _raw()
    nms = refilter(raw, 0.05, 0.5)
    assert nms.masks is not None and nms.masks is nms.annotations  # the container is the mask set
    assert nms.masks.crops[0] is raw.masks.crops[0] and nms.masks.crops[1] is raw.masks.crops[2]  # shared, not copied
    assert [c.shape for c in nms.masks.crops] == [(6, 6), (6, 6)] and nms.masks.origins.tolist() == [[2, 2], [12, 12]]
    assert np.array_equal(nms.masks.full_masks(), raw.masks.full_masks()[[0, 2]])
    assert len(refilter(raw, 0.95, 0.9)) == 0 and refilter(raw, 0.95, 0.9).masks is None  # nothing left


def test_adapter_maps_classes_by_name_and_drops_unknown() -> None:
    ann = to_annotations(_raw(), {"stain": 7}, source="run:x")
    assert ann.class_id.tolist() == [7] and ann.source.tolist() == ["run:x"] and ann.status.tolist() == ["proposed"]
    assert ann.has_mask.tolist() == [True] and ann.shape == (20, 20)


def test_adapter_keeps_the_crops() -> None:
    raw = _raw()
    ann = to_annotations(raw, {"chip": 1, "stain": 2})
    assert ann.class_id.tolist() == [1, 1, 2] and all(a is b for a, b in zip(ann.crops, raw.masks.crops, strict=True))
    assert ann.origins.tolist() == raw.masks.origins.tolist() and ann.xyxy.tolist() == raw.xyxy.tolist()
    assert sum(c.size for c in ann.crops) == 36 + 25 + 36  # the boxes' pixels, not 3 x 20 x 20
    boxes = RawPrediction.from_arrays(20, 20, raw.xyxy, raw.scores, raw.classes, None, raw.names, 0.05, 0.9, 1.0)
    assert boxes.masks is None and not to_annotations(boxes, {"chip": 1}).has_mask.any()  # a detect model: box-only


def test_adapter_maps_classes_by_model_index() -> None:
    ann = to_annotations(_raw(), {"chip": 1, "stain": 2}, source="run:x", by_index={1: 5})  # the index wins
    assert ann.class_id.tolist() == [5] and ann.confidence.tolist() == pytest.approx([0.2])
    assert to_annotations(_raw(), by_index={0: 3, 1: 4}).class_id.tolist() == [3, 3, 4]


def test_coco_results_are_the_full_mask_results():
    """``predict`` writes each crop's RLE: the same JSON as encoding the full-size mask."""
    import json

    from data.geometry import encode_rle
    from train.cli import coco_results

    raw = _raw()
    full = raw.masks.full_masks()
    expected = [{"image_id": 4, "category_id": int(raw.classes[i]) + 1,
                 "bbox": [round(float(v), 2) for v in (*raw.xyxy[i, :2], *(raw.xyxy[i, 2:] - raw.xyxy[i, :2]))],
                 "score": round(float(raw.scores[i]), 5), "segmentation": encode_rle(full[i])} for i in range(len(raw))]
    assert json.dumps(coco_results(raw, 4)) == json.dumps(expected)
    boxes = RawPrediction.from_arrays(20, 20, raw.xyxy, raw.scores, raw.classes, None, raw.names, 0.05, 0.9, 1.0)
    assert json.dumps(coco_results(boxes, 4)) == json.dumps([{k: v for k, v in e.items() if k != "segmentation"}
                                                             for e in expected])  # a detect model: boxes only


def _run_record(project, class_ids, class_names=("chip", "stain")):
    from dataclasses import replace

    from train import jobs

    rec = jobs.RunRecord(
        id="r", created_at=0.0, updated_at=0.0, task="segment", model="yolov8n-seg", settings=TrainSettings(),
        status="succeeded", reason=None, notice=None, phase=None, pid=None, resume=False, cancel_requested=False,
        epoch=1, epochs=1, batch_i=0, n_batches=0, eta_s=None, dataset_source=None, dataset_hash=None, n_images={},
        class_names=tuple(class_names), best_weights=None, metrics={}, started_at=None, finished_at=None, wall_s=0.0,
        folder=str(project.path("runs", "r")),
    )
    return replace(rec, class_ids=None if class_ids is None else tuple(class_ids))


def test_class_map_follows_recorded_ids_through_renames_and_deletes(tmp_path) -> None:
    from data.store import Project
    from train.predict import class_map

    project = Project.create(tmp_path / "p", ["chip", "stain"])
    chip, stain = project.class_by_name("chip").id, project.class_by_name("stain").id
    names = ("chip", "stain")
    rec = _run_record(project, [chip, stain])
    project.update_class(chip, name="crack")
    assert class_map(project, names, rec) == {0: chip, 1: stain}  # renamed: still mapped
    assert class_map(project, names, _run_record(project, None)) == {1: stain}  # old record: by name
    assert class_map(project, names, None) == {1: stain}  # no record at all: by name
    assert class_map(project, names, _run_record(project, [None, stain])) == {1: stain}  # unbound index: by name
    other = project.add_class("chip")
    assert class_map(project, names, _run_record(project, [None, stain])) == {0: other.id, 1: stain}
    assert class_map(project, ("a", "b", "c"), rec) == {}  # a record of another model's classes is not used
    project.delete_class(chip)
    assert class_map(project, names, rec) == {1: stain}  # deleted: dropped, not re-bound by name to "chip"


def test_render_draws_and_counts() -> None:
    img = np.zeros((20, 20, 3), np.uint8)
    shown = render(img, _raw())
    assert shown.counts == {"chip": 2, "stain": 1} and shown.image.any() and not img.any()


@pytest.mark.parametrize(
    "height, width, model_h, model_w",
    [
        (900, 900, 448, 448),  # square
        (600, 800, 352, 448),  # landscape, letterbox padding top and bottom
        (333, 500, 320, 480),  # odd size
    ],
)
def test_masks_are_resampled_like_ultralytics_scale_masks(height, width, model_h, model_w):
    import torch
    from ultralytics.utils.ops import scale_masks

    rng = np.random.default_rng(1)
    gain = min(model_h / height, model_w / width)
    pad_w, pad_h = (model_w - round(width * gain)) / 2, (model_h - round(height * gain)) / 2
    yy, xx = np.mgrid[:model_h, :model_w]
    data, boxes = torch.zeros((4, model_h, model_w)), []
    for i in range(4):
        x0, y0 = rng.integers(0, width - 120), rng.integers(0, height - 120)
        w, h = rng.integers(12, 100, 2)
        boxes.append([x0, y0, x0 + w, y0 + h])
        cx, cy = (x0 + w / 2) * gain + pad_w, (y0 + h / 2) * gain + pad_h
        blob = ((xx - cx) / (w * gain / 2)) ** 2 + ((yy - cy) / (h * gain / 2)) ** 2 <= 0.8  # inside its box
        data[i] = torch.from_numpy(blob.astype(np.float32))
    expected = (scale_masks(data[None], (height, width))[0] > 0.5).numpy()
    raw = _from_result(_results(height, width, np.array(boxes, dtype=float), data), ("chip",), 0.05, 0.9)
    assert np.array_equal(raw.masks.full_masks(), expected) and raw.inference_ms == 3.0


def _results(height, width, boxes, data):
    """A stand-in for an Ultralytics ``Results``: boxes, scores and classes as tensors, letterboxed masks."""
    import torch

    n = len(boxes)
    boxes_ = SimpleNamespace(xyxy=torch.tensor(boxes, dtype=torch.float32), conf=torch.full((n,), 0.5),
                             cls=torch.zeros(n))
    return SimpleNamespace(orig_shape=(height, width), boxes=boxes_, masks=SimpleNamespace(data=data),
                           speed={"preprocess": 1.0, "inference": 1.5, "postprocess": 0.5})


def test_prediction_masks_hold_only_their_boxes_and_read_as_full_masks():
    full = np.zeros((3, 400, 600), bool)
    full[0, 10:20, 30:45] = True
    full[1, 300:390, 500:590] = True
    full[1, 350, 520] = False  # a hole stays a hole
    boxes = np.array([[30, 10, 45, 20], [500, 300, 590, 390], [0, 0, 0, 0]], np.float32)
    raw = RawPrediction.from_arrays(400, 600, boxes, np.ones(3, np.float32), np.zeros(3, np.int64), full, ("chip",),
                                    0.05, 0.9, 1.0)  # the third mask is empty
    bm = raw.masks
    assert bm.shape == (400, 600) and len(bm) == 3 and bm.has_mask.all()
    assert sum(c.size for c in bm.crops) == 10 * 15 + 90 * 90  # not 3 x 400 x 600
    assert np.array_equal(bm.full_masks(), full) and np.array_equal(bm.full_mask(1), full[1])
    sub = bm[np.array([2, 0])]
    assert np.array_equal(sub.full_masks(), full[[2, 0]])
    assert np.array_equal(bm[full.any((1, 2))].full_masks(), full[:2])
    rgb = np.zeros((400, 600, 3), np.uint8)
    bm.paint(rgb, 0, (255, 0, 0))
    assert (rgb[..., 0] > 0).sum() == 150 and rgb[15, 40, 0] == 255


def test_demo_floor_prediction_holds_crops_not_full_size_masks():
    """The live demo keeps the floor prediction per page: 300 detections on a 12 MP photo."""
    import torch

    h, w, n = 3000, 4000, 300
    data = torch.zeros((n, 480, 640))
    data[:, 100:110, 200:212] = 1.0
    boxes = np.tile(np.array([[1250.0, 625.0, 1325.0, 690.0]]), (n, 1))
    raw = _from_result(_results(h, w, boxes, data), ("chip",), 0.05, 0.9)
    got = raw.masks
    assert len(got) == n and got.shape == (h, w)
    assert sum(c.nbytes for c in got.crops) < 0.01 * n * h * w  # 3.6 GB as full-size masks
    assert got.window(0, 1280, 650, 1281, 651)[0, 0] and not got.window(0, 10, 10, 11, 11)[0, 0]
    kept = refilter(raw, 0.25, 0.5).masks  # the same box 300 times: NMS keeps one, still its crop
    assert len(kept) == 1 and any(kept.crops[0] is c for c in got.crops)
