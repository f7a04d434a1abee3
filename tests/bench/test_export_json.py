"""``--json OUT`` of the benchmarks goes through the one writer (``data.jsonout``)."""

from __future__ import annotations

import argparse
import json


def test_bench_export_writes_its_json(tmp_path, capsys):
    from bench.cli import cmd_bench_export
    from data.export import FORMATS

    target = tmp_path / "sub" / "export.json"
    assert cmd_bench_export(argparse.Namespace(n=2, seed=0, json=str(target))) == 0
    out = capsys.readouterr().out
    assert out.startswith("built a project of 2 images (5 masks each)")
    doc = json.loads(target.read_text())
    assert doc["n_images"] == 2 and doc["seed"] == 0 and list(doc["formats"]) == list(FORMATS)
    assert all(v["seconds"] >= 0 for v in doc["formats"].values())
