"""The in-memory table a partition writer merges into: one time axis, one column per sensor.

Records are keyed by (time, sensor); a later value for a key replaces an earlier one, whether it
comes from the file already on disk or from a later page. Everything is numpy columns: times
are int64 milliseconds since the epoch, values float64 (NaN kept: ONC gap-fill rows), flags
int8 with ABSENT_FLAG marking "this sensor has no record at this time" in the wide layout.
Merging costs O(n log n) in the partition's size, whatever the history before it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Generic, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from pipeline.exceptions import OutputError
from pipeline.outputs.metadata import DatasetMeta, require_meta
from pipeline.outputs.partition import Partition, PartitionFile, PartitionKind
from pipeline.outputs.publish import sha256_of
from pipeline.records import BatchKind, PublishedFile, ScalarBatch, SensorInfo, Window
from pipeline.timeaxis import TIME_WIDTH, time_grid
from pipeline.times import epoch_ms, utc_now

Int64Array = npt.NDArray[np.int64]
Float64Array = npt.NDArray[np.float64]
Int8Array = npt.NDArray[np.int8]

# Flag fill in the wide layout: no record for this (time, sensor). ONC flags are 0..9.
ABSENT_FLAG = -127


class TimeParser:
    """ONC time strings -> int64 epoch ms, vectorised, remembering the last column parsed.

    Every sensor of a page carries its own copy of the same `sampleTimes`; comparing a list of
    strings is far cheaper than parsing it again.
    """

    def __init__(self) -> None:
        self._last_times: Sequence[str] | None = None
        self._last_ms: Int64Array | None = None

    def parse(self, times: Sequence[str]) -> Int64Array:
        """Parse `yyyy-MM-ddTHH:mm:ss.SSSZ` strings (other ISO forms take a slower path)."""
        if self._last_ms is not None and (times is self._last_times or times == self._last_times):
            return self._last_ms
        parsed = parse_times(times)
        self._last_times, self._last_ms = times, parsed
        return parsed


def parse_times(times: Sequence[str]) -> Int64Array:
    """ISO 8601 UTC strings with a `Z` -> int64 milliseconds since the epoch."""
    if not times:
        return np.empty(0, dtype=np.int64)
    text = np.array(times)
    # Fast path: ONC's one fixed-width form `yyyy-MM-ddTHH:mm:ss.SSSZ`. Dropping the `Z` (which
    # numpy only parses with a deprecation warning) leaves a naive UTC stamp numpy reads in C.
    if (
        text.dtype == np.dtype("<U24")
        and bool(np.all(np.strings.endswith(text, "Z")))
        and int(np.strings.str_len(text).min()) == 24
    ):
        try:
            stamps = text.astype("U23").astype("datetime64[ms]")
        except ValueError as exc:
            raise OutputError(f"unparseable sample time in {times[0]!r}..: {exc}") from exc
        return stamps.astype(np.int64)
    return np.array([_slow_ms(t) for t in times], dtype=np.int64)


def parse_axis(axis: str) -> Int64Array | None:
    """A packed time axis (ONC times joined by newlines, `ScalarBatch.axes`) -> epoch ms,
    without a Python string per time; None when a time is not in ONC's fixed-width form
    (the caller then splits the axis and takes `parse_times`)."""
    if not axis:
        return np.empty(0, dtype=np.int64)
    grid = time_grid(axis)
    if grid is None:
        return None
    # Without the `Z` (which numpy parses only with a deprecation warning): naive UTC stamps.
    stamps = np.ascontiguousarray(grid[:, : TIME_WIDTH - 1]).view(f"S{TIME_WIDTH - 1}")
    try:
        return stamps.ravel().astype("datetime64[ms]").astype(np.int64)
    except ValueError as exc:
        first = axis[:TIME_WIDTH]
        raise OutputError(f"unparseable sample time in {first!r}..: {exc}") from exc


def _slow_ms(text: str) -> int:
    """Any ISO 8601 form with an offset (or `Z`) -> epoch ms."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise OutputError(f"unparseable sample time {text!r}: {exc}") from exc
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return epoch_ms(value)


