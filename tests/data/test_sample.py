"""The frozen synthetic bottle dataset: determinism, COCO ground truth, and the threshold check."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from pycocotools.coco import COCO

from data import sample
from data.geometry import decode_rle, mask_to_box
from data.sample import CLASSES, GENERATOR_VERSION, best_threshold_iou, generate, render_image


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def ds20(tmp_path_factory):
    out = tmp_path_factory.mktemp("ds20") / "bottles"
    calls = []
    report = generate(out, n=20, seed=0, progress=lambda done, total: calls.append((done, total)))
    return out, report, calls


@pytest.fixture(scope="module")
def seed5_twice(tmp_path_factory):
    a, b = tmp_path_factory.mktemp("a"), tmp_path_factory.mktemp("b")
    generate(a, n=4, seed=5)
    generate(b, n=4, seed=5)
    return a, b


def test_same_seed_gives_same_bytes(seed5_twice):
    a, b = seed5_twice
    files_a, files_b = _files(a), _files(b)
    assert sorted(files_a) == ["ground_truth.json"] + [f"images/bottle_{i:03d}.png" for i in range(4)]
    assert files_a == files_b


def test_different_seed_gives_different_images(seed5_twice, tmp_path):
    a, _ = seed5_twice
    generate(tmp_path, n=4, seed=6)
    files_a, files_c = _files(a), _files(tmp_path)
    assert files_a.keys() == files_c.keys()
    assert all(files_a[name] != files_c[name] for name in files_a)


def test_smaller_n_is_a_prefix(tmp_path):
    small, large = tmp_path / "small", tmp_path / "large"
    generate(small, n=3, seed=0)
    generate(large, n=6, seed=0)
    for i in range(3):
        name = f"images/bottle_{i:03d}.png"
        assert (small / name).read_bytes() == (large / name).read_bytes()
    gt_small = json.loads((small / "ground_truth.json").read_text())
    gt_large = json.loads((large / "ground_truth.json").read_text())
    assert gt_small["images"] == gt_large["images"][:3]
    first3 = [a for a in gt_large["annotations"] if a["image_id"] <= 3]
    assert gt_small["annotations"] == first3


def test_ground_truth_is_valid_coco(ds20):
    out, report, _ = ds20
    raw = json.loads((out / "ground_truth.json").read_text())
    assert raw["info"] == {"description": "Defect Studio synthetic bottles", "version": GENERATOR_VERSION, "seed": 0}
    assert raw["categories"] == [
        {"id": i + 1, "name": name, "supercategory": "defect"} for i, name in enumerate(CLASSES)
    ]
    assert [im["id"] for im in raw["images"]] == list(range(1, 21))
    assert [a["id"] for a in raw["annotations"]] == list(range(1, len(raw["annotations"]) + 1))

    coco = COCO(str(out / "ground_truth.json"))
    n_good = 0
    for image in coco.dataset["images"]:
        # The file name must not give the class away.
        assert image["file_name"] == f"bottle_{image['id'] - 1:03d}.png"
        assert (image["width"], image["height"]) == (900, 900)
        assert (out / "images" / image["file_name"]).is_file()
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]]))
        n_good += not anns
        assert len(anns) <= 3
        union = np.zeros((900, 900), dtype=bool)
        for ann in anns:
            mask = coco.annToMask(ann).astype(bool)
            assert mask.any()
            assert ann["area"] == int(mask.sum())
            x0, y0, x1, y1 = mask_to_box(mask)
            assert ann["bbox"] == [x0, y0, x1 - x0, y1 - y0]
            assert ann["iscrowd"] == 0
            assert ann["category_id"] in (1, 2, 3)
            assert not (union & mask).any(), "instances must not overlap"
            union |= mask
    assert n_good == report.n_good
    assert 0 < n_good < 20
    assert report.n_instances == len(raw["annotations"])
    assert sum(report.instances_per_class.values()) == report.n_instances
    assert list(report.instances_per_class) == list(CLASSES)


def test_report_and_progress(ds20):
    out, report, calls = ds20
    assert report.out_dir == out
    assert report.n_images == 20
    assert report.version == GENERATOR_VERSION
    assert calls == [(i, 20) for i in range(1, 21)]
    # Nothing is left behind from the temporary folder.
    assert [p.name for p in out.parent.iterdir()] == ["bottles"]


def test_no_global_threshold_finds_the_defects(ds20):
    out, report, _ = ds20
    assert report.best_threshold_iou <= 0.5
    assert report.best_threshold_direction in ("below", "above")
    assert 0 <= report.best_threshold <= 255
    # The report agrees with recomputing it from the written files (grey as cv2 converts RGB).
    coco = COCO(str(out / "ground_truth.json"))
    greys, masks = [], []
    for image in coco.dataset["images"]:
        bgr = cv2.imread(str(out / "images" / image["file_name"]), cv2.IMREAD_COLOR)
        greys.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        union = np.zeros((900, 900), dtype=bool)
        for ann in coco.loadAnns(coco.getAnnIds(imgIds=[image["id"]])):
            union |= decode_rle(ann["segmentation"])
        masks.append(union)
    iou, t, direction = best_threshold_iou(greys, masks)
    assert iou == pytest.approx(report.best_threshold_iou)
    assert (t, direction) == (report.best_threshold, report.best_threshold_direction)


def test_best_threshold_iou_on_trivial_images():
    img = np.zeros((50, 60), dtype=np.uint8)
    img[10:20, 30:44] = 255
    mask = img > 0
    iou, t, direction = best_threshold_iou([img, np.zeros_like(img)], [mask, np.zeros_like(mask)])
    assert iou == pytest.approx(1.0)
    assert direction == "above" and 0 <= t < 255

    dark = 255 - img
    iou, t, direction = best_threshold_iou([dark], [mask])
    assert iou == pytest.approx(1.0)
    assert direction == "below" and 0 < t <= 255

    # Half the defect shares its grey level with the background: at best 0.5.
    half = img.copy()
    half[10:20, 30:37] = 0
    iou, _, _ = best_threshold_iou([half], [mask])
    assert iou == pytest.approx(0.5)

    assert best_threshold_iou([img], [np.zeros_like(mask)]) == (0.0, 0, "below")


@pytest.mark.parametrize("kind", ["good", *CLASSES])
def test_render_image_contract(kind):
    img, instances = render_image(np.random.default_rng([11, 0]), kind)
    assert img.shape == (900, 900, 3) and img.dtype == np.uint8
    if kind == "good":
        assert instances == []
        return
    assert 1 <= len(instances) <= 3
    assert instances[0][0] == kind
    for name, mask in instances:
        assert name in CLASSES
        assert mask.shape == (900, 900) and mask.dtype == bool and mask.any()


def test_render_image_rejects_unknown_kind():
    with pytest.raises(ValueError):
        render_image(np.random.default_rng(0), "scratch")


@pytest.mark.parametrize("cls", CLASSES)
def test_masks_are_exactly_the_altered_pixels(cls):
    # Before the camera (blur, noise) the drawn defect changes exactly its mask's pixels.
    rng = np.random.default_rng([12, CLASSES.index(cls)])
    scene = sample._base_scene(rng)
    clean = scene.img.copy()
    mask = sample._draw_defect(rng, scene, cls)
    assert mask is not None
    changed = np.abs(scene.img - clean).max(axis=2) > 0
    assert not (changed & ~mask).any()
    assert changed[mask].mean() > 0.95


def test_existing_files_are_kept(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    (images / "mine.png").write_bytes(b"keep me")
    (images / "bottle_000.png").write_bytes(b"stale")
    generate(tmp_path, n=1, seed=0)
    assert (images / "mine.png").read_bytes() == b"keep me"
    assert (images / "bottle_000.png").read_bytes().startswith(b"\x89PNG")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ground_truth.json", "images"]
