"""The one palette and the one colour parser: class colours in the store, every picture drawn."""

from __future__ import annotations

# A colour-blind-friendly palette (Okabe-Ito, then Tableau) for new classes, and for model classes
# that match no project class.
PALETTE = (
    "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
    "#4E79A7", "#F28E2B", "#E15759", "#76B7B2", "#59A14F", "#EDC948", "#B07AA1",
)
# What a class with no known colour is drawn in.
UNKNOWN = "#FF00FF"


def hex_to_rgb(hex_color: str) -> tuple[int, int, int]:
    """``#RRGGBB`` (or ``RRGGBB``) -> ``(r, g, b)`` in 0..255."""
    h = hex_color.lstrip("#")
    return int(h[0:2], 16), int(h[2:4], 16), int(h[4:6], 16)


def palette_color(index: int) -> str:
    """The palette's ``index``-th colour, cycling."""
    return PALETTE[index % len(PALETTE)]
