"""The anomaly proposer on synthetic sample images with known masks (weight-free, CPU)."""

from __future__ import annotations

import numpy as np
import pytest

from annotate.proposers.anomaly import AnomalyProposer, NearestClass, region_features
from bench.coco_eval import match
from data.errors import InputError
from data.geometry import mask_iou, masks_to_boxes
from data.sample import render_image


@pytest.fixture(scope="module")
def proposer() -> AnomalyProposer:
    refs = [render_image(np.random.default_rng([900, i]), "good")[0] for i in range(4)]
    return AnomalyProposer(refs, class_id=7)


@pytest.mark.parametrize(
    "index, kind",
    [
        (0, "broken_large"),  # a bite out of the rim
        (1, "contamination"),  # a brown stain
        (2, "broken_small"),  # the larger of two small chips
    ],
)
def test_finds_the_defect_with_its_mask(proposer, index, kind):
    image, instances = render_image(np.random.default_rng([901, index]), kind)
    props = proposer.propose(image, key=f"k{index}")
    gt = np.stack([m for _, m in instances])
    pairs = match(masks_to_boxes(gt), props.xyxy, props.confidence)
    assert pairs, f"{kind}: no proposal at box IoU >= 0.5"
    p, g = pairs[0]
    assert mask_iou(props.full_mask(p), gt[g]) > 0.7
    assert set(props.source) == {"anomaly"} and set(props.status) == {"proposed"}
    assert set(props.class_id) == {7}  # the class the user picked
    assert ((props.confidence >= 0.5) & (props.confidence <= 1)).all()
    assert proposer.model.last_mode.startswith("aligned")


def test_defect_free_image_gets_no_false_alarm(proposer):
    image, instances = render_image(np.random.default_rng([901, 3]), "good")
    assert not instances
    assert len(proposer.propose(image, key="good")) == 0


def test_needs_good_images_and_a_class():
    with pytest.raises(InputError, match="good"):
        AnomalyProposer([], class_id=1)
    ref = np.zeros((64, 64, 3), np.uint8)
    with pytest.raises(InputError, match="--class"):
        AnomalyProposer([ref])


def test_misfit_references_fall_back_to_the_pooled_model_and_say_so():
    rng = np.random.default_rng(0)
    refs = [rng.integers(90, 110, (120, 300, 3), dtype=np.uint8) for _ in range(3)]  # noise: nothing to align
    image = rng.integers(90, 110, (200, 160, 3), dtype=np.uint8)
    image[80:110, 60:90] = 20  # a dark blotch
    props = AnomalyProposer(refs, class_id=1).propose(image, "x")
    assert len(props) >= 1
    x0, y0, x1, y1 = props.xyxy[0]
    assert x0 <= 62 and y0 <= 82 and x1 >= 88 and y1 >= 108


def test_nearest_class_by_appearance():
    image = np.full((100, 100, 3), 150, np.uint8)
    image[10:30, 10:30] = (40, 40, 40)  # dark chip
    image[60:90, 60:70] = (150, 90, 40)  # brown elongated stain
    dark = np.zeros((100, 100), bool)
    dark[10:30, 10:30] = True
    brown = np.zeros((100, 100), bool)
    brown[60:90, 60:70] = True
    clf = NearestClass(np.stack([region_features(image, dark), region_features(image, brown)]), np.array([1, 2]))
    probe = image.copy()
    probe[40:55, 40:55] = (45, 45, 45)
    m = np.zeros((100, 100), bool)
    m[40:55, 40:55] = True
    assert clf.predict(region_features(probe, m)) == 1


def _striped(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A brushed-metal-like texture: vertical streaks plus noise, at a random phase (no two crops align)."""
    cols = 110 + 25 * np.sin(np.arange(w) * 0.9 + rng.uniform(0, 6)) + rng.normal(0, 6, w)
    img = cols[None, :] + rng.normal(0, 4, (h, w))
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


@pytest.mark.parametrize(
    "blob, expect",
    [
        (True, 1),  # a dark blowhole-like spot away from the frame is proposed
        (False, 0),  # the same texture, differently cropped, gives nothing
    ],
)
def test_pooled_patch_model_is_position_free(blob, expect):
    rng = np.random.default_rng(5)
    refs = [_striped(rng, 180 + 20 * i, 220 - 15 * i) for i in range(3)]
    image = _striped(rng, 200, 170)
    if blob:
        yy, xx = np.mgrid[:200, :170]
        image[(yy - 100) ** 2 + (xx - 80) ** 2 < 64] = 30
    proposer = AnomalyProposer(refs, class_id=1)
    props = proposer.propose(image, "t")
    assert proposer.model.last_mode.startswith("pooled")
    assert len(props) == expect
    if expect:
        x0, y0, x1, y1 = props.xyxy[0]
        assert x0 <= 73 and y0 <= 93 and x1 >= 87 and y1 >= 107 and x1 - x0 < 40
