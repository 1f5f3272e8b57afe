"""Packed time axes: ONC's fixed-width form recognised from the text, rows cut from it."""

from __future__ import annotations

import pytest

from pipeline.timeaxis import fixed_width, rows_text, time_grid

A, B, C = "2026-11-20T05:59:59.000Z", "2026-11-20T06:00:00.000Z", "2026-11-20T06:00:01.250Z"


@pytest.mark.parametrize(
    ("axis", "fixed"),
    [
        (A, True),
        ("\n".join([A, B, C]), True),
        ("", False),
        ("2026-11-20T05:59:59Z", False),  # no milliseconds
        ("\n".join([A, "2026-11-20T06:00:00.00Z", "2026-11-20T06:00:01.2500Z"]), False),
        (A + " " + B, False),  # another separator
        (A[:-1] + "z\n" + B, False),  # the same length, not ending in Z
        ("2026-11-2\u00b5T05:59:59.000Z\n" + B, False),  # not ASCII
    ],
)
def test_an_axis_is_fixed_width_only_when_every_row_is(axis: str, fixed: bool) -> None:
    assert fixed_width(axis) is fixed
    assert (time_grid(axis) is not None) is fixed


def test_rows_are_cut_from_the_text_as_split_would_give_them() -> None:
    axis = "\n".join([A, B, C])
    times = axis.split("\n")
    for low in range(4):
        for high in range(4):
            assert rows_text(axis, low, high) == "\n".join(times[low:high])
