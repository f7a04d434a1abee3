"""Hostile COCO files: one bad value rejects that one annotation (or the file, for its categories),
named with its place and fault; the rest imports and nothing crashes (the process included)."""

from __future__ import annotations

from pathlib import Path

import pytest

from data.importers import import_sources
from data.store import Project
from tests.data.conftest import png_bytes, random_rgb

IMAGES = '[{"id": 1, "file_name": "a.png", "width": 64, "height": 48}]'
CATEGORIES = '[{"id": 1, "name": "chip"}]'
GOOD = '{"id": 99, "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}'
HUGE = "1" + "0" * 400  # a JSON number no float holds


def _write(tmp_path: Path, text: str) -> Path:
    root = tmp_path / "src"
    root.mkdir()
    (root / "a.png").write_bytes(png_bytes(random_rgb(3)))
    (root / "ann.json").write_text(text, encoding="utf-8")
    return root


def _doc(bad_annotation: str) -> str:
    return f'{{"images": {IMAGES}, "categories": {CATEGORIES}, "annotations": [{GOOD}, {bad_annotation}]}}'


@pytest.mark.parametrize(
    "bad, where, reason",
    [
        ('{"id": 2, "image_id": [1], "category_id": 1, "bbox": [1, 1, 5, 5]}', "annotation #2", "integer 'image_id'"),
        ('{"id": [2], "image_id": 1, "category_id": 1, "bbox": [1, 1, 5, 5]}', "annotation #2", "integer 'image_id'"),
        ('"not an object"', "annotation #2", "JSON object"),
        (f'{{"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 1, {HUGE}, 5]}}', "annotation 2", "no usable bbox"),
        ('{"id": 2, "image_id": 1, "category_id": 1, "bbox": [1, 1, NaN, 5]}', "annotation 2", "no usable bbox"),
        ('{"id": 2, "image_id": 1, "category_id": 1, "bbox": ["1", 1, 5, 5]}', "annotation 2", "no usable bbox"),
        ('{"id": 2, "image_id": 1, "category_id": "abc", "bbox": [1, 1, 5, 5]}', "annotation 2", "unknown category"),
        ('{"id": 2, "image_id": 1, "category_id": [1], "bbox": [1, 1, 5, 5]}', "annotation 2", "unknown category"),
        ('{"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, "x", 0, 5, 5]]}', "annotation 2",
         "finite number"),
        (f'{{"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, {HUGE}, 0, 5, 5]]}}', "annotation 2",
         "finite number"),
        ('{"id": 2, "image_id": 1, "category_id": 1, "segmentation": {"size": [48, 64], "counts": [1e12]}}',
         "annotation 2", "unreadable RLE"),
        ('{"id": 2, "image_id": 1, "category_id": 1, "segmentation": {"size": [48, 64], "counts": [-5]}}',
         "annotation 2", "unreadable RLE"),
        ('{"id": 2, "image_id": 1, "category_id": 1, "segmentation": {"size": [48], "counts": [5]}}',
         "annotation 2", "RLE size"),
        ('{"id": 2, "image_id": 1, "category_id": 1, "segmentation": {"size": "ab", "counts": [5]}}',
         "annotation 2", "RLE size"),
    ],
)
def test_one_bad_annotation_is_rejected_by_name_and_the_rest_imports(tmp_path, bad, where, reason):
    project = Project.create(tmp_path / "proj")
    report = import_sources(project, [_write(tmp_path, _doc(bad))])
    assert report.imported == 1 and report.annotations_added == 1
    (name, why), = [r for r in report.rejected if where in r[0]]
    assert reason in why, why


def test_far_polygon_vertices_are_clipped_not_fatal(tmp_path):
    bad = '{"id": 2, "image_id": 1, "category_id": 1, "segmentation": [[0, 0, 1e9, 0, 1e9, 1e9]]}'
    project = Project.create(tmp_path / "proj")
    report = import_sources(project, [_write(tmp_path, _doc(bad))])
    assert report.annotations_added == 2 and not report.rejected


@pytest.mark.parametrize(
    "text, reason",
    [
        (f'{{"images": {IMAGES}, "categories": {{"1": "chip"}}, "annotations": []}}', "'categories' must be a list"),
        (f'{{"images": {IMAGES}, "categories": [{{"id": 1, "name": "a"}}, {{"id": "2", "name": "b"}}]}}',
         "integer 'id'"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ],
    ids=["categories-not-a-list", "string-category-id", "nested-100000-deep"],
)
def test_a_file_that_cannot_be_read_is_rejected_and_its_images_still_import(tmp_path, text, reason):
    project = Project.create(tmp_path / "proj")
    report = import_sources(project, [_write(tmp_path, text)])
    assert report.imported == 1 and report.annotations_added == 0
    assert any(reason in why for _, why in report.rejected), report.rejected


def test_an_image_without_an_integer_id_is_named(tmp_path):
    text = '{"images": [{"id": "x", "file_name": "a.png"}], "categories": [], "annotations": []}'
    report = import_sources(Project.create(tmp_path / "proj"), [_write(tmp_path, text)])
    assert ("ann.json image #1", "needs an integer 'id' and a 'file_name'; left out.") in report.rejected


def test_width_and_height_given_as_numeric_strings_are_numbers(tmp_path):
    images = '[{"id": 1, "file_name": "a.png", "width": "64", "height": "48"}]'
    text = f'{{"images": {images}, "categories": {CATEGORIES}, "annotations": [{GOOD}]}}'
    report = import_sources(Project.create(tmp_path / "proj"), [_write(tmp_path, text)])
    assert report.imported == 1 and report.annotations_added == 1 and not report.rejected


def test_numeric_strings_that_disagree_with_the_image_are_named(tmp_path):
    images = '[{"id": 1, "file_name": "a.png", "width": "65", "height": "48"}]'
    text = f'{{"images": {images}, "categories": {CATEGORIES}, "annotations": [{GOOD}]}}'
    report = import_sources(Project.create(tmp_path / "proj"), [_write(tmp_path, text)])
    assert report.annotations_added == 0
    assert any("COCO says 65x48 but the image is 64x48" in why for _, why in report.rejected), report.rejected
