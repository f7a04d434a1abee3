"""The one ``--json OUT`` writer of every command (sample, import, export, stats, models, runs, bench).

``OUT`` is a file path, or ``-`` for stdout. A file is written atomically (a temporary file in
the same folder, then ``os.replace``), its folder created when missing, so a reader sees the
old document or the new one, never half of one. The text is the same everywhere: two-space
indent, sorted keys, values JSON cannot hold written with ``str`` (paths), a final newline.
"""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from pathlib import Path
from typing import Any

from data.errors import InputError

STDOUT = "-"


def dumps(doc: Any) -> str:
    """``doc`` as the ``--json`` text (without the final newline)."""
    return json.dumps(doc, indent=2, sort_keys=True, default=str)


def write_json(doc: Any, out: str | Path | None) -> None:
    """Write ``doc`` to ``out``: ``-`` prints it, a path is replaced atomically, None or "" does nothing."""
    if out is None or str(out) == "":
        return
    text = dumps(doc)
    if str(out) == STDOUT:
        print(text, flush=True)
        return
    path = Path(out)
    # Not mkstemp: its 0600 mode would differ from the mode of a plainly written file.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "x", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise InputError(f"cannot write --json {out}: {err.strerror or err}; pick a writable path or '-' for stdout.") from err
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
