"""``bench store``: the figures it reports, on a small image, and its bad inputs."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from annotate.segmenters.classical import ClassicalSegmenter
from bench.cli import cmd_bench_store
from bench.store import held_bytes, run_bench
from data.errors import InputError


def test_held_bytes_counts_each_buffer_once():
    a = np.zeros(1000, np.uint8)
    assert held_bytes([a, a, a[10:]]) - held_bytes([]) < 1000 + 1000  # the view and the repeats add no buffer
    assert held_bytes({"x": np.zeros((100, 100), bool)}) >= 10_000


def test_run_bench_reports_every_timing_and_the_undo_history(capsys):
    r = run_bench(ClassicalSegmenter(), (1, 3), 800, 800, repeats=2, edits=4, seed=1, say=print)
    assert [x["n"] for x in r["results"]] == [1, 3] and r["accept_ratio"] > 0
    for x in r["results"]:
        assert all(x[f"{k}_ms"] > 0 for k in ("accept", "undo_accept", "delete", "undo_delete", "annotation", "load"))
        assert x["undo_steps"] == 4 and 0 <= x["undo_mb"] < 5
    assert "accept with 3 annotations / with 1" in capsys.readouterr().out


@pytest.mark.parametrize("size, n, error", [("4000-3000", [1], "WIDTHxHEIGHT"), ("200x200", [1], "at least 800"),
                                            ("800x800", [0], "at least 1")])
def test_bad_inputs_are_one_line_errors(size, n, error, tmp_path):
    args = argparse.Namespace(size=size, n=n, repeats=1, edits=1, seed=0, segmenter="classical", weights_dir=None,
                              device="cpu", random_init=False, json=str(tmp_path / "r.json"))
    with pytest.raises(InputError, match=error):
        cmd_bench_store(args)


def test_cli_writes_the_json(tmp_path):
    args = argparse.Namespace(size="800x800", n=[1], repeats=1, edits=2, seed=0, segmenter=None, weights_dir=None,
                              device="cpu", random_init=False, json=str(tmp_path / "r.json"))
    assert cmd_bench_store(args) == 0
    doc = json.loads((tmp_path / "r.json").read_text())
    assert doc["width"] == 800 and doc["segmenter"] == "classical" and len(doc["results"]) == 1
