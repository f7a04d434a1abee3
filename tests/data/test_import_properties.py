"""Property-based tests of the label readers: random and hostile COCO structures and YOLO lines.

Whatever a file holds, reading it never raises (``read_coco`` may raise InputError for a file
that is not COCO at all); every valid annotation in it arrives; every other one arrives or is
reported, by its place, with a reason. Valid annotations (a known number of them, mixed with
hostile ones) are: an integer id and image_id naming a listed image, a known integer
category_id, iscrowd 0, and a polygon of at least 3 finite points inside the image covering a
pixel, or a bbox of 4 finite numbers with w, h > 0 inside the image.

Hypothesis runs derandomized with no example database; its other files (a Unicode table) go
to the system's temporary folder, never into the repository.
"""

from __future__ import annotations

import inspect
import json
import math
import re
import tempfile
from pathlib import Path
from typing import Any

import hypothesis.configuration
import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from data.annotations import Annotations
from data.coco import CocoFile, read_coco
from data.errors import InputError
from data.geometry import encode_rle
from data.importers import import_sources
from data.store import Project
from tests.data.conftest import png_bytes, random_rgb

hypothesis.configuration.set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "defect-studio-hypothesis")


def _settings(n: int, shrink: bool = True) -> settings:
    """Derandomized, no example database; one bug reported per test (shrinking them all costs minutes)."""
    phases = tuple(p for p in Phase if shrink or p not in (Phase.shrink, Phase.explain))
    return settings(derandomize=True, database=None, max_examples=n, deadline=None, print_blob=False,
                    report_multiple_bugs=False, phases=phases,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much, HealthCheck.large_base_example])


def _mostly(good: st.SearchStrategy, other: st.SearchStrategy) -> st.SearchStrategy:
    """``good`` three times in four (one_of draws its branches alike; the same one given twice counts once)."""
    return st.one_of(*(good.map(lambda v: v) for _ in range(3)), other)


H, W = 16, 24  # the readers' image (not square: a swapped axis shows)
CATEGORIES = {1: "chip", 2: "crack"}
NAMES = ["chip", "crack"]
NAN, INF = float("nan"), float("inf")

# ------------------------------------------------------------------ hostile values
FAR = [1e9, -1e9, 1e308, -1e308, NAN, INF, -INF, 10**400, -(10**400), 2**63, -(2**63) - 1, 2**64, -0.0, 1e-320]
numbers = st.one_of(
    st.integers(-40, 40),
    st.floats(-40, 40),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.sampled_from(FAR),
)
LONG_NAME = "x" * 65  # longer than a class name may be
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=10),
                    st.sampled_from(["1", "16", "nan", "Infinity", "", " ", LONG_NAME]))
anything = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                        | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=8)
hostile = st.one_of(numbers, anything)

polygons = st.one_of(
    st.lists(st.lists(st.one_of(numbers, st.integers(0, W)), max_size=12), max_size=3),
    st.lists(numbers, max_size=8),  # flat: not a list of polygons
)


def _rectangle_rle(x0: int, y0: int, dx: int, dy: int) -> str:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y0 + dy, x0:x0 + dx] = True
    return encode_rle(m)["counts"]


rle_strings = st.builds(_rectangle_rle, st.integers(0, W - 1), st.integers(0, H - 1), st.integers(0, 6),
                        st.integers(0, 6))
counts = st.one_of(
    rle_strings,  # a true one, and one cut short or run on
    st.tuples(rle_strings, st.sampled_from(["", "0", "P", "o", "\0", "a\0b", "~"]), st.booleans())
    .map(lambda t: (t[0][:-1] if t[2] else t[0]) + t[1]),
    st.lists(st.one_of(st.integers(-3, H * W + 3), numbers), max_size=8),
    st.lists(st.integers(0, 40), max_size=12).map(lambda r: r + [H * W - sum(r)] if sum(r) <= H * W else r),
    st.text(max_size=30),
    anything,
)
rles = st.fixed_dictionaries({"size": _mostly(st.just([H, W]), st.one_of(st.lists(numbers, max_size=3), anything)),
                              "counts": counts})
segmentations = st.one_of(rles, rles.map(lambda v: v), polygons, hostile)


