"""One parsed page as the writers take it: columns per sensor, cheap to send to another process.

The engine parses a page once (in the daemon's process, where paging needs `next`) and hands
writers a batch. A batch pickles compactly, because window builders may run in worker
processes: numbers travel as `array` buffers (one copy of 8 bytes per value instead of a
Python float each), and a time axis shared by every sensor of a scalar page (the usual case)
travels once, as one newline-joined string, instead of once per sensor as 24-byte objects.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.outputs.base import PageMetadataSink, ScalarPageSink, SensorInfo, WindowWriter

if TYPE_CHECKING:
    # Only the daemon's process packs pages; worker processes never import the HTTP client.
    from pipeline.onc.models.data import RawPage, ScalarPage

ScalarColumn = tuple[SensorInfo, Sequence[str], Sequence[float], Sequence[int]]


@dataclass(slots=True)
class PackedColumn:
    """One sensor of a scalar batch: its time axis by index, values and flags packed."""

    sensor: SensorInfo
    axis: int
    length: int
    values: array[float]
    flags: array[int]


@dataclass(slots=True)
class ScalarBatch:
    """A scalardata page, packed: time axes as newline-joined text, numbers as arrays.

    Packed as soon as the page is parsed, so a page waiting in a queue holds about 10 bytes
    a reading instead of 100, and pickling it (to a worker process) is a few memory copies.
    """

    axes: list[str]
    packed: list[PackedColumn]
    qaqc_flag_info: dict[str, str] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        """Readings in the batch, summed over sensors."""
        return sum(column.length for column in self.packed)

    def columns(self) -> list[ScalarColumn]:
        """(sensor, times, values, flags) per sensor; sensors of one axis share its list."""
        split = [axis.split("\n") if axis else [] for axis in self.axes]
        columns: list[ScalarColumn] = []
        for column in self.packed:
            times = split[column.axis]
            if len(times) != column.length:  # a time holding a newline: never from ONC
                raise ValueError(f"time axis of {column.sensor.code} did not survive packing")
            columns.append((column.sensor, times, column.values, column.flags))
        return columns


def _floats(values: Sequence[float]) -> array[float]:
    if isinstance(values, array) and values.typecode == "d":
        return values
    return array("d", values)


def _small_ints(flags: Sequence[int]) -> array[int]:
    """Flags in the narrowest array that holds them (one byte for ONC's 0-9)."""
    if isinstance(flags, array) and flags.typecode == "b":
        return flags  # the parser's own packing: nothing to check or copy
    if not isinstance(flags, array):
        try:
            flags = array("q", flags)
        except TypeError:
            flags = array("q", [int(flag) for flag in flags])  # integral floats, lax sources
    if flags and min(flags) >= -128 and max(flags) <= 127:
        return array("b", flags)
    return flags


@dataclass(slots=True)
class RawBatch:
    """A rawdata page: instrument lines as received."""

    times: list[str]
    readings: list[str]
    line_types: list[str]

    @property
    def rows(self) -> int:
        """Lines in the batch."""
        return len(self.times)


PageBatch = ScalarBatch | RawBatch


def batch_of(page: ScalarPage | RawPage) -> PageBatch:
    """The batch for a parsed page; sensors with equal time axes share one packed axis."""
    from pipeline.onc.models.data import RawPage  # already loaded wherever pages are parsed

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
                sensor, index, len(times), _floats(series.values), _small_ints(series.qaqc_flags)
            )
        )
    return ScalarBatch(["\n".join(axis) for axis in axes], packed, dict(page.qaqc_flag_info))


def scalar_batch(columns: Sequence[ScalarColumn], qaqc_flag_info: Mapping[str, str]) -> ScalarBatch:
    """A batch from plain columns (tests, benchmarks); equal axes are not merged."""
    packed = [
        PackedColumn(sensor, i, len(times), _floats(values), _small_ints(flags))
        for i, (sensor, times, values, flags) in enumerate(columns)
    ]
    return ScalarBatch(["\n".join(c[1]) for c in columns], packed, dict(qaqc_flag_info))


def feed(writers: Sequence[WindowWriter], batch: PageBatch) -> None:
    """Hand one batch to every writer (whole, to writers that take whole pages)."""
    if isinstance(batch, RawBatch):
        for writer in writers:
            writer.add_raw(batch.times, batch.readings, batch.line_types)
        return
    columns = batch.columns()
    for writer in writers:
        if isinstance(writer, ScalarPageSink):
            writer.add_scalar_page(columns)
        else:
            for sensor, times, values, flags in columns:
                writer.add_scalar(sensor, times, values, flags)
        if batch.qaqc_flag_info and isinstance(writer, PageMetadataSink):
            writer.note_page(batch.qaqc_flag_info)
