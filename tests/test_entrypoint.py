from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from data.store import Project

ROOT = Path(__file__).resolve().parents[1]


def test_output_piped_into_a_reader_that_closed_early_is_not_a_traceback(tmp_path):
    """``python app.py stats ... | head -1``: the reader goes away before the output is written."""
    Project.create(tmp_path / "p", classes=["crack"])
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "stats", "--project", str(tmp_path / "p")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    proc.stdout.close()  # nobody reads: every write fails with a broken pipe
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 0
    assert "Traceback" not in err, err