def hostile_annotation(image_id: Any = None, ann_id: Any = None) -> st.SearchStrategy:
    """A COCO annotation with hostile values in any field, or a valid one with one or two fields made
    hostile or left out (ids fixed when given)."""
    return st.one_of(_any_fields(image_id, ann_id), _spoilt(image_id, ann_id))


HOSTILE_FIELDS = {
    "category_id": st.one_of(st.sampled_from([3, 0, -1, True, "1", 1.0]), hostile),
    "bbox": st.one_of(st.lists(st.one_of(numbers, st.integers(0, W)), max_size=6), hostile),
    "segmentation": segmentations,
    "iscrowd": st.one_of(st.sampled_from([1, "0", True, None]), hostile),
    "area": hostile,
    "score": st.one_of(st.floats(0, 1), hostile),
}


@st.composite
def _spoilt(draw, image_id: Any = None, ann_id: Any = None) -> dict:
    ann, _ = draw(valid_annotation(image_id=1 if image_id is None else image_id, ann_id=1 if ann_id is None else ann_id))
    if image_id is None:
        ann["image_id"] = draw(st.one_of(st.just(1), hostile))
    if ann_id is None:
        ann["id"] = draw(st.one_of(st.just(1), hostile))
    fields = ["segmentation", "segmentation", "segmentation", *sorted(HOSTILE_FIELDS)]  # the richest field, most
    for key in dict.fromkeys(draw(st.lists(st.sampled_from(fields), min_size=1, max_size=2))):
        if draw(st.integers(0, 4)) == 0:
            ann.pop(key, None)
        else:
            ann[key] = draw(HOSTILE_FIELDS[key])
    return ann


def _any_fields(image_id: Any = None, ann_id: Any = None) -> st.SearchStrategy:
    fixed = {}
    if image_id is not None:
        fixed["image_id"] = st.just(image_id)
    if ann_id is not None:
        fixed["id"] = st.just(ann_id)
    optional = {
        "category_id": st.one_of(st.sampled_from([1, 2, 3, 0, -1, True]), hostile),
        "bbox": st.one_of(st.lists(st.one_of(numbers, st.integers(0, W)), max_size=6), hostile),
        "segmentation": segmentations,
        "iscrowd": st.one_of(st.sampled_from([0, 1, "0", True, False, None]), hostile),
        "area": hostile,
        "score": st.one_of(st.floats(0, 1), hostile),
    }
    if image_id is None:
        optional["image_id"] = st.one_of(st.sampled_from([1, 2, 99]), hostile)
    if ann_id is None:
        optional["id"] = hostile
    return st.fixed_dictionaries(fixed, optional=optional)


# ------------------------------------------------------------------ valid annotations
@st.composite
def valid_annotation(draw, h: int = H, w: int = W, image_id: int = 1, ann_id: int = 1) -> tuple[dict, dict]:
    """``(annotation, what it must become)``: a bbox, or a rectangle or triangle polygon."""
    cat = draw(st.sampled_from(sorted(CATEGORIES)))
    ann: dict[str, Any] = {"id": ann_id, "image_id": image_id, "category_id": cat}
    if draw(st.booleans()):
        ann["iscrowd"] = 0
    if draw(st.booleans()):
        ann["area"] = draw(st.floats(0, 1000))
    kind = draw(st.sampled_from(["bbox", "rectangle", "triangle"]))
    if kind == "bbox":
        x = draw(st.floats(0, w - 1))
        y = draw(st.floats(0, h - 1))
        bw = draw(st.floats(0.5, w - x))
        bh = draw(st.floats(0.5, h - y))
        ann["bbox"] = [x, y, bw, bh]
        if draw(st.booleans()):
            ann["segmentation"] = []
        return ann, {"kind": kind, "cat": cat, "box": (x, y, min(x + bw, w), min(y + bh, h))}
    x0, y0 = draw(st.integers(0, w - 3)), draw(st.integers(0, h - 3))
    x1, y1 = draw(st.integers(x0 + 3, w)), draw(st.integers(y0 + 3, h))
    poly = [x0, y0, x1, y0, x1, y1, x0, y1] if kind == "rectangle" else [x0, y0, x1, y0, x0, y1]
    ann["segmentation"] = [poly]
    if draw(st.booleans()):
        ann["bbox"] = [x0, y0, x1 - x0, y1 - y0]
    return ann, {"kind": kind, "cat": cat, "box": (x0, y0, x1, y1)}


