"""``bench proposals`` end to end on a small sample (the weight-free anomaly proposer, CPU)."""

from __future__ import annotations

import pytest

from data.errors import InputError


def test_bench_cli_on_a_small_sample(tmp_path, capsys):
    import argparse
    import json

    from bench.cli import cmd_bench_proposals
    from data.sample import generate

    generate(tmp_path / "s", n=8, seed=0)
    args = argparse.Namespace(
        images=str(tmp_path / "s" / "images"), gt=str(tmp_path / "s" / "ground_truth.json"), proposer="anomaly",
        good=2, min_score=None, segmenter=None, project=None, weights_dir=None, device="cpu",
        json=str(tmp_path / "r.json"),
    )
    assert cmd_bench_proposals(args) == 0
    out = capsys.readouterr().out
    assert "references (not scored): bottle_002.png, bottle_005.png" in out
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["images_scored"] == 6 and doc["overall"]["n_gt"] > 0 and doc["min_score"] == 0.5
    assert 0 <= doc["overall"]["recall"] <= 1 and doc["images_per_s"] > 0
    with pytest.raises(InputError, match="--good 9"):
        cmd_bench_proposals(argparse.Namespace(**{**vars(args), "good": 9}))
