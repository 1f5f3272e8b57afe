"""Parsed Oceans API pages as the writers take them: `batch_of` packs a page into a record.

The engine parses a page once (in the daemon's process, where paging needs `next`) and hands
the writers a `PageBatch` (pipeline.records), which pickles compactly for worker processes.
"""

from __future__ import annotations

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
