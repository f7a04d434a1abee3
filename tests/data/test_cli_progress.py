"""Progress on the command line: a bar on a terminal; in a log, a line now and then, not one per update."""

from __future__ import annotations

import io
import sys

from data import cli


def test_progress_in_a_log_is_a_few_lines_not_one_per_update(monkeypatch):
    err = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", err)
    with cli.progress_bar("importing", log_every_s=3600) as progress:
        for k in range(1, 501):
            progress(k, 500)
    lines = err.getvalue().splitlines()
    assert lines == ["importing: 1/500 (0%), 0.0 min left", "importing: 500/500 (100%)"] or (
        len(lines) == 2 and lines[0].startswith("importing: 1/500") and lines[1] == "importing: 500/500 (100%)")
    assert "\r" not in err.getvalue()
    assert cli.bar_options()["mininterval"] == cli.LOG_EVERY_S
