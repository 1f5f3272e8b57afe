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
(`growth.py` has the rule). Deciding reads the file's rows from the window's first time on,
not the file: what a process keeps of a file between windows is a few facts (`CsvFacts`).
"""

from __future__ import annotations

import contextlib
import io
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from math import nan
from pathlib import Path

import numpy as np
import numpy.typing as npt
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from pipeline.exceptions import OutputError
from pipeline.outputs import native_lines
from pipeline.outputs.cf_names import cf_name, udunits, variable_name
from pipeline.outputs.growth import (
    Digests,
    FileAsRead,
    StatCache,
    append_lines,
    later_rows,
    open_partition,
    opened_as_read,
    rewrite,
    unchanged,
)
from pipeline.outputs.metadata import DatasetMeta, Station
from pipeline.outputs.numtext import (
    ISO_TIME_WIDTH,
    Texts,
    float_texts,
    int_texts,
    iso_time_record,
    iso_times,
    lines_bytes,
)
from pipeline.outputs.partition import PartitionKind
from pipeline.outputs.publish import HashingSink
from pipeline.outputs.table import (
    ABSENT_FLAG,
    GrowingPartitionFile,
    Int64Array,
    MergedTableWriter,
    TableTarget,
    WideTable,
    format_times,
    parse_times,
)
from pipeline.records import PublishedFile, SensorInfo
from pipeline.times import utc_now

SUFFIX = ".csv"
FIXED_COLUMNS = ("time", "station", "latitude", "longitude", "depth")
FIXED_UNITS = ("UTC", "", "degrees_north", "degrees_east", "m")
# The layout before the station column; still read, never written.
_OLD_FIXED_COLUMNS = ("time", "latitude", "longitude", "depth")
# How far back from its end a file is read at a time for its latest rows.
_BACK_CHUNK = 1 << 16
# Arrow's CSV block size is a 32-bit count of bytes.
_ARROW_BLOCK_MAX = (1 << 31) - 1
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


def _read_csv(path: Path, read: FileAsRead | None = None) -> tuple[WideTable, StationRuns | None]:
    """The records of a CSV file this writer made, and its rows' station cells (None for a
    file without the station column); with `read`, of the file as a window read it."""
    try:
        if read is None:
            text = path.read_bytes()
        else:
            with opened_as_read(path, read) as handle:
                text = handle.read(read.size)
        lines = text.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"existing output {path} is unreadable: {exc}", path=str(path)) from exc
    return _parse_csv(path, lines)


def _read_csv_since(path: Path, since: str, read: FileAsRead) -> tuple[WideTable, bytes]:
    """The records of the file as a window read it at or after the time `since` (ONC's
    fixed-width text, which sorts as time does), or of its last row when none is, and its
    two header rows as they stand: read backwards from its end, so a poll reads what it may
    touch, not the day before it."""
    mark = since.encode("ascii")
    try:
        with opened_as_read(path, read) as handle:
            head = handle.readline() + handle.readline()
            first = len(head)
            chunks: list[bytes] = []  # from the end backwards
            at = read.size
            # Back a chunk at a time, until the first whole line read is before `since`.
            while at > first:
                start = max(first, at - _BACK_CHUNK)
                handle.seek(start)
                chunks.append(handle.read(at - start))
                at = start
                cut = chunks[-1].find(b"\n") + 1
                if at == first or not cut:
                    continue
                # The first whole line's time may run on into the chunks read before.
                line = chunks[-1][cut : cut + len(mark)]
                for later in reversed(chunks[:-1]):
                    if len(line) >= len(mark):
                        break
                    line += later[: len(mark) - len(line)]
                if len(line) == len(mark) and line < mark:
                    break
            body = b"".join(reversed(chunks))
            if at > first:
                body = body[body.find(b"\n") + 1 :]  # the end of a line that began earlier
            lines = body.decode("utf-8").splitlines()
            header = head.decode("utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise OutputError(f"existing output {path} is unreadable: {exc}", path=str(path)) from exc
    keep = bisect_left(lines, since)  # rows are in time order, times lead them
    rows = lines[keep:] or lines[-1:]
    return _parse_csv(path, [*header, *rows])[0], head


def _fixed_columns(names: list[str]) -> int:
    """How many columns come before the sensors' in a header naming `names` (a file with the
    station column, or one written before it); ValueError for a header not ours."""
    fixed = len(FIXED_COLUMNS) if names[1:2] == ["station"] else len(_OLD_FIXED_COLUMNS)
    if tuple(names[:fixed]) not in (FIXED_COLUMNS, _OLD_FIXED_COLUMNS) or (len(names) - fixed) % 2:
        raise ValueError(f"unexpected header {','.join(names)!r}")
    return fixed


def _scan_csv(path: Path, read: FileAsRead) -> tuple[int, StationRuns | None, Int64Array]:
    """What `CsvFacts` needs of the file as a window read it, without its table: the records
    it holds, its rows' station cells (None for a file without the station column) and its
    times. Arrow reads every cell as text (no number is converted) into a few arrays, where
    `_read_csv` makes a Python object of every cell: 0.1 s against 0.6 s for a day of an
    8-sensor 1 Hz instrument, and no heap left fragmented by them."""
    try:
        with opened_as_read(path, read) as handle:
            data = handle.read(read.size)
        names = data[: data.find(b"\n")].decode("utf-8").split(",")
        fixed = _fixed_columns(names)
        table = pa_csv.read_csv(
            io.BytesIO(data),
            # One block: each column is then one allocation, a mapping given back when it is
            # freed. Arrow's 1 MB blocks left 150 MB on the heap after 40 days were read.
            read_options=pa_csv.ReadOptions(
                skip_rows=2,
                column_names=names,
                use_threads=False,
                block_size=min(max(len(data), 1 << 20), _ARROW_BLOCK_MAX),
            ),
            parse_options=pa_csv.ParseOptions(quote_char=False),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.string()),
                null_values=[""],
                strings_can_be_null=True,
            ),
        )
        del data
        if table[0].null_count:
            raise ValueError("a row without a time")
        records = sum(len(table[i]) - table[i].null_count for i in range(fixed + 1, len(names), 2))
        # ONC's times parsed by Arrow: no Python string per row.
        stamps = pc.cast(table[0], pa.timestamp("ms", "UTC"))
        times = pc.cast(stamps, pa.int64()).to_numpy().astype(np.int64)
        stations = None
        if fixed == len(FIXED_COLUMNS):
            cells = [table[i] for i in range(1, fixed)]
            # The separator is the last positional argument (the stubs do not know it); an
            # empty cell is joined as the empty text `_read_csv` would see.
            text = pc.binary_join_element_wise(  # type: ignore[call-overload]
                *cells, ",", null_handling="replace"
            )
            encoded = pc.dictionary_encode(text).combine_chunks()
            codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.intp)
            stations = _runs(encoded.dictionary.to_pylist(), codes)
    except (OSError, ValueError, IndexError, TypeError, pa.ArrowException) as exc:
        raise OutputError(f"existing output {path} is unreadable: {exc}", path=str(path)) from exc
    return records, stations, times


def _parse_csv(path: Path, lines: list[str]) -> tuple[WideTable, StationRuns | None]:
    """`_read_csv` of the file's lines (its two header rows, then data rows)."""
    try:
        names = lines[0].split(",")
        units = lines[1].split(",")
        fixed = _fixed_columns(names)
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
    except (ValueError, IndexError) as exc:
        raise OutputError(f"existing output {path} is unreadable: {exc}", path=str(path)) from exc
    return WideTable(times, sensors, np.vstack(values), np.vstack(flags)), stations


