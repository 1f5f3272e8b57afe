"""Parsed Oceans API pages as the writers take them: `batch_of` packs a page into a record.

The engine parses a page once (in the daemon's process, where paging needs `next`) and hands
the writers a `PageBatch` (pipeline.records), which reaches a worker process in a copy. A
page of a request series that spans several groups of windows is split by sample time once
packed (`split_batch`), each part going to its group's build.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from datetime import UTC, datetime

from pipeline.onc.errors import OncSchemaError
from pipeline.onc.models.data import RawPage, ScalarPage
from pipeline.records import (
    PackedColumn,
    PageBatch,
    RawBatch,
    ScalarBatch,
    SensorInfo,
    pack_flags,
    pack_floats,
)
from pipeline.timeaxis import fixed_cuts, fixed_width, rows_text
from pipeline.times import format_onc_time


def batch_of(page: ScalarPage | RawPage) -> PageBatch:
    """The batch for a parsed page; sensors with equal time axes share one packed axis."""
    if isinstance(page, RawPage):
        return RawBatch(page.times, page.readings, page.line_types)
    axes: list[str] = []
    packed: list[PackedColumn] = []
    for series in page.series:
        times = series.sample_times
        # Equal axes are the rule (one instrument, one clock): each distinct one is kept once.
        # The decoder gives every copy of a page's axis the same text, so this compares
        # identities; other equal axes compare as text.
        index = next((i for i, axis in enumerate(axes) if axis == times.text), None)
        if index is None:
            index = len(axes)
            axes.append(times.text)
        sensor = SensorInfo(
            code=series.sensor_code,
            name=series.sensor_name,
            unit=series.unit,
            property_code=series.property_code,
        )
        packed.append(
            PackedColumn(
                sensor, index, len(times), pack_floats(series.values), pack_flags(series.qaqc_flags)
            )
        )
    return ScalarBatch(axes, packed, dict(page.qaqc_flag_info))


def continuation(page: ScalarPage | RawPage) -> datetime | None:
    """Where the request series goes on after `page`: its `next.dateFrom` (ONC's
    continuation: scalardata's first sample not returned, rawdata's last returned + 1 ms), or
    None on the last page or when `next` names no readable `dateFrom`."""
    following = page.next
    text = None if following is None else following.parameters.get("dateFrom")
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def split_batch(
    batch: PageBatch, bounds: Sequence[datetime], where: str = "page"
) -> list[tuple[int, PageBatch]]:
    """`batch` cut at `bounds` (ascending): (part index, the batch's rows in that part) for
    each part that has rows, oldest first; part i holds the rows in [bounds[i-1], bounds[i]).

    Times compare as text against the bounds in ONC's format (`yyyy-MM-ddTHH:mm:ss.SSSZ`):
    for a bound at a whole second, any `...ss[.fff]Z` time compares as its instant does (a
    shorter fraction or none sorts at or past the bound's `.000Z`). A time axis whose rows
    fall in one part is routed by its first and last time; one that spans a bound is cut by
    bisection and then checked (bisecting a column out of time order could put a row in the
    wrong partition): a row on the wrong side of a bound refuses the page as a schema error
    (a poison candidate). A batch without rows has no parts.
    """
    marks = [format_onc_time(bound) for bound in bounds]
    if isinstance(batch, RawBatch):
        cuts = _cuts(batch.times, marks, where)
        raw_parts: list[tuple[int, PageBatch]] = []
        for index, (low, high) in enumerate(itertools.pairwise(cuts)):
            if low >= high:
                continue
            if low == 0 and high == batch.rows:
                raw_parts.append((index, batch))  # the usual case: nothing to copy
            else:
                part = RawBatch(
                    batch.times[low:high], batch.readings[low:high], batch.line_types[low:high]
                )
                raw_parts.append((index, part))
        return raw_parts
    cut_axes = [_axis_cuts(axis, marks, f"{where}.sampleTimes") for axis in batch.axes]
    axis_cuts = [cuts for cuts, _ in cut_axes]
    used = {
        index
        for column in batch.packed
        for index, (low, high) in enumerate(itertools.pairwise(axis_cuts[column.axis]))
        if low < high
    }
    if len(used) == 1:
        return [(used.pop(), batch)]  # the usual case: nothing to copy
    parts: list[tuple[int, PageBatch]] = []
    for index in sorted(used):
        spans = [(cuts[index], cuts[index + 1]) for cuts in axis_cuts]
        texts = [
            _axis_slice(axis, fixed_width, low, high)
            for axis, (_, fixed_width), (low, high) in zip(batch.axes, cut_axes, spans, strict=True)
        ]
        packed = [
            column.rows(*spans[column.axis])
            for column in batch.packed
            if spans[column.axis][0] < spans[column.axis][1]
        ]
        parts.append((index, ScalarBatch(texts, packed, batch.qaqc_flag_info)))
    return parts


def _axis_cuts(axis: str, marks: Sequence[str], where: str) -> tuple[list[int], bool]:
    """`_cuts` for a packed axis, and whether it holds ONC's fixed-width times: an axis whose
    first and last times fall in one part goes there whole, read from the text as it is; one
    that spans a bound is cut without a Python string per time when its times are fixed-width
    (`pipeline.timeaxis`)."""
    if not axis:
        return [0] * (len(marks) + 2), False
    end = axis.find("\n")
    first = bisect_right(marks, axis if end < 0 else axis[:end])
    last = bisect_right(marks, axis[axis.rfind("\n") + 1 :])
    if first == last:
        # One part: every row goes to it whole, as a page went to its window's writer before.
        rows = axis.count("\n") + 1
        return [0] * (first + 1) + [rows] * (len(marks) - first + 1), False
    if not fixed_width(axis):
        return _cuts(axis.split("\n"), marks, where), False
    cuts = fixed_cuts(axis, marks)
    if cuts is None:
        raise OncSchemaError("sample times are not in time order", where=where)
    return cuts, True


def _axis_slice(axis: str, fixed_width: bool, low: int, high: int) -> str:
    """Rows [low, high) of a packed axis."""
    if fixed_width or low >= high:
        return rows_text(axis, low, high)
    return "\n".join(axis.split("\n")[low:high])


def _cuts(times: Sequence[str], marks: Sequence[str], where: str) -> list[int]:
    """[0, the index of the first time at or past each mark, len(times)], checked: every
    time before a cut is before its mark, every time from it on is not."""
    if not times:
        return [0] * (len(marks) + 2)
    first = bisect_right(marks, times[0])
    last = bisect_right(marks, times[-1])
    if first == last:
        # One part: every row goes to it whole, as a page went to its window's writer before.
        return [0] * (first + 1) + [len(times)] * (len(marks) - first + 1)
    cuts = [0, *(bisect_left(times, mark) for mark in marks), len(times)]
    # Bisecting assumes the column is in time order: what it found is checked part by part
    # (order inside a part does not matter: a writer keys records by time).
    for index, (low, high) in enumerate(itertools.pairwise(cuts)):
        if low >= high:
            continue
        part = times[low:high]
        if (index > 0 and min(part) < marks[index - 1]) or (
            index < len(marks) and max(part) >= marks[index]
        ):
            raise OncSchemaError("sample times are not in time order", where=where)
    return cuts