def format_times(ms: Int64Array) -> list[str]:
    """int64 epoch ms -> ONC's `yyyy-MM-ddTHH:mm:ss.SSSZ` strings."""
    text = np.datetime_as_string(ms.astype("datetime64[ms]"), unit="ms")
    return [t + "Z" for t in text.tolist()]


@dataclass(slots=True)
class WideTable:
    """A merged partition: `values[s, i]`/`flags[s, i]` for sensor s at `times[i]`."""

    times: Int64Array
    sensors: list[SensorInfo]
    values: Float64Array  # shape (sensors, times)
    flags: Int8Array  # shape (sensors, times); ABSENT_FLAG where a sensor has no record

    @classmethod
    def empty(cls) -> WideTable:
        """A table without records."""
        return cls(
            np.empty(0, np.int64), [], np.empty((0, 0), np.float64), np.empty((0, 0), np.int8)
        )

    @property
    def record_count(self) -> int:
        """(time, sensor) records present."""
        return int(np.count_nonzero(self.flags != ABSENT_FLAG))

    def same_as(self, other: WideTable) -> bool:
        """True when both hold exactly the same records (NaN equal to NaN)."""
        return (
            [s.code for s in self.sensors] == [s.code for s in other.sensors]
            and np.array_equal(self.times, other.times)
            and np.array_equal(self.flags, other.flags)
            and np.array_equal(self.values, other.values, equal_nan=True)
        )


def merged_sensor(known: SensorInfo, newer: SensorInfo) -> SensorInfo:
    """A sensor as a later page describes it: what it says wins, but it never erases what an
    earlier page said."""
    return SensorInfo(
        code=newer.code,
        name=newer.name or known.name,
        unit=newer.unit or known.unit,
        property_code=newer.property_code or known.property_code,
    )