def _mixed(draw, valid: list, bad: list) -> tuple[list, list]:
    """``valid`` and ``bad`` interleaved at random: ``(items, the expectation of each or None)``."""
    order = draw(st.permutations([("v", i) for i in range(len(valid))] + [("b", i) for i in range(len(bad))]))
    items = [valid[i][0] if t == "v" else bad[i] for t, i in order]
    expect = [valid[i][1] if t == "v" else None for t, i in order]
    return items, expect


@st.composite
def coco_objects(draw) -> tuple[list, list]:
    valid = [draw(valid_annotation(ann_id=k + 1)) for k in range(draw(st.integers(0, 4)))]
    bad = draw(st.lists(st.one_of(hostile_annotation(), anything), max_size=8))
    return _mixed(draw, valid, bad)


# ------------------------------------------------------------------ checks shared by the readers
def _row_is_sound(rows: Annotations, i: int) -> None:
    x0, y0, x1, y1 = (float(v) for v in rows.xyxy[i])
    assert all(math.isfinite(v) for v in (x0, y0, x1, y1)), rows.xyxy[i]
    assert 0 <= x0 <= x1 <= rows.width and 0 <= y0 <= y1 <= rows.height, rows.xyxy[i]
    crop = rows.crops[i]
    if crop is not None:
        ox, oy = (int(v) for v in rows.origins[i])
        assert crop.any(), "a mask row with no pixel"
        assert ox >= 0 and oy >= 0 and ox + crop.shape[1] <= rows.width and oy + crop.shape[0] <= rows.height
    assert rows.status[i] in ("accepted", "proposed")
    score = float(rows.confidence[i])
    assert math.isnan(score) or math.isfinite(score), f"confidence {score}"  # what the page gets as JSON


def _check_rows(rows: Annotations, items: list, expect: list, errors: list, skipped: set[int] = frozenset(),
                names: dict[int, str] | None = None) -> None:
    """Each item became one row (in order) or one error; every valid one a row as expected."""
    assert (rows.height, rows.width) == (H, W)
    failed = [k for k, _ in errors]
    assert len(set(failed)) == len(failed), f"an item reported twice: {errors}"
    for k, why in errors:
        assert 0 <= k < len(items) and k not in skipped
        assert isinstance(why, str) and why.strip(), f"item {k} rejected without a reason"
    kept = [k for k in range(len(items)) if k not in set(failed) and k not in skipped]
    assert len(rows) == len(kept), f"{len(items)} items, {len(errors)} rejected, {len(rows)} rows"
    assert len(rows.data["name"]) == len(rows)
    for i, k in enumerate(kept):
        _row_is_sound(rows, i)
        want = expect[k]
        if want is None:
            continue
        assert int(rows.class_id[i]) == want["cat"] and rows.data["name"][i] == (names or CATEGORIES)[want["cat"]]
        assert rows.status[i] == "accepted"
        bx0, by0, bx1, by1 = want["box"]
        x0, y0, x1, y1 = (float(v) for v in rows.xyxy[i])
        if want["kind"] in ("bbox", "detect"):
            assert rows.crops[i] is None, "a bbox became a mask"
            assert np.allclose([x0, y0, x1, y1], [bx0, by0, bx1, by1], atol=1e-3), (rows.xyxy[i], want)
        else:  # the polygon's pixels lie within its bounds
            assert bx0 - 1 <= x0 and by0 - 1 <= y0 and x1 <= bx1 + 1 and y1 <= by1 + 1, (rows.xyxy[i], want)
    for k, want in enumerate(expect):
        if want is not None:
            assert k not in set(failed), f"valid item {k} {items[k]} rejected: {dict(errors)[k]}"


def _finite(v: Any) -> bool:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def _all_integers(counts: Any) -> bool:
    return isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in counts)


