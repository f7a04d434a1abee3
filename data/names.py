"""The one rule for names a user types or a dataset carries (classes, prompts): runs of
whitespace become one space, and the ends are trimmed."""

from __future__ import annotations


def clean_name(name: object) -> str:
    """``"  hair   line "`` -> ``"hair line"`` (empty stays empty: callers decide if that is an error)."""
    return " ".join(str(name).split())
