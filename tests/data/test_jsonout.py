"""``--json OUT``: one writer for every command (``-`` is stdout, files are replaced atomically)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from data.jsonout import dumps, write_json


def test_dash_is_stdout(capsys):
    write_json({"b": 1, "a": [1, 2]}, "-")
    out = capsys.readouterr().out
    assert json.loads(out) == {"a": [1, 2], "b": 1} and out == dumps({"a": [1, 2], "b": 1}) + "\n"


def test_file_is_written_whole_in_a_new_folder(tmp_path, capsys):
    target = tmp_path / "new" / "deeper" / "out.json"
    write_json({"path": Path("/x/y"), "n": 3}, target)
    assert json.loads(target.read_text()) == {"path": "/x/y", "n": 3}
    write_json({"n": 4}, str(target))  # replaced, not appended
    assert json.loads(target.read_text()) == {"n": 4}
    assert os.listdir(target.parent) == ["out.json"]  # no temporary file left behind
    assert capsys.readouterr().out == ""


def test_nothing_without_a_target(tmp_path):
    write_json({"a": 1}, None)
    write_json({"a": 1}, "")
    assert not any(tmp_path.iterdir())


def test_an_unwritable_target_is_a_clear_error_and_leaves_nothing(tmp_path):
    import pytest

    from data.errors import InputError

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(InputError, match="cannot write --json"):
        write_json({"a": 1}, blocker / "out.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]
