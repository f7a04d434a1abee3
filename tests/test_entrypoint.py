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


def test_help_loads_no_room_of_the_project():
    """``python app.py --help`` stays instant: the wiring and the commands load on demand."""
    code = ("import sys, runpy; sys.argv = ['app.py', '--help']\n"
            "try:\n    runpy.run_path('app.py', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('numpy', 'cv2', 'train', 'annotate', 'ui', 'bench') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
