"""``bench roundtrip``: each format, read back by its own reader, keeps the masks (the targets of the
export's exactness), and a second import -> export cycle writes the same labels as the first."""

from __future__ import annotations

import argparse
import json

import pytest

from bench.roundtrip import run_roundtrip
from data.sample import generate


def _check_targets(results: dict) -> None:
    assert set(results) == {"coco", "coco-rle", "yolo-segment"}
    for name, r in results.items():
        assert r["n"] > 0 and r["single_n"] > 0, name
        assert r["single_mean"] >= 0.99 and r["single_min"] >= 0.95, (name, r)
        assert r["area_ok"] == r["n"], (name, r)  # area is what the file's own segmentation draws
        assert r["second_cycle_same"], (name, r["second_cycle_changed_images"])
    rle = results["coco-rle"]
    assert rle["single_min"] == 1.0 and (rle["multi_n"] == 0 or rle["multi_min"] == 1.0)  # RLE is exact


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample")
    generate(out, n=12, seed=3)  # another seed than the README's figures
    return out


def test_the_sample_survives_every_format(sample):
    _check_targets(run_roundtrip(sample / "images", sample / "ground_truth.json", say=lambda line: None))


def test_real_defects_survive_every_format(realdata):
    _check_targets(run_roundtrip(realdata / "images", realdata / "ground_truth.json", say=lambda line: None))


def test_the_command_prints_and_writes_json(sample, tmp_path, capsys):
    from bench.cli import cmd_bench_roundtrip

    target = tmp_path / "rt.json"
    args = argparse.Namespace(images=sample / "images", gt=sample / "ground_truth.json", json=str(target))
    assert cmd_bench_roundtrip(args) == 0
    out = capsys.readouterr().out
    assert "coco " in out and "yolo-segment" in out and "second cycle same: True" in out
    assert json.loads(target.read_text())["coco"]["second_cycle_same"] is True