def _string_runs(text: str) -> list[int] | None:
    """The runs of a compressed COCO RLE string (``rleFrString``), or None where it is malformed."""
    runs: list[int] = []
    p = 0
    while p < len(text):
        x, k, more = 0, 0, True
        while more:
            if p >= len(text) or not 48 <= ord(text[p]) < 48 + 64:
                return None  # ends inside a number, or a character outside the alphabet
            c = ord(text[p]) - 48
            x |= (c & 0x1F) << (5 * k)
            more = bool(c & 0x20)
            p += 1
            k += 1
            if not more and c & 0x10:
                x |= -1 << (5 * k)
        if len(runs) > 2:
            x += runs[-2]
        runs.append(x)
    return runs


def _reference_rle(counts: Any) -> np.ndarray | None:
    """The ``H x W`` mask of RLE ``counts`` (a list of runs or a compressed string), None if they draw none."""
    runs = counts if _all_integers(counts) else _string_runs(counts) if isinstance(counts, str) else None
    if runs is None or any(r < 0 for r in runs) or sum(runs) != H * W:
        return None
    flat = np.zeros(H * W, dtype=bool)
    pos = 0
    for i, r in enumerate(runs):
        flat[pos:pos + r] = i % 2 == 1
        pos += r
    return flat.reshape(W, H).T  # column-major


def _from_coco(objs: list, h: int = H, w: int = W) -> tuple[Annotations, list, list]:
    errors: list = []
    notes: list = []
    kwargs: dict[str, Any] = {"on_error": lambda k, why: errors.append((k, why))}
    if "on_note" in inspect.signature(Annotations.from_coco).parameters:
        kwargs["on_note"] = lambda k, what: notes.append((k, what))
    rows = Annotations.from_coco(objs, CATEGORIES, h, w, source="import", **kwargs)
    return rows, errors, notes


# ------------------------------------------------------------------ from_coco
@_settings(100)
@given(coco_objects())
def test_from_coco_keeps_every_valid_annotation_and_reports_the_rest(case):
    items, expect = case
    rows, errors, notes = _from_coco(items)
    _check_rows(rows, items, expect, errors)
    rejected = {k for k, _ in errors}
    for k, what in notes:  # a note is about a row that was kept
        assert k not in rejected and isinstance(what, str) and what.strip(), (k, what)
    noted = {k for k, _ in notes}
    kept = [k for k in range(len(items)) if k not in rejected]
    for i, k in enumerate(kept):
        seg = items[k].get("segmentation") if isinstance(items[k], dict) else None
        if rows.crops[i] is None or not seg:
            continue
        if isinstance(seg, dict):  # an RLE arrives as the mask its runs draw, or not at all
            want = _reference_rle(seg.get("counts"))
            if want is not None or _all_integers(seg.get("counts")) or isinstance(seg.get("counts"), str):
                assert want is not None, f"RLE {seg} arrived as a mask but its runs do not draw a {W}x{H} mask"
                assert np.array_equal(rows.full_mask(i), want), f"RLE {seg} arrived as other pixels"
        elif isinstance(seg, list) and any(isinstance(p, list) and not all(_finite(v) for v in p) for p in seg):
            assert k in noted, f"polygons {seg} with a value that is not a finite number arrived without a note"


rle_annotations = st.lists(st.fixed_dictionaries(
    {"category_id": st.sampled_from(sorted(CATEGORIES)), "segmentation": rles},
    optional={"bbox": st.just([1, 1, 4, 4]), "iscrowd": st.sampled_from([0, 1])}), min_size=1, max_size=4)


@_settings(100)
@given(rle_annotations)
def test_from_coco_an_rle_arrives_as_the_mask_its_runs_draw_or_is_reported(items):
    rows, errors, notes = _from_coco(items)
    _check_rows(rows, items, [None] * len(items), errors)
    rejected = {k for k, _ in errors}
    kept = [k for k in range(len(items)) if k not in rejected]
    for i, k in enumerate(kept):
        counts = items[k]["segmentation"]["counts"]
        want = _reference_rle(counts)
        if want is None and not _all_integers(counts) and not isinstance(counts, str):
            continue  # runs of another kind (floats): what they mean is the reader's choice
        assert want is not None, f"RLE {items[k]['segmentation']} arrived, but its runs draw no {W}x{H} mask"
        assert rows.crops[i] is not None and np.array_equal(rows.full_mask(i), want), \
            f"RLE {items[k]['segmentation']} arrived as other pixels than its runs draw"


