"""Parsed Oceans API pages as the writers take them: `batch_of` packs a page into a record.

The engine parses a page once (in the daemon's process, where paging needs `next`) and hands
the writers a `PageBatch` (pipeline.records), which pickles compactly for worker processes. A
page of a request series that spans several groups of windows is first split by sample time
(`split_page`), each part going to its group's build.
"""

from __future__ import annotations

import itertools
import operator
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from pipeline.onc.errors import OncSchemaError
from pipeline.onc.models.data import RawPage, ScalarPage, ScalarSeries
from pipeline.records import (
    PackedColumn,
    PageBatch,
    RawBatch,
    ScalarBatch,
    SensorInfo,
    pack_flags,
    pack_floats,
)
from pipeline.times import format_onc_time


def batch_of(page: ScalarPage | RawPage) -> PageBatch:
    """The batch for a parsed page; sensors with equal time axes share one packed axis."""
    if isinstance(page, RawPage):
        return RawBatch(page.times, page.readings, page.line_types)
    axes: list[list[str]] = []
    packed: list[PackedColumn] = []
    for series in page.series:
        times = series.sample_times
        # Equal axes are the rule (one instrument, one clock): each distinct one is kept once.
        index = next((i for i, axis in enumerate(axes) if axis == times), None)
        if index is None:
            index = len(axes)
            axes.append(times)
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
    return ScalarBatch(["\n".join(axis) for axis in axes], packed, dict(page.qaqc_flag_info))


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


def split_page(
    page: ScalarPage | RawPage, bounds: Sequence[datetime], where: str = "page"
) -> list[tuple[int, ScalarPage | RawPage]]:
    """`page` cut at `bounds` (ascending): (part index, the page's rows in that part) for each
    part that has rows, oldest first; part i holds the rows in [bounds[i-1], bounds[i]).

    Times compare as text against the bounds in ONC's format (`yyyy-MM-ddTHH:mm:ss.SSSZ`):
    for a bound at a whole second, any `...ss[.fff]Z` time compares as its instant does (a
    shorter fraction or none sorts at or past the bound's `.000Z`). A sensor whose rows fall
    in one part is routed by its first and last time; one that spans a bound is checked to be
    in time order first (bisecting an unsorted column could put a row in the wrong
    partition): out of order, the page is refused as a schema error (a poison candidate).
    A page without rows has no parts.
    """
    marks = [format_onc_time(bound) for bound in bounds]
    if isinstance(page, RawPage):
        cuts = _cuts(page.times, marks, where)
        raw_parts: list[tuple[int, ScalarPage | RawPage]] = []
        for index, (low, high) in enumerate(itertools.pairwise(cuts)):
            if low >= high:
                continue
            if low == 0 and high == len(page):
                raw_parts.append((index, page))  # the usual case: nothing to copy
            else:
                part = replace(
                    page,
                    times=page.times[low:high],
                    readings=page.readings[low:high],
                    line_types=page.line_types[low:high],
                )
                raw_parts.append((index, part))
        return raw_parts
    by_part: dict[int, list[ScalarSeries]] = {}
    for number, series in enumerate(page.series):
        cuts = _cuts(series.sample_times, marks, f"{where}.sensorData[{number}]")
        for index, (low, high) in enumerate(itertools.pairwise(cuts)):
            if low >= high:
                continue
            if low == 0 and high == len(series):
                by_part.setdefault(index, []).append(series)
                continue
            by_part.setdefault(index, []).append(
                replace(
                    series,
                    sample_times=series.sample_times[low:high],
                    values=series.values[low:high],
                    qaqc_flags=series.qaqc_flags[low:high],
                )
            )
    if len(by_part) == 1:
        [(index, kept)] = by_part.items()
        if len(kept) == len(page.series) and all(map(operator.is_, kept, page.series)):
            return [(index, page)]  # the usual case: nothing to copy
    return [(index, replace(page, series=by_part[index])) for index in sorted(by_part)]


def _cuts(times: Sequence[str], marks: Sequence[str], where: str) -> list[int]:
    """[0, the index of the first time at or past each mark, len(times)]."""
    if not times:
        return [0] * (len(marks) + 2)
    first = bisect_right(marks, times[0])
    last = bisect_right(marks, times[-1])
    if first == last:
        # One part: every row goes to it whole, as a page went to its window's writer before.
        return [0] * (first + 1) + [len(times)] * (len(marks) - first + 1)
    if first > last or not all(map(operator.le, times, times[1:])):
        raise OncSchemaError("sample times are not in time order", where=where)
    return [0, *(bisect_left(times, mark) for mark in marks), len(times)]
