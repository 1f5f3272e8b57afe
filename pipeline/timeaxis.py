"""Packed time axes (`ScalarBatch.axes`: a page's times joined by newlines), read in C.

The Oceans API writes one time format, `yyyy-MM-ddTHH:mm:ss.SSSZ`: 24 characters. An axis of
such times, with the newline after each, is a grid of 25-byte rows, which numpy compares,
searches and parses without a Python string per time (a page holds up to 100,000 of them).
An axis holding any other form has no grid, and its callers split it into strings instead.

Rows of one width sort as their times do (the newline, equal in every row, does not change
the order), so a bound in the same format, newline added (`row_keys`), finds its place in the
grid by `numpy.searchsorted` (`positions`) as `bisect` would in the list of times.

numpy is imported on use: a daemon that only polls (pages inside one partition) never cuts an
axis, and `fixed_width`, `FixedRows` and `rows_text` need none (JSON Lines workers never
load it). Where the C module `pipeline._columns` was built, `fixed_cuts` (a backfill's page
cut at its windows' bounds in the daemon) needs none either.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

try:
    from pipeline import _columns
except ImportError:  # not compiled where it was installed: numpy does it
    _columns = None  # type: ignore[assignment]

TIME_WIDTH = 24
ROW = TIME_WIDTH + 1  # a time and the newline after it


def columns_compiled() -> bool:
    """Whether the C module `pipeline._columns` was built (else numpy cuts axes and fills a
    big array's holes, `pipeline/onc/parsing.py`, in the daemon)."""
    return _columns is not None


def fixed_width(axis: str) -> bool:
    """True when every time of the (non-empty) axis is in ONC's fixed-width form: checked by
    strided slices of the text, without numpy or a string per time."""
    rows, rest = divmod(len(axis) + 1, ROW)
    return (
        bool(axis)
        and not rest
        and axis.isascii()
        # Every row ends in `Z\n` (the last one's newline supplied): a time of another width
        # would shift the rows.
        and axis[TIME_WIDTH::ROW] == "\n" * (rows - 1)
        and axis[TIME_WIDTH - 1 :: ROW] == "Z" * rows
    )


class FixedRows:
    """The times of a `fixed_width` axis as a sequence (what `bisect` needs), each cut from
    the text when it is asked for: no string per time is made to search the axis."""

    def __init__(self, axis: str) -> None:
        self._axis = axis
        self._rows = (len(axis) + 1) // ROW

    def __len__(self) -> int:
        return self._rows

    def __getitem__(self, index: int) -> str:
        if not 0 <= index < self._rows:
            raise IndexError(index)
        start = index * ROW
        return self._axis[start : start + TIME_WIDTH]


def time_grid(axis: str) -> npt.NDArray[np.uint8] | None:
    """The axis as an (n, 25) byte grid, a row per time (its newline last; the last time's
    supplied); None when the axis is empty or a time is not in ONC's fixed-width form."""
    if not fixed_width(axis):
        return None
    import numpy as np

    return np.frombuffer((axis + "\n").encode("ascii"), dtype=np.uint8).reshape(-1, ROW)


def sortable(grid: npt.NDArray[np.uint8]) -> npt.NDArray[np.bytes_]:
    """The grid's rows as one `S25` element each: compared and searched as bytes."""
    return grid.reshape(-1).view(f"S{ROW}")


def row_keys(times: Sequence[str]) -> npt.NDArray[np.bytes_]:
    """Times in ONC's format as keys comparable with `sortable` rows."""
    import numpy as np

    return np.array([(time + "\n").encode("ascii") for time in times], dtype=f"S{ROW}")


def positions(rows: npt.NDArray[np.bytes_], keys: npt.NDArray[np.bytes_]) -> list[int]:
    """For each key, the number of rows before it (`bisect_left` in rows in time order)."""
    import numpy as np

    return [int(i) for i in np.searchsorted(rows, keys)]


def fixed_cuts(axis: str, marks: Sequence[str]) -> list[int] | None:
    """[0, the rows before each of the increasing `marks` (as `bisect_left` finds them), the
    number of rows] of an axis the caller found `fixed_width`; None when a row lies outside
    its part (before the mark that opens it, at or after the one that closes it): times out
    of order. Order inside a part is not checked (a writer keys records by time).

    In C where `pipeline._columns` was built, for marks in ONC's form; otherwise by numpy."""
    if _columns is not None and all(len(m) == TIME_WIDTH and m.isascii() for m in marks):
        return _columns.fixed_cuts(axis, tuple(marks))
    import numpy as np

    grid = time_grid(axis)
    if grid is None:
        raise ValueError("fixed_cuts wants an axis of fixed-width ASCII times")
    times = sortable(grid)
    keys = row_keys(marks)
    cuts = [0, *positions(times, keys), len(times)]
    for index in range(len(cuts) - 1):
        part = times[cuts[index] : cuts[index + 1]]
        if len(part) and (
            (index > 0 and bool(np.any(part < keys[index - 1])))
            or (index < len(marks) and bool(np.any(part >= keys[index])))
        ):
            return None
    return cuts


def rows_text(axis: str, low: int, high: int) -> str:
    """Rows [low, high) of a `fixed_width` axis, as packed text."""
    if low >= high:
        return ""
    return axis[low * ROW : high * ROW - 1]