# ------------------------------------------------------------------ from_yolo
TOKENS = ["0", "1", "2", "-1", "0.5", "0.25", "1.0", "0", "1.5", "-0.1", "1e9", "1e308", "-1e308", "1e400", "nan",
          "inf", "-inf", "99999999999999999999", "x", "0x1", "1_0", "\u0663", "+0.5", ".5", "5.", "1e-320", "NaN"]


@st.composite
def valid_yolo_line(draw) -> tuple[str, dict]:
    c = draw(st.integers(0, len(NAMES) - 1))
    sep = draw(st.sampled_from([" ", "  ", "\t"]))
    if draw(st.booleans()):  # detect: centre and size, normalised
        x0, y0 = draw(st.integers(0, W - 1)), draw(st.integers(0, H - 1))
        x1, y1 = draw(st.integers(x0 + 1, W)), draw(st.integers(y0 + 1, H))
        vals = [(x0 + x1) / 2 / W, (y0 + y1) / 2 / H, (x1 - x0) / W, (y1 - y0) / H]
        return sep.join([str(c)] + [repr(v) for v in vals]), {"kind": "detect", "cat": c, "box": (x0, y0, x1, y1)}
    x0, y0 = draw(st.integers(0, W - 3)), draw(st.integers(0, H - 3))
    x1, y1 = draw(st.integers(x0 + 3, W)), draw(st.integers(y0 + 3, H))
    pts = [x0, y0, x1, y0, x1, y1, x0, y1] if draw(st.booleans()) else [x0, y0, x1, y0, x0, y1]
    vals = [v / (W if i % 2 == 0 else H) for i, v in enumerate(pts)]
    return sep.join([str(c)] + [repr(v) for v in vals]), {"kind": "segment", "cat": c, "box": (x0, y0, x1, y1)}


hostile_yolo_line = st.one_of(
    st.lists(st.sampled_from(TOKENS), max_size=12).map(" ".join),
    st.text(max_size=40),
    st.just(""), st.just("   "),
)


@st.composite
def yolo_lines(draw) -> tuple[list, list]:
    valid = [draw(valid_yolo_line()) for _ in range(draw(st.integers(0, 4)))]
    bad = draw(st.lists(hostile_yolo_line, max_size=6))
    return _mixed(draw, valid, bad)


@_settings(100)
@given(yolo_lines())
def test_from_yolo_keeps_every_valid_line_and_reports_the_rest(case):
    lines, expect = case
    errors: list = []
    rows = Annotations.from_yolo(lines, NAMES, H, W, source="import", on_error=lambda k, why: errors.append((k, why)))
    blank = {k for k, line in enumerate(lines) if not line.strip()}
    _check_rows(rows, lines, expect, errors, skipped=blank, names=dict(enumerate(NAMES)))


# ------------------------------------------------------------------ read_coco
BIG = ["1" * 5000, "-" + "9" * 4400, "1e999", "-1e999", "1" + "0" * 400]  # JSON numbers no Python int or float holds
_BIG_MARK = "@@big{}@@"
big_marks = st.sampled_from([_BIG_MARK.format(i) for i in range(len(BIG))])
json_hostile = st.one_of(hostile, big_marks)


def _dumps(doc: Any) -> str:
    """JSON as Python writes it (NaN, Infinity), with the numbers no Python value holds put in raw."""
    text = json.dumps(doc)
    for i, raw in enumerate(BIG):
        text = text.replace(json.dumps(_BIG_MARK.format(i)), raw)
    return text


coco_images = st.lists(st.one_of(
    st.fixed_dictionaries({"id": st.integers(1, 5), "file_name": st.sampled_from(["a.png", "b.png"])},
                          optional={"width": json_hostile, "height": json_hostile}),
    st.fixed_dictionaries({}, optional={"id": json_hostile, "file_name": json_hostile, "width": json_hostile}),
    anything,
), max_size=4)
coco_categories = st.lists(st.one_of(
    st.fixed_dictionaries({"id": st.integers(1, 4), "name": st.sampled_from(["chip", "crack", " chip "])}),
    st.fixed_dictionaries({}, optional={"id": json_hostile, "name": json_hostile, "supercategory": json_hostile}),
), max_size=4)
coco_annotations = st.lists(st.one_of(hostile_annotation(), anything,
                                      st.fixed_dictionaries({}, optional={"id": big_marks, "bbox": big_marks})),
                            max_size=6)