@dataclass(frozen=True, slots=True)
class CsvFacts:
    """What a window needs to know of a CSV file beyond the rows it may touch: how many
    records it holds, and whether its rows' station cells are what `meta` gives them."""

    records: int
    meta: DatasetMeta
    stations_current: bool


# What is known of the file each dataset grows (one per folder), while the file is unchanged
# on disk (inode, size and modification time): a near-real-time poll then reads only the
# file's rows from its window's first time on (`_read_csv_since`), and a backfill that grows
# a monthly file a day at a time reads only its last row. Parsing a whole day's text back
# would cost far more than rendering it, and keeping its table would hold 7 MB a dataset (an
# 8-sensor 1 Hz day): hundreds of MB for a daemon of many streams.
FactsCache = StatCache[CsvFacts]


@dataclass(frozen=True, slots=True)
class _Append:
    """How a window goes into its file: the data rows to append (None: nothing new) and the
    records the file then holds."""

    data: bytes | None
    records: int

    @property
    def adds(self) -> bool:
        """True when rows are appended."""
        return self.data is not None


class CsvWindowWriter(GrowingPartitionFile[_Append]):
    """Merges one window's readings into its partition's CSV file.

    Over an existing file the merger holds the window alone. Whether it is appended is
    decided on the file's rows from the window's first time on (`_make_plan`) and on what is
    known of the file (`_known`: kept, or learnt by a scan that converts nothing); the
    whole file is parsed only to rewrite it."""

    def __init__(
        self,
        target: TableTarget,
        cache: FactsCache | None = None,
        digests: Digests | None = None,
    ) -> None:
        super().__init__(target)
        self._cache = cache if cache is not None else FactsCache()
        self._digests = digests
        self._read = open_partition(self._path)
        # A file cut to nothing (a torn first line) holds no records: written whole.
        self._over = self._read if self._read is not None and self._read.size else None
        self._merger = self._new_merger(None)
        self._start_growth()
        # The file's rows' station cells, once it is read whole (`_read_records`).
        self._file_stations: StationRuns | None = None

    def _column(self, sensor: SensorInfo) -> SensorInfo:
        """A CSV column is the sensor's identity: keyed by column name, so a re-read file
        merges with what is fetched again."""
        unit = udunits(sensor.unit)
        if unit is None:
            mapped = cf_name(sensor.property_code)
            unit = mapped.units if mapped else None
        return SensorInfo(code=variable_name(sensor.code), unit=unit)

    # -- what the file holds -------------------------------------------------------------

    @property
    def _growing(self) -> bool:
        return self._over is not None

    def _existing_records(self) -> int:
        return self._known().records

    def _read_records(self) -> WideTable:
        assert self._over is not None
        table, self._file_stations = _read_csv(self._path, self._over)
        return table

    def _known(self) -> CsvFacts:
        """The file's facts: kept from the last window of this process that wrote it, or
        learnt by a scan of it (`_scan_csv`)."""
        assert self._over is not None
        facts = self._cache.get(self._path)
        if facts is not None and facts.meta == self._meta:
            return facts
        records, stations, times = _scan_csv(self._path, self._over)
        facts = CsvFacts(records, self._meta, stations == self._station_runs(times))
        with contextlib.suppress(OSError):
            self._cache.put(self._path, facts, size=self._over.size, inode=self._over.inode)
        return facts

    def _remember(self, records: int, published: PublishedFile, inode: int | None = None) -> None:
        """Keep the facts of the file just published (grown in place: the file of `inode`),
        while it stays as written."""
        facts = CsvFacts(records, self._meta, True)
        with contextlib.suppress(OSError):  # gone already: learnt again when next read
            self._cache.put(self._path, facts, size=published.size, inode=inode)

    # -- publishing ----------------------------------------------------------------------

    def publish(self) -> PublishedFile | None:
        """Append rows after the file's last time in place when that is all the window
        changes; otherwise rewrite the partition file atomically. An unchanged file is left
        alone."""
        if self._over is None:
            table = self._merger.merged()
        else:
            plan = self._plan()
            if plan is not None:
                if plan.data is None:
                    return unchanged(self._path, self._digests) if plan.records else None
                published = append_lines(self._path, plan.data, self._over, self._digests)
                self._remember(plan.records, published, self._over.inode)
                return published
            full = self._rebased()
            table = full.merged()
            # A file without the station column, or whose rows carry another station or
            # position than the metadata now gives them, is rewritten even when its records
            # are unchanged.
            current = self._file_stations == self._station_runs(full.base.times)
            if current and table.record_count and table.same_as(full.base):
                return unchanged(self._path, self._digests)
        if table.record_count == 0:
            return None
        published = rewrite(
            self._path, self._read, lambda sink: _write_blocks(sink, self, table), self._digests
        )
        self._remember(table.record_count, published)
        return published

    def _make_plan(self, window: WideTable) -> _Append | None:
        """How the window goes into the file in place: the rows it adds after the file's last
        time, rendered as a rewrite would render them, when they are all it changes; None
        when the file must be rewritten (a revision, a time between rows, a new column or
        unit, stale station cells)."""
        assert self._over is not None
        facts = self._known()
        if not facts.stations_current:
            return None
        if window.record_count == 0:
            return _Append(None, facts.records)
        since = format_times(window.times[:1])[0]
        # The rows before `since` are not touched: their station cells are current (`facts`),
        # and any time the window brings sorts at or after them.
        base, header = _read_csv_since(self._path, since, self._over)
        merged = self._merger.rebased(base).merged()
        if merged.same_as(base):
            return _Append(None, facts.records)
        tail = later_rows(base, merged)
        if tail is None:
            return None
        text = self.render(tail)
        # The header is the column names row and the units row: a unit that changed rewrites
        # it, and with it the file.
        body_at = text.index(b"\n", text.index(b"\n") + 1) + 1
        if text[:body_at] != header:
            return None
        return _Append(text[body_at:], facts.records + merged.record_count - base.record_count)

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

        Each block is built in one pass by C where the extension is built and every column's
        values have repr's spelling from `value_body` or orjson (`_c_block`), otherwise a
        column at a time by Arrow (`numtext`): times, the station cells of each row, each
        sensor's values and flags as text columns, joined into rows with one call; no Python
        object per value either way."""
        stations, rows = self._meta.stations_of(table.times)
        names = list(FIXED_COLUMNS)
        units = list(FIXED_UNITS)
        for sensor in table.sensors:
            names += [sensor.code, f"{sensor.code}_qc"]
            units += [sensor.unit or "", ""]
        yield (",".join(names) + "\n" + ",".join(units) + "\n").encode("utf-8")
        texts = [_station_text(s) for s in stations]
        # station, lat, lon and depth are one string per station, taken for each row.
        fixed = pa.array(texts, type=pa.string())
        cells = [text.encode("utf-8") for text in texts]
        for start in range(0, len(table.times), BLOCK_ROWS):
            end = start + BLOCK_ROWS
            block = _c_block(table, cells, rows, start, end)
            if block is not None:
                yield block
                continue
            columns: list[Texts] = [
                iso_times(table.times[start:end]),
                fixed.take(pa.array(rows[start:end])),
            ]
            for row in range(len(table.sensors)):
                flags = table.flags[row, start:end]
                absent = flags == ABSENT_FLAG
                columns.append(float_texts(table.values[row, start:end], _spell, absent=absent))
                columns.append(int_texts(flags, absent=absent))
            yield lines_bytes(columns, ",")


def _c_block(
    table: WideTable, stations: list[bytes], rows: npt.NDArray[np.intp], start: int, end: int
) -> bytes | None:
    """Rows [start, end) as `render_blocks` writes them, by `native_lines.csv_lines`; None
    where it is not built or a column's values have no repr spelling at hand (an exponent)."""
    if not native_lines.COMPILED:
        return None
    times = iso_time_record(table.times[start:end])
    if times is None:
        return None
    sensors = []
    for row in range(len(table.sensors)):
        values = np.ascontiguousarray(table.values[row, start:end], dtype=np.float64)
        body = native_lines.value_body(values)
        if body is None:
            # orjson's shortest digits are repr's but for an exponent (`1e16`, `1e-5`) and
            # a value under 1e-4, which orjson writes `0.0000...`; NaN and infinities (`null`)
            # the C spells from the value.
            body = orjson.dumps(values, option=orjson.OPT_SERIALIZE_NUMPY)[1:-1]
            if b"e" in body or _positional_tiny(body):
                return None
        flags = np.ascontiguousarray(table.flags[row, start:end], dtype=np.int8)
        sensors.append((b"", body, values, flags))
    station_rows = np.ascontiguousarray(rows[start:end], dtype=np.int64)
    return native_lines.csv_lines(times, ISO_TIME_WIDTH, stations, station_rows, sensors)


def _positional_tiny(body: bytes) -> bool:
    """Whether orjson's text of a column holds a value under 1e-4 (`0.0000...`, which repr
    writes with an exponent); `100.00001` is not one."""
    return body.startswith((b"0.0000", b"-0.0000")) or b",0.0000" in body or b",-0.0000" in body


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
    ) -> None:
        super().__init__(metadata, partition=partition, clock=clock)
        self._cache = FactsCache()
        self._digests = Digests()

    def _window_writer(self, target: TableTarget) -> CsvWindowWriter:
        return CsvWindowWriter(target, self._cache, self._digests)
