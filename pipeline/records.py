"""The records stages hand each other: windows, sensors, page batches, published files, events.

A leaf module: it imports nothing from the project but `pipeline.times` (itself a leaf of
the standard library), as structlog's `typing.py`, so the engine, the outputs, the notifiers
and the state store can all share these types without importing each other. Records are
plain data with the few methods that keep them valid.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar, Literal

from pipeline.times import EPOCH, as_utc

# --------------------------------------------------------------------------- windows


def require_size(size: timedelta) -> None:
    """ValueError unless `size` is a positive whole number of seconds."""
    # Whole seconds only: labels have second resolution, so a finer size could give two
    # windows the same file name.
    if size <= timedelta(0) or size % timedelta(seconds=1):
        raise ValueError(f"window size must be a positive whole number of seconds, got {size}")


def align_down(instant: datetime, size: timedelta) -> datetime:
    """The start of the size-aligned window containing `instant`."""
    require_size(size)
    instant = as_utc(instant, "instant")
    # Floor division of timedeltas floors toward minus infinity, so pre-1970 works too.
    return EPOCH + ((instant - EPOCH) // size) * size


def format_instant(instant: datetime) -> str:
    """Compact UTC label for file names, e.g. `20261124T000000Z` (seconds resolution)."""
    instant = as_utc(instant, "instant")
    # strftime's %Y does not zero-pad years below 1000 on every platform; do it ourselves.
    return f"{instant.year:04d}{instant:%m%dT%H%M%SZ}"


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """A half-open time range [start, end) in UTC whose start is a multiple of its size
    since the Unix epoch (ValueError otherwise)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", as_utc(self.start, "start"))
        object.__setattr__(self, "end", as_utc(self.end, "end"))
        if self.end <= self.start:
            raise ValueError(f"window end {self.end} is not after its start {self.start}")
        require_size(self.end - self.start)
        # Only aligned windows give restart-stable file names; refuse anything else.
        if (self.start - EPOCH) % (self.end - self.start):
            raise ValueError(f"window {self.start}..{self.end} is not aligned to its size")

    @classmethod
    def containing(cls, instant: datetime, size: timedelta) -> Window:
        """The aligned window of `size` that contains `instant`."""
        start = align_down(instant, size)
        return cls(start, start + size)

    @property
    def size(self) -> timedelta:
        """end - start."""
        return self.end - self.start

    def label(self) -> str:
        """`20261124T000000Z_20261125T000000Z`: start and end, for output file names.

        Both ends, not just the start: if a stream's window size is changed in the config,
        the new windows get new names instead of silently overwriting old files that start
        at the same instant but cover a different span.
        """
        return f"{format_instant(self.start)}_{format_instant(self.end)}"

    def contains(self, instant: datetime) -> bool:
        """True when start <= instant < end."""
        return self.start <= as_utc(instant, "instant") < self.end


# ------------------------------------------------------------------ sensors and page batches


@dataclass(frozen=True, slots=True)
class SensorInfo:
    """What a writer needs to know of one sensor besides its readings."""

    code: str
    name: str | None = None
    unit: str | None = None
    property_code: str | None = None


#: What a page holds: scalardata (sensor readings) or rawdata (instrument lines), named as the
#: Oceans API names its endpoints. Each output format declares the kinds it writes.
BatchKind = Literal["scalardata", "rawdata"]

ScalarColumn = tuple[SensorInfo, Sequence[str], Sequence[float], Sequence[int]]


@dataclass(slots=True)
class PackedColumn:
    """One sensor of a scalar batch: its time axis by index, values and flags packed."""

    sensor: SensorInfo
    axis: int
    length: int
    values: array[float]
    flags: array[int]

    def rows(self, low: int, high: int) -> PackedColumn:
        """This column's rows [low, high) of its time axis."""
        return PackedColumn(
            self.sensor, self.axis, high - low, self.values[low:high], self.flags[low:high]
        )