coco_shaped = st.fixed_dictionaries(
    {"images": coco_images},
    optional={"categories": _mostly(coco_categories, json_hostile),
              "annotations": _mostly(coco_annotations, json_hostile),
              "info": json_hostile, "licenses": json_hostile})
coco_docs = _mostly(coco_shaped, st.one_of(json_hostile, st.fixed_dictionaries({"images": json_hostile})))  # or not COCO


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("properties")


def _int(digits: str) -> int | float:
    return int(digits) if len(digits) < 4000 else math.copysign(INF, -1 if digits[0] == "-" else 1)


def _is_id(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@_settings(100)
@given(doc=_mostly(coco_docs, st.one_of(st.binary(max_size=40), st.text(max_size=40))))
def test_read_coco_reads_a_file_or_says_it_is_not_coco(scratch, doc):
    path = Path(tempfile.mkdtemp(dir=scratch)) / "ann.json"
    if isinstance(doc, bytes):  # not JSON, maybe not text
        path.write_bytes(doc)
    else:
        path.write_text(_dumps(doc), encoding="utf-8")
    try:
        cf = read_coco(path)
    except InputError as err:
        assert str(err).strip()
        return
    assert isinstance(cf, CocoFile)
    text = json.loads(path.read_text(encoding="utf-8"), parse_int=_int)  # read_coco read it: so can json
    for where, why in cf.rejected:
        assert isinstance(where, str) and "ann.json" in where and isinstance(why, str) and why.strip()
    assert all(_is_id(k) and isinstance(v, str) and v.strip() for k, v in cf.categories.items())
    assert all(isinstance(im, dict) and _is_id(im["id"]) and isinstance(im["file_name"], str) for im in cf.images)
    images_out = [w for w, _ in cf.rejected if re.search(r"\bimage #\d+", w)]
    assert len(cf.images) + len(images_out) == len(text["images"])
    anns = text.get("annotations")
    held = sum(len(v) for v in cf.annotations_by_image.values())
    anns_out = [w for w, _ in cf.rejected if re.search(r"\bannotation #\d+", w)]
    if isinstance(anns, list):
        assert held + len(anns_out) == len(anns), (held, anns_out, len(anns))
    elif anns:  # something that is not a list of annotations is not silently taken for none
        assert any("annotations" in w + why for w, why in cf.rejected), cf.rejected
    for image_id, group in cf.annotations_by_image.items():
        assert _is_id(image_id) and all(isinstance(a, dict) and a["image_id"] == image_id for a in group)


# ------------------------------------------------------------------ import_sources
SIZE = 16  # the imported PNGs are SIZE x SIZE
PNG_A = png_bytes(random_rgb(11, SIZE, SIZE))
PNG_B = png_bytes(random_rgb(12, SIZE, SIZE))


@st.composite
def import_docs(draw) -> dict[str, Any]:
    """Image a.png (id 1, clean), b.png (id 2, hostile width/height) and maybe hostile images; categories
    chip (1) and crack (2) and maybe hostile ones; annotations: valid and hostile on each image (ids
    unique, from 1), and junk that no image can hold (not an object, or a non-integer id/image_id)."""
    image_a = {"id": 1, "file_name": "a.png"}
    if draw(st.booleans()):
        image_a.update(width=SIZE, height=SIZE)
    image_b = {"id": 2, "file_name": "b.png",
               **draw(st.fixed_dictionaries({}, optional={"width": st.one_of(st.just(SIZE), json_hostile),
                                                          "height": st.one_of(st.just(SIZE), json_hostile)}))}
    images = [image_a, image_b] + draw(st.lists(st.one_of(
        anything, st.fixed_dictionaries({"id": json_hostile, "file_name": json_hostile}),
        st.just({"id": 3, "file_name": "missing.png"})), max_size=2))
    images = draw(st.permutations(images))
    categories = [{"id": 1, "name": "chip"}, {"id": 2, "name": "crack"}]
    if draw(st.integers(0, 4)) == 0:
        categories += draw(st.lists(st.fixed_dictionaries({"id": st.one_of(st.integers(3, 9), json_hostile),
                                                            "name": json_hostile}), min_size=1, max_size=2))
    plan = draw(st.lists(st.sampled_from(["valid-a", "valid-b", "bad-a", "bad-b", "junk", "missing"]), max_size=10))
    annotations, expect = [], []
    for k, what in enumerate(plan, 1):
        image_id = {"a": 1, "b": 2}.get(what[-1], 3)
        if what.startswith("valid"):
            ann, want = draw(valid_annotation(SIZE, SIZE, image_id, k))
        elif what.startswith("bad") or what == "missing":
            ann, want = draw(hostile_annotation(image_id, k)), None
        else:  # not an object, or a non-integer image_id or id
            bad_id = json_hostile.filter(lambda v: not _is_id(v))
            ann = draw(st.one_of(
                anything.filter(lambda v: not isinstance(v, dict)),
                st.builds(lambda a, i: {**a, "image_id": i}, hostile_annotation(ann_id=k), bad_id),
                st.builds(lambda a, i: {**a, "id": i}, hostile_annotation(image_id=1), bad_id)))
            want = None
        annotations.append(ann)
        expect.append((what, want))
    return {"doc": {"images": images, "categories": categories, "annotations": annotations}, "plan": expect}


def _ids_rejected(rejected: tuple, file_name: str) -> set[int]:
    pattern = re.compile(rf"(?<![\w.]){re.escape(file_name)} annotation (-?\d+)\b")
    return {int(m.group(1)) for where, _ in rejected if (m := pattern.search(where))}


@_settings(25, shrink=False)  # an import is a project and a database: shrinking one takes a minute
@given(import_docs())
def test_import_keeps_every_valid_annotation_and_reports_the_rest(scratch, case):
    root = Path(tempfile.mkdtemp(dir=scratch))
    src = root / "src"
    src.mkdir()
    (src / "a.png").write_bytes(PNG_A)
    (src / "b.png").write_bytes(PNG_B)
    (src / "ann.json").write_text(_dumps(case["doc"]), encoding="utf-8")
    project = Project.create(root / "proj")
    report = import_sources(project, [src])  # nothing may escape: not even an InputError

    for where, why in report.rejected:
        assert isinstance(where, str) and where.strip() and isinstance(why, str) and why.strip(), (where, why)
    for where, what in getattr(report, "notes", ()):
        assert isinstance(where, str) and isinstance(what, str) and what.strip(), (where, what)
    assert report.imported == 2 and not report.duplicates, report  # both images, labels or not
    by_name = {im.name: im for im in project.images()}
    stored = {n: project.annotations(by_name[n].id) for n in ("a.png", "b.png") if n in by_name}
    stored = {n: len(rows) for n, rows in stored.items()}
    assert report.annotations_added == sum(stored.values())
    try:
        read_coco(src / "ann.json")
    except InputError:  # the file as a whole cannot be read (its categories): named, images imported
        assert any("ann.json" in w for w, _ in report.rejected), report.rejected
        assert report.annotations_added == 0
        return

    plan = case["plan"]
    junk = {k for k, (what, _) in enumerate(plan, 1) if what == "junk"}
    numbered = {int(m.group(1)) for w, _ in report.rejected if (m := re.search(r"annotation #(\d+)", w))}
    assert junk <= numbered, f"junk annotations not reported: {sorted(junk - numbered)} ({report.rejected})"
    listed = {im["id"] for im in case["doc"]["images"]
              if isinstance(im, dict) and _is_id(im.get("id")) and isinstance(im.get("file_name"), str)}
    if 3 not in listed:  # annotations of an image the file does not list: each named
        orphans = {k for k, (what, _) in enumerate(plan, 1) if what == "missing"}
        named = _ids_rejected(report.rejected, "ann.json")
        assert orphans <= named, f"annotations naming no listed image not reported: {sorted(orphans - named)}"
    for name, tag in (("a.png", "a"), ("b.png", "b")):
        ids = [k for k, (what, _) in enumerate(plan, 1) if what in (f"valid-{tag}", f"bad-{tag}")]
        valid = [k for k, (what, _) in enumerate(plan, 1) if what == f"valid-{tag}"]
        out = _ids_rejected(report.rejected, name)
        whole = [why for w, why in report.rejected if w.endswith(name) and not _ids_rejected(((w, why),), name)]
        if whole and tag == "b":  # b.png's declared size is hostile: its labels may go as a whole, named
            assert stored[name] == 0, (whole, stored)
            continue
        assert not whole, f"{name} lost its annotations as a whole: {whole}"
        assert not set(valid) & out, f"valid annotations of {name} rejected: {sorted(set(valid) & out)}"
        assert stored[name] + len(out & set(ids)) == len(ids), \
            f"{name}: {len(ids)} annotations, {stored[name]} stored, {sorted(out)} rejected ({report.rejected})"
        assert stored[name] >= len(valid)


# ------------------------------------------------------------------ found by the properties above
def _import_one(tmp_path: Path, text: str) -> Any:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.png").write_bytes(PNG_A)
    (src / "ann.json").write_text(text, encoding="utf-8")
    return import_sources(Project.create(tmp_path / "proj"), [src])


GOOD = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}


