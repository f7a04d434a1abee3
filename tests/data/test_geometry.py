"""Geometry helpers shared by every format."""

from __future__ import annotations

import pytest

from data.geometry import box_to_mask


@pytest.mark.parametrize(
    "box, expected_area",
    [
        ((2, 3, 6, 5), 8),  # whole pixels
        ((2.4, 3.4, 5.6, 5.6), 12),  # rounded to the nearest pixel edge: 4 x 3
        ((-5, -5, 3, 2), 6),  # clipped at the top-left
        ((8, 6, 20, 20), 4),  # clipped at the bottom-right of a 10x8 image
        ((12, 12, 20, 20), 0),  # entirely outside
    ],
)
def test_box_to_mask(box, expected_area):
    m = box_to_mask(box, 8, 10)
    assert m.shape == (8, 10) and m.dtype == bool and int(m.sum()) == expected_area