class ScalarMerger:
    """Merges a partition's existing wide table with scalar readings added page by page."""

    def __init__(self, low_ms: int, high_ms: int, base: WideTable | None = None) -> None:
        self._low, self._high = low_ms, high_ms
        self.base = base or WideTable.empty()
        self._sensors: dict[str, SensorInfo] = {s.code: s for s in self.base.sensors}
        self._chunks: dict[str, list[tuple[Int64Array, Float64Array, Int8Array]]] = {}
        self._parser = TimeParser()
        self._merged: WideTable | None = self.base
        self.added = 0

    def add(
        self,
        sensor: SensorInfo,
        times: Sequence[str],
        values: Sequence[float],
        flags: Sequence[int],
    ) -> int:
        """Add one sensor's readings; those outside [low, high) are dropped. Returns kept."""
        if not times:
            return 0
        return self.add_ms(sensor, self._parser.parse(times), values, flags)

    def forget_times(self) -> None:
        """Drop the last time column parsed (kept for the next sensor of the same page)."""
        self._parser = TimeParser()

    def add_ms(
        self,
        sensor: SensorInfo,
        ms: Int64Array,
        values: Sequence[float],
        flags: Sequence[int],
    ) -> int:
        """`add` with the times already parsed to epoch ms."""
        if len(ms) == 0:
            return 0
        inside = (ms >= self._low) & (ms < self._high)
        kept = int(np.count_nonzero(inside))
        if kept == 0:
            return 0
        vals = np.asarray(values, dtype=np.float64)
        flg = np.asarray(flags, dtype=np.int8)
        if len(vals) != len(ms) or len(flg) != len(ms):
            raise OutputError(
                f"sensor {sensor.code}: {len(ms)} times, {len(vals)} values, {len(flg)} flags"
            )
        if kept != len(ms):
            ms, vals, flg = ms[inside], vals[inside], flg[inside]
        known = self._sensors.get(sensor.code)
        self._sensors[sensor.code] = sensor if known is None else merged_sensor(known, sensor)
        self._chunks.setdefault(sensor.code, []).append((ms, vals, flg))
        self._merged = None
        self.added += kept
        return kept

    def rebased(self, base: WideTable) -> ScalarMerger:
        """The readings added so far, merged over `base` instead (a writer that appends in
        place reads its file's records only when it must rewrite it)."""
        other = ScalarMerger(self._low, self._high, base)
        for code, sensor in self._sensors.items():
            known = other._sensors.get(code)
            other._sensors[code] = sensor if known is None else merged_sensor(known, sensor)
        other._chunks = {code: list(chunks) for code, chunks in self._chunks.items()}
        other._merged = None
        other.added = self.added
        return other

    def merged(self) -> WideTable:
        """The base table with every added reading applied (computed once, then cached)."""
        if self._merged is None:
            self._merged = self._merge()
        return self._merged

    def _merge(self) -> WideTable:
        aligned = self._aligned()
        if aligned is not None:
            # The table holds every reading added: the pages' arrays give way to views of it,
            # so they are freed before the file is rendered and written, not after. A build
            # at publish held its readings twice (a day of an 8-sensor 1 Hz instrument:
            # 6 MB each).
            self._chunks = {
                code: [(aligned.times, aligned.values[row], aligned.flags[row])]
                for row, code in enumerate(self._sensors)
            }
            return aligned
        base = self.base
        columns: list[tuple[SensorInfo, Int64Array, Float64Array, Int8Array]] = []
        for code, sensor in self._sensors.items():
            parts_t: list[Int64Array] = []
            parts_v: list[Float64Array] = []
            parts_f: list[Int8Array] = []
            index = next((i for i, s in enumerate(base.sensors) if s.code == code), None)
            if index is not None:
                present = base.flags[index] != ABSENT_FLAG
                parts_t.append(base.times[present])
                parts_v.append(base.values[index][present])
                parts_f.append(base.flags[index][present])
            for ms, vals, flg in self._chunks.get(code, ()):
                parts_t.append(ms)
                parts_v.append(vals)
                parts_f.append(flg)
            t, v, f = _last_wins(np.concatenate(parts_t), parts_v, parts_f)
            columns.append((sensor, t, v, f))
        if not columns:
            return WideTable.empty()
        times = np.unique(np.concatenate([c[1] for c in columns]))
        values = np.full((len(columns), len(times)), np.nan, dtype=np.float64)
        flags = np.full((len(columns), len(times)), ABSENT_FLAG, dtype=np.int8)
        for row, (_, t, v, f) in enumerate(columns):
            at = np.searchsorted(times, t)
            values[row, at] = v
            flags[row, at] = f
        return WideTable(times, [c[0] for c in columns], values, flags)

    def _aligned(self) -> WideTable | None:
        """The merge when there is nothing to merge: no records before, and every sensor's
        readings on the very same strictly increasing time arrays (the sensors of one page,
        or of consecutive pages, share their page's parsed axis); None otherwise. What the
        general merge gives, without its sort and its copies of every column."""
        if self.base.sensors or not self._sensors:
            return None
        columns = [self._chunks.get(code, []) for code in self._sensors]
        axis = [ms for ms, _, _ in columns[0]]
        for chunks in columns:
            if len(chunks) != len(axis) or any(
                ms is not shared for (ms, _, _), shared in zip(chunks, axis, strict=True)
            ):
                return None
        times = axis[0] if len(axis) == 1 else np.concatenate(axis)
        if len(times) > 1 and not bool(np.all(times[1:] > times[:-1])):
            return None
        values = np.empty((len(columns), len(times)), dtype=np.float64)
        flags = np.empty((len(columns), len(times)), dtype=np.int8)
        for row, chunks in enumerate(columns):
            np.concatenate([v for _, v, _ in chunks], out=values[row])
            np.concatenate([f for _, _, f in chunks], out=flags[row])
        return WideTable(times, list(self._sensors.values()), values, flags)


def _last_wins(
    times: Int64Array, values: list[Float64Array], flags: list[Int8Array]
) -> tuple[Int64Array, Float64Array, Int8Array]:
    """Sorted unique times with, for each, the value added last."""
    vals = np.concatenate(values)
    flg = np.concatenate(flags)
    if len(times) > 1 and not (np.all(times[1:] > times[:-1])):
        # np.unique keeps the first occurrence; reversing makes that the last one added.
        rev = times[::-1]
        unique, first = np.unique(rev, return_index=True)
        pick = len(times) - 1 - first
        return unique, vals[pick], flg[pick]
    return times, vals, flg