def _doc(**kw: Any) -> str:
    doc = {"images": [{"id": 1, "file_name": "a.png"}], "categories": [{"id": 1, "name": "chip"}],
           "annotations": [GOOD]}
    doc.update(kw)
    return _dumps(doc)


@pytest.mark.parametrize("mark", range(len(BIG)), ids=["5000-digits", "minus-4400-digits", "1e999", "minus-1e999",
                                                         "401-digits"])
def test_read_coco_a_number_no_python_value_holds_is_not_a_crash(tmp_path, mark):
    path = tmp_path / "ann.json"
    path.write_text(_doc(annotations=[GOOD, {**GOOD, "id": 2, "bbox": [1, 1, _BIG_MARK.format(mark), 5]}]))
    try:
        read_coco(path)
    except InputError:
        pass


def test_import_a_category_name_longer_than_a_class_name_is_rejected_not_fatal(tmp_path):
    text = _doc(categories=[{"id": 1, "name": "chip"}, {"id": 2, "name": LONG_NAME}],
                annotations=[GOOD, {**GOOD, "id": 2, "category_id": 2}])
    report = _import_one(tmp_path, text)
    assert report.imported == 1 and report.annotations_added >= 1
    assert any(LONG_NAME[:10] in w + why or "64" in why for w, why in report.rejected), report.rejected


