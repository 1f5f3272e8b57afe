"""CSV for ERDDAP's EDDTableFromAsciiFiles: one wide table per (dataset, partition).

Row 1 names the columns, row 2 gives their UDUNITS units (ERDDAP's own `.csv` layout; the
datasets.xml snippet sets columnNamesRow=1, firstDataRow=3), data from row 3:
`time,station,latitude,longitude,depth,<sensor>,<sensor>_qc,...`. `station` is the
`cf_role=timeseries_id` ONC location code and latitude/longitude/depth its constant position
(see metadata.Station). Files written before the station column (`time,latitude,...`) are
still read, and get the column when their partition is next rewritten. Times are ONC's
`yyyy-MM-ddTHH:mm:ss.SSSZ`; a gap-fill reading is `NaN` with its flag (9), a sensor without a
record at that time has both cells empty. Each window merges into its partition's file: rows
after the file's last time, with the same columns, are appended in place; anything else (a
revision, a time between rows, a new column or unit) rewrites the file whole and atomically
(`growth.py` has the rule).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from math import nan
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from pipeline.exceptions import OutputError
from pipeline.outputs.cf_names import cf_name, udunits, variable_name
from pipeline.outputs.growth import (
    Digests,
    StatCache,
    append_lines,
    later_rows,
    open_partition,
    rewrite,
    unchanged,
)
from pipeline.outputs.metadata import DatasetMeta, Station
from pipeline.outputs.numtext import (
    POOL,
    Texts,
    float_texts,
    int_texts,
    iso_times,
    lines_bytes,
)
from pipeline.outputs.partition import PartitionKind
from pipeline.outputs.publish import HashingSink
from pipeline.outputs.table import (
    ABSENT_FLAG,
    MergedPartitionFile,
    MergedTableWriter,
    TableTarget,
    WideTable,
    parse_times,
)
from pipeline.records import PublishedFile, SensorInfo
from pipeline.times import utc_now

SUFFIX = ".csv"
FIXED_COLUMNS = ("time", "station", "latitude", "longitude", "depth")
FIXED_UNITS = ("UTC", "", "degrees_north", "degrees_east", "m")
# The layout before the station column; still read, never written.
_OLD_FIXED_COLUMNS = ("time", "latitude", "longitude", "depth")
# Data rows rendered and written at a time: a block's text stays small (a few MB for a
# many-sensor table) while each Arrow call still covers thousands of rows.
BLOCK_ROWS = 8_192


def _spell(value: float) -> str:
    """A value as the file spells it: Python's shortest round-tripping `repr`, NaN as ERDDAP
    spells it."""
    return "NaN" if value != value else repr(value)


# The station and position cells of a file's rows, as runs: (first row, the row's
# `station,latitude,longitude,depth` text). A station's position is constant within a
# TimeSeries dataset for ERDDAP (its cdm_timeseries_variables), so a file whose rows carry
# other positions than the metadata gives them now is rewritten, never appended to.
StationRuns = tuple[tuple[int, str], ...]


def _runs(texts: Sequence[str], rows: npt.NDArray[np.intp]) -> StationRuns:
    """Runs of equal text of rows that index into `texts` (rows change only at a few places,
    where a deployment starts)."""
    if not len(rows):
        return ()
    starts = np.flatnonzero(rows[1:] != rows[:-1]) + 1
    runs: list[tuple[int, str]] = []
    for start in [0, *starts.tolist()]:
        text = texts[int(rows[start])]
        if not runs or runs[-1][1] != text:
            runs.append((start, text))
    return tuple(runs)


def read_csv_table(path: Path) -> WideTable:
    """The records of a CSV file this writer made."""
    return _read_csv(path)[0]


def _read_csv(path: Path) -> tuple[WideTable, StationRuns | None]:
    """The records of a CSV file this writer made, and its rows' station cells (None for a
    file without the station column)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
        names = lines[0].split(",")
        units = lines[1].split(",")
        fixed = len(FIXED_COLUMNS) if names[1:2] == ["station"] else len(_OLD_FIXED_COLUMNS)
        if (
            tuple(names[:fixed]) not in (FIXED_COLUMNS, _OLD_FIXED_COLUMNS)
            or (len(names) - fixed) % 2
        ):
            raise ValueError(f"unexpected header {lines[0]!r}")
        rows = [line.split(",") for line in lines[2:] if line]
        if not rows:
            return WideTable.empty(), (() if fixed == len(FIXED_COLUMNS) else None)
        columns = list(zip(*rows, strict=True))
        times = parse_times(columns[0])
        stations = None
        if fixed == len(FIXED_COLUMNS):
            index: dict[str, int] = {}
            texts = [",".join(cells) for cells in zip(*columns[1:fixed], strict=True)]
            codes = np.array([index.setdefault(t, len(index)) for t in texts], dtype=np.intp)
            stations = _runs(list(index), codes)
        sensors: list[SensorInfo] = []
        values = []
        flags = []
        for index_ in range(fixed, len(names), 2):
            sensors.append(SensorInfo(code=names[index_], unit=units[index_] or None))
            # Python's float()/int() on short strings beat numpy's string casts by far.
            values.append(
                np.array([float(x) if x else nan for x in columns[index_]], dtype=np.float64)
            )
            flags.append(
                np.array([int(x) if x else ABSENT_FLAG for x in columns[index_ + 1]], dtype=np.int8)
            )
    except (OSError, ValueError, IndexError, UnicodeDecodeError) as exc:
        raise OutputError(f"existing output {path} is unreadable: {exc}", path=str(path)) from exc
    return WideTable(times, sensors, np.vstack(values), np.vstack(flags)), stations