@dataclass(slots=True)
class ScalarBatch:
    """A scalardata page, packed: time axes as newline-joined text, numbers as arrays.

    Packed as soon as the page is parsed, so a page waiting in a queue holds about 10 bytes
    a reading instead of 100, and a worker process gets it in a copy each way (through shared
    memory, pipeline/outputs/handoff.py; a small one pickled).
    """

    kind: ClassVar[BatchKind] = "scalardata"
    axes: list[str]
    packed: list[PackedColumn]
    qaqc_flag_info: dict[str, str] = field(default_factory=dict)
    # `axes` already split into times, where the process that cut the batch also writes it
    # (pipeline/outputs/assembly.py): `columns` takes them instead of splitting again. Never
    # sent: a batch sent to a worker process carries only its packed text.
    split_axes: list[list[str]] | None = field(default=None, compare=False, repr=False)

    def __reduce__(self) -> tuple[type[ScalarBatch], tuple[object, ...]]:
        # Every field but `split_axes`, in order (tests/unit/engine/test_batches.py lists them).
        return (ScalarBatch, (self.axes, self.packed, self.qaqc_flag_info))

    @property
    def rows(self) -> int:
        """Readings in the batch, summed over sensors."""
        return sum(column.length for column in self.packed)

    def columns(self) -> list[ScalarColumn]:
        """(sensor, times, values, flags) per sensor; sensors of one axis share its list."""
        split = self.split_axes
        if split is None:
            split = [axis.split("\n") if axis else [] for axis in self.axes]
        columns: list[ScalarColumn] = []
        for column in self.packed:
            times = split[column.axis]
            if len(times) != column.length:  # a time holding a newline: never from ONC
                raise ValueError(f"time axis of {column.sensor.code} did not survive packing")
            columns.append((column.sensor, times, column.values, column.flags))
        return columns


def pack_floats(values: Sequence[float]) -> array[float]:
    if isinstance(values, array) and values.typecode == "d":
        return values
    return array("d", values)


def pack_flags(flags: Sequence[int]) -> array[int]:
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

    kind: ClassVar[BatchKind] = "rawdata"
    times: list[str]
    readings: list[str]
    line_types: list[str]

    @property
    def rows(self) -> int:
        """Lines in the batch."""
        return len(self.times)


PageBatch = ScalarBatch | RawBatch


def batch_bytes(batch: PageBatch) -> int:
    """About how many bytes a packed batch holds (its text and arrays, not object headers)."""
    if isinstance(batch, ScalarBatch):
        return sum(len(axis) for axis in batch.axes) + sum(
            column.values.itemsize * len(column.values) + column.flags.itemsize * len(column.flags)
            for column in batch.packed
        )
    lines = (batch.times, batch.readings, batch.line_types)
    return sum(len(text) for column in lines for text in column)


def scalar_batch(columns: Sequence[ScalarColumn], qaqc_flag_info: Mapping[str, str]) -> ScalarBatch:
    """A batch from plain columns (tests, benchmarks); equal axes are not merged."""
    packed = [
        PackedColumn(sensor, i, len(times), pack_floats(values), pack_flags(flags))
        for i, (sensor, times, values, flags) in enumerate(columns)
    ]
    return ScalarBatch(["\n".join(c[1]) for c in columns], packed, dict(qaqc_flag_info))


# --------------------------------------------------------------- published files and events


@dataclass(frozen=True, slots=True)
class PublishedFile:
    """A file under its final name, durable once its publish is over (inside
    `durable.folder_flushes_gathered`, once that block is)."""

    path: Path
    size: int
    sha256: str
    replaced: bool


@dataclass(frozen=True, slots=True)
class NewDataEvent:
    """Data for `dataset_id` covering [time_start, time_end) is published and durable on disk.

    `replaced` is true when at least one file already existed and was rewritten (a metric;
    ERDDAP re-reads changed files on a plain flag); `files` are the final paths, never
    temporary names.
    """

    stream: str
    dataset_id: str
    time_start: datetime
    time_end: datetime
    files: tuple[Path, ...] = field(default=())
    records: int = 0
    replaced: bool = False