def test_import_an_annotation_naming_no_listed_image_is_reported(tmp_path):
    report = _import_one(tmp_path, _doc(annotations=[GOOD, {**GOOD, "id": 2, "image_id": 7}]))
    assert report.annotations_added == 1
    assert any("annotation" in w and ("7" in w + why or "image" in why) for w, why in report.rejected), report.rejected


@pytest.mark.parametrize("annotations", [{"1": GOOD}, "annotations", 5], ids=["object", "string", "number"])
def test_import_annotations_that_are_not_a_list_are_reported(tmp_path, annotations):
    report = _import_one(tmp_path, _doc(annotations=annotations))
    assert report.imported == 1
    assert any("annotations" in w + why for w, why in report.rejected), report.rejected


def test_import_width_and_height_written_as_strings_of_the_true_size(tmp_path):
    report = _import_one(tmp_path, _doc(images=[{"id": 1, "file_name": "a.png", "width": "16", "height": "16"}]))
    # the labels import, or the message says what is wrong with the declared size (not "16x16 is not 16x16")
    if report.annotations_added == 0:
        (why,) = [why for w, why in report.rejected if w.endswith("a.png")]
        assert not re.search(r"says 16x16 but the image is 16x16", why), why


@pytest.mark.parametrize("score", [1e300, -1e300, 3.5e38], ids=["1e300", "minus-1e300", "3.5e38"])
def test_from_coco_a_score_no_float32_holds_is_rejected_or_kept_finite(score):
    rows, errors, _ = _from_coco([{"category_id": 1, "bbox": [1, 1, 4, 4], "score": score}, GOOD])
    if errors:
        ((k, why),) = errors
        assert k == 0 and "score" in why, errors
    for i in range(len(rows)):
        _row_is_sound(rows, i)
