"""One row of ``python app.py models``: a segmenter, proposer or base model and its weight file.

Every layer describes its models with :class:`ModelStatus`; :func:`format_table` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

State = Literal["found", "downloadable", "missing", "corrupt", "builtin"]


@dataclass(frozen=True)
class ModelStatus:
    name: str
    kind: str
    state: State
    filename: str
    folder: str
    device: str
    note: str = ""


def format_table(title: str, rows: list[ModelStatus], default: str) -> str:
    """The rows as aligned text under a header; ``default`` is starred."""
    w = max(len(r.filename) for r in rows)
    n = max(len(r.name) for r in rows) + 2
    lines = [f"{title:<{n}} {'state':<13} {'file':<{w}}  {'device':<6} folder / note"]
    for r in rows:
        mark = " *" if r.name == default else ""
        where = r.folder if r.state != "builtin" else "-"
        note = f"  ({r.note})" if r.note else ""
        lines.append(f"{r.name + mark:<{n}} {r.state:<13} {r.filename:<{w}}  {r.device:<6} {where}{note}")
    return "\n".join(lines)