@dataclass(frozen=True, slots=True)
class WrittenTable:
    """What a CSV file holds: its records and its rows' station cells."""

    table: WideTable
    stations: StationRuns


# The last table published per file, reused while the file is unchanged on disk (inode, size
# and modification time): parsing text back costs far more than rendering it, and a
# near-real-time stream grows the same partition on every poll, and a backfill grows a
# monthly one a day at a time. Kept only while something will merge with it
# (`CsvWindowWriter._keep`): a day of an 8-sensor 1 Hz table is 7 MB.
TableCache = StatCache[WrittenTable]


class CsvWindowWriter(MergedPartitionFile):
    """Merges one window's readings into its partition's CSV file."""

    def __init__(
        self,
        target: TableTarget,
        cache: TableCache | None = None,
        digests: Digests | None = None,
        *,
        polled: bool = True,
    ) -> None:
        super().__init__(target)
        path = target.path
        self._cache = cache if cache is not None else TableCache()
        self._digests = digests
        self._polled = polled
        base = None
        # The file's rows' station cells; None for a file without the station column.
        self._stations: StationRuns | None = ()
        self._read = open_partition(path)
        # A file cut to nothing (a torn first line) holds no records: rewritten whole.
        if self._read is not None and self._read.size:
            written = self._cache.get(path)
            if written is not None:
                base, self._stations = written.table, written.stations
            else:
                base, self._stations = _read_csv(path)
        self._merger = self._new_merger(base)

    def _column(self, sensor: SensorInfo) -> SensorInfo:
        """A CSV column is the sensor's identity: keyed by column name, so a re-read file
        merges with what is fetched again."""
        unit = udunits(sensor.unit)
        if unit is None:
            mapped = cf_name(sensor.property_code)
            unit = mapped.units if mapped else None
        return SensorInfo(code=variable_name(sensor.code), unit=unit)

    def publish(self) -> PublishedFile | None:
        """Append rows after the file's last time in place when that is all the window
        changes; otherwise rewrite the partition file atomically. An unchanged file is left
        alone."""
        table = self._merger.merged()
        if table.record_count == 0:
            return None
        # A file without the station column, or whose rows carry another station or position
        # than the metadata now gives them, is rewritten even when its records are unchanged.
        if self._stations == self._station_runs(self._merger.base.times):
            if (appended := self._append(table)) is not None:
                return appended
            if self._read is not None and not self.changed:
                return unchanged(self._path, self._digests)
        published = rewrite(
            self._path, self._read, lambda sink: _write_blocks(sink, self, table), self._digests
        )
        self._keep(table)
        return published

    def _keep(self, table: WideTable) -> None:
        """Keep the table published while a next window will merge with it: the window
        ends before its partition (a monthly partition is built a day at a time, and polls
        fill a day hour by hour), or the process polls again (`polled`) and the partition
        is still growing. Otherwise it is forgotten: a partition built whole (a backfill's
        daily ones) is not merged with again, and keeping it would hold a day per dataset
        in every window worker until the process exits."""
        later = self._window.end < self._partition.end
        if later or (self._polled and self._partition.end > self._clock()):
            self._cache.put(self._path, WrittenTable(table, self._station_runs(table.times)))
        else:
            self._cache.forget(self._path)

    def _append(self, table: WideTable) -> PublishedFile | None:
        """Append the rows `table` adds after the file's last time, when they are all it
        changes and a rewrite would write the file's own two header rows; None otherwise."""
        tail = later_rows(self._merger.base, table)
        if tail is None or self._read is None:
            return None
        text = self.render(tail)
        # The header is the column names row and the units row.
        body_at = text.index(b"\n", text.index(b"\n") + 1) + 1
        try:
            with open(self._path, "rb") as handle:
                header = handle.readline() + handle.readline()
        except OSError as exc:
            raise OutputError(
                f"existing output {self._path} is unreadable: {exc}", path=str(self._path)
            ) from exc
        if text[:body_at] != header:
            return None  # a column's unit changed: the header is rewritten
        data = text[body_at:]
        published = append_lines(self._path, data, self._read, self._digests)
        self._keep(table)
        return published

    def _station_runs(self, times: npt.NDArray[np.int64]) -> StationRuns:
        """The station cells the metadata gives rows at `times`, as `render` writes them."""
        stations, rows = self._meta.stations_of(times)
        return _runs([_station_text(s) for s in stations], rows)

    def render(self, table: WideTable) -> bytes:
        """The whole file's bytes."""
        return b"".join(self.render_blocks(table))

    def render_blocks(self, table: WideTable) -> Iterator[bytes]:
        """The file's bytes: the two header rows, then `BLOCK_ROWS` data rows at a time (the
        text of a whole partition would be several times the table's size in memory).

        Each block is built a column at a time by Arrow (`numtext`): times, the station
        cells of each row, each sensor's values and flags as text columns, joined into rows
        with one call; no Python object per value."""
        stations, rows = self._meta.stations_of(table.times)
        names = list(FIXED_COLUMNS)
        units = list(FIXED_UNITS)
        for sensor in table.sensors:
            names += [sensor.code, f"{sensor.code}_qc"]
            units += [sensor.unit or "", ""]
        yield (",".join(names) + "\n" + ",".join(units) + "\n").encode("utf-8")
        # station, lat, lon and depth are one string per station, taken for each row.
        fixed = pa.array([_station_text(s) for s in stations], type=pa.string())
        for start in range(0, len(table.times), BLOCK_ROWS):
            end = start + BLOCK_ROWS
            columns: list[Texts] = [
                iso_times(table.times[start:end]),
                fixed.take(pa.array(rows[start:end], memory_pool=POOL)),
            ]
            for row in range(len(table.sensors)):
                flags = table.flags[row, start:end]
                absent = flags == ABSENT_FLAG
                columns.append(float_texts(table.values[row, start:end], _spell, absent=absent))
                columns.append(int_texts(flags, absent=absent))
            yield lines_bytes(columns, ",")


def _station_text(station: Station) -> str:
    """A row's `station,latitude,longitude,depth` cells."""
    return f"{station.code},{station.latitude!r},{station.longitude!r},{station.depth!r}"


def _write_blocks(sink: HashingSink, writer: CsvWindowWriter, table: WideTable) -> None:
    for block in writer.render_blocks(table):
        sink.write(block)


class CsvWriter(MergedTableWriter[CsvWindowWriter]):
    """The CSV output format: one wide table per (dataset, partition)."""

    name = "csv"
    suffix = SUFFIX

    def __init__(
        self,
        metadata: Mapping[str, DatasetMeta],
        *,
        partition: PartitionKind = "daily",
        clock: Callable[[], datetime] = utc_now,
        polled: bool = True,
    ) -> None:
        """`polled`: the process polls again once caught up (the daemon), so the table of
        a partition still growing is kept for the next poll; False in one that exits then
        (`once`, `backfill`)."""
        super().__init__(metadata, partition=partition, clock=clock)
        self.polled = polled
        self._cache = TableCache()
        self._digests = Digests()

    def _window_writer(self, target: TableTarget) -> CsvWindowWriter:
        return CsvWindowWriter(target, self._cache, self._digests, polled=self.polled)