@dataclass(frozen=True, slots=True)
class TableTarget:
    """What one window of a merged-table format writes into: its partition's file, the
    dataset's discovery metadata, the window and its partition, and the clock that dates the
    file's attributes."""

    path: Path
    meta: DatasetMeta
    window: Window
    partition: Partition
    clock: Callable[[], datetime] = utc_now


class MergedPartitionFile(PartitionFile):
    """A partition file rebuilt from a ScalarMerger (NetCDF, CSV, Parquet): its record count,
    whether it changed, and the published-file answer when it did not.

    Subclasses set `_merger` (see `_new_merger`) in their constructor.
    """

    _merger: ScalarMerger

    def __init__(self, target: TableTarget) -> None:
        self._path = target.path
        self._meta = target.meta
        self._partition = target.partition
        self._clock = target.clock
        self._window = target.window
        # The flag attributes: the dataset's qaqcFlagInfo, or a page's own (`note_page`).
        self._flag_info: Mapping[str, str] = target.meta.qaqc_flag_info

    def _new_merger(self, base: WideTable | None) -> ScalarMerger:
        """A merger of the window's readings into `base` (the file's records, or none)."""
        return ScalarMerger(epoch_ms(self._window.start), epoch_ms(self._window.end), base)

    def add(self, batch: ScalarBatch) -> int:
        """Merge every sensor of a scalar page that falls inside the window."""
        axes = [parse_axis(axis) for axis in batch.axes]
        if all(ms is not None for ms in axes):
            kept = 0
            for column in batch.packed:
                ms = axes[column.axis]
                assert ms is not None
                if len(ms) != column.length:  # a time holding a newline: never from ONC
                    raise OutputError(f"time axis of {column.sensor.code} did not survive packing")
                kept += self._merger.add_ms(
                    self._column(column.sensor), ms, column.values, column.flags
                )
        else:
            kept = sum(self.add_scalar(*column) for column in batch.columns())
            # The page's times as strings are not needed again: a window holds its readings
            # as arrays, not its pages.
            self._merger.forget_times()
        if batch.qaqc_flag_info:
            self.note_page(batch.qaqc_flag_info)
        return kept

    def add_scalar(
        self,
        sensor: SensorInfo,
        times: Sequence[str],
        values: Sequence[float],
        flags: Sequence[int],
    ) -> int:
        """Add one sensor's readings that fall inside the window."""
        return self._merger.add(self._column(sensor), times, values, flags)

    def _column(self, sensor: SensorInfo) -> SensorInfo:
        """The key the sensor's readings merge under (the sensor itself, unless the format
        names its columns otherwise)."""
        return sensor

    def note_page(self, qaqc_flag_info: Mapping[str, str]) -> None:
        """Use a page's own qaqcFlagInfo (metadata=full) for the flag attributes."""
        if qaqc_flag_info:
            self._flag_info = dict(qaqc_flag_info)

    @property
    def record_count(self) -> int:
        """Distinct (time, sensor) records the file will hold."""
        return self._merger.merged().record_count

    @property
    def changed(self) -> bool:
        """True when the merged records differ from the file on disk."""
        return not self._merger.merged().same_as(self._merger.base)

    def unchanged_file(self) -> PublishedFile | None:
        """The file as it stands when the merge changed nothing (it is left alone)."""
        if self._path.exists() and not self.changed:
            size, digest = sha256_of(self._path)
            return PublishedFile(self._path, size, digest, replaced=False)
        return None


class GrowthPlan(Protocol):
    """How a window goes into its file in place: the records the file then holds, and
    whether the window adds any."""

    @property
    def records(self) -> int:
        """(time, sensor) records the file holds once the window is in."""
        ...

    @property
    def adds(self) -> bool:
        """True when the window brings a record the file does not hold."""
        ...


