"""Fast checks of settings, presets, re-filtering, class mapping and rendering (no training)."""

from __future__ import annotations

import numpy as np
import pytest

from data.errors import InputError
from train.models import PRESETS, TrainSettings, check_model_for_task, ultralytics_args, validate_settings
from train.predict import RawPrediction, refilter, render, to_annotations


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
    return RawPrediction(
        20, 20, np.array([[2, 2, 8, 8], [3, 3, 8, 8], [12, 12, 18, 18]], np.float32),
        np.array([0.9, 0.6, 0.2], np.float32), np.array([0, 0, 1]), masks, ("chip", "stain"), 0.05, 0.9, 12.0,
    )


def test_refilter_without_rerunning_the_model() -> None:
    raw = _raw()
    assert len(refilter(raw, 0.05, 0.9)) == 3
    assert len(refilter(raw, 0.5, 0.9)) == 2  # the 0.2 stain goes
    nms = refilter(raw, 0.05, 0.5)  # boxes 0 and 1 overlap at IoU ~0.69: the weaker one goes
    assert nms.scores.tolist() == pytest.approx([0.9, 0.2]) and nms.masks.shape == (2, 20, 20)


def test_adapter_maps_classes_by_name_and_drops_unknown() -> None:
    ann = to_annotations(_raw(), {"stain": 7}, source="run:x")
    assert ann.class_id.tolist() == [7] and ann.source.tolist() == ["run:x"] and ann.status.tolist() == ["proposed"]
    assert ann.mask.shape == (1, 20, 20)


def test_adapter_maps_classes_by_model_index() -> None:
    ann = to_annotations(_raw(), {"chip": 1, "stain": 2}, source="run:x", by_index={1: 5})  # the index wins
    assert ann.class_id.tolist() == [5] and ann.confidence.tolist() == pytest.approx([0.2])
    assert to_annotations(_raw(), by_index={0: 3, 1: 4}).class_id.tolist() == [3, 3, 4]


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

    from train.predict import _masks_to_image

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
    got = _masks_to_image(data, height, width, np.array(boxes, dtype=float))
    assert np.array_equal(got, expected)


def test_box_masks_hold_only_their_boxes_and_read_as_full_masks():
    from train.predict import BoxMasks

    full = np.zeros((3, 400, 600), bool)
    full[0, 10:20, 30:45] = True
    full[1, 300:390, 500:590] = True
    full[1, 350, 520] = False  # a hole stays a hole
    bm = BoxMasks.from_full(full)  # the third mask is empty
    assert bm.shape == (3, 400, 600) and len(bm) == 3
    assert sum(c.size for c in bm.crops) == 10 * 15 + 90 * 90  # not 3 x 400 x 600
    assert np.array_equal(np.asarray(bm), full) and np.array_equal(bm[1], full[1])
    sub = bm[np.array([2, 0])]
    assert np.array_equal(np.asarray(sub), full[[2, 0]]) and np.array_equal(np.asarray(bm[full.any((1, 2))]), full[:2])
    rgb = np.zeros((400, 600, 3), np.uint8)
    bm.paint(rgb, 0, (255, 0, 0))
    assert (rgb[..., 0] > 0).sum() == 150 and rgb[15, 40, 0] == 255


def test_demo_floor_prediction_holds_crops_not_full_size_masks():
    """The live demo keeps the floor prediction per page: 300 detections on a 12 MP photo."""
    import torch

    from train.predict import _masks_to_image

    h, w, n = 3000, 4000, 300
    data = torch.zeros((n, 480, 640))
    data[:, 100:110, 200:212] = 1.0
    boxes = np.tile(np.array([[1250.0, 625.0, 1325.0, 690.0]]), (n, 1))
    got = _masks_to_image(data, h, w, boxes)
    assert got.shape == (n, h, w)
    assert sum(c.nbytes for c in got.crops) < 0.01 * n * h * w  # 3.6 GB as full-size masks
    assert got[0][650, 1280] and not got[0][10, 10]


def test_box_masks_refuse_keys_an_array_would_misread():
    from train.predict import BoxMasks

    bm = BoxMasks.from_full(np.ones((2, 4, 5), bool))
    for key in (True, np.array(True), 1.0):
        with pytest.raises(TypeError):
            bm[key]
    with pytest.raises(ValueError):
        np.array(bm, copy=False)
    assert np.asarray(bm[-1]).sum() == 20 and len(bm[:1]) == 1
