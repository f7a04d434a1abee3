"""bench hostile's readers and loaders parts: every hostile input refused, nothing outside, no code run."""

from __future__ import annotations

from bench import hostile


def test_readers_refuse_links_and_bombs_and_unpack_little(tmp_path):
    r = hostile.readers(tmp_path / "readers")
    assert r["files_written_outside"] == 0 and r["outside_lines_echoed"] == 0
    assert r["max_bytes_unpacked_per_byte"] <= 1
    by = {c["input"]: c for c in r["cases"]}
    assert all(c["imported"] == 0 and c["refused"] for k, c in by.items() if "padded" not in k)
    assert by["zip padded with members no reader takes"]["imported"] == 1


def test_no_loader_runs_a_rigged_checkpoint(tmp_path):
    r = hostile.loaders(tmp_path / "loaders")
    assert r["code_executed"] == 0 and len(r["cases"]) == 5
    assert all("UnsafeCheckpointError" in c["outcome"] for c in r["cases"])