P = TypeVar("P", bound=GrowthPlan)


class GrowingPartitionFile(MergedPartitionFile, Generic[P]):
    """A merged partition file that grows in place (NetCDF, CSV). Over a file it can grow,
    the merger holds the window alone: `_make_plan` says how the window is appended (None:
    the file is rewritten), and the file's records are read whole (`_rebased`) only then.

    Subclasses set `_merger`, call `_start_growth` in their constructor, and give
    `_growing`, `_existing_records`, `_make_plan` and `_read_records`.
    """

    def _start_growth(self) -> None:
        self._planned: tuple[WideTable, P | None] | None = None
        self._file_records: WideTable | None = None
        self._full: tuple[WideTable, ScalarMerger] | None = None

    @property
    def _growing(self) -> bool:
        """True when the window goes into an existing file it may be appended to."""
        raise NotImplementedError

    def _existing_records(self) -> int:
        """(time, sensor) records the file holds now."""
        raise NotImplementedError

    def _make_plan(self, window: WideTable) -> P | None:
        """How `window` is appended to the file, or None when the file must be rewritten."""
        raise NotImplementedError

    def _read_records(self) -> WideTable:
        """The file's records, read whole."""
        raise NotImplementedError

    def _plan(self) -> P | None:
        """`_make_plan` of the window as it stands (made again once it takes more)."""
        window = self._merger.merged()
        if self._planned is None or self._planned[0] is not window:
            self._planned = (window, self._make_plan(window))
        return self._planned[1]

    def _forget_plan(self) -> None:
        """Plan again at the next question (what the plan depends on changed)."""
        self._planned = None

    def _rebased(self) -> ScalarMerger:
        """The window merged over the file's records, read whole (the rewrite path), as the
        window stands: readings added after an earlier question are in it."""
        if self._file_records is None:
            self._file_records = self._read_records()
        window = self._merger.merged()
        if self._full is None or self._full[0] is not window:
            self._full = (window, self._merger.rebased(self._file_records))
        return self._full[1]

    @property
    def record_count(self) -> int:
        """Distinct (time, sensor) records the file will hold."""
        if not self._growing:
            return self._merger.merged().record_count
        if self._merger.added == 0:
            return self._existing_records()
        plan = self._plan()
        if plan is not None:
            return plan.records
        return self._rebased().merged().record_count

    @property
    def changed(self) -> bool:
        """True when the merged records differ from the file on disk."""
        if not self._growing:
            return super().changed
        plan = self._plan()
        if plan is not None:
            return plan.adds
        full = self._rebased()
        return not full.merged().same_as(full.base)


F = TypeVar("F", bound=MergedPartitionFile)


class MergedTableWriter(Generic[F]):
    """A scalar format that keeps one merged table file per (dataset, partition) and needs the
    dataset's discovery metadata (NetCDF, CSV, Parquet).

    Subclasses set `name`, `suffix` and `window_writer`, the window writer built for each
    window from its `TableTarget`, or override `_window_writer` when theirs needs more.
    """

    name: str
    suffix: str
    kinds: frozenset[BatchKind] = frozenset({"scalardata"})
    window_writer: Callable[[TableTarget], F]

    def __init__(
        self,
        metadata: Mapping[str, DatasetMeta],
        *,
        partition: PartitionKind = "daily",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._metadata = metadata
        self._partition = partition
        self._clock = clock

    def relative_path(self, dataset_id: str, window: Window) -> Path:
        """`<dataset>/<yyyy>/<dataset>_<partition label><suffix>`."""
        return Partition.of_window(window, self._partition).relative_path(dataset_id, self.suffix)

    def open_window(self, root: Path, dataset_id: str, window: Window) -> F:
        """Start merging one window into its partition file."""
        meta = require_meta(self._metadata, dataset_id, self.name)
        partition = Partition.of_window(window, self._partition)
        path = root / partition.relative_path(dataset_id, self.suffix)
        return self._window_writer(TableTarget(path, meta, window, partition, self._clock))

    def _window_writer(self, target: TableTarget) -> F:
        return self.window_writer(target)
