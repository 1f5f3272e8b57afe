"""Apache Parquet for ERDDAP's EDDTableFromParquetFiles (ERDDAP 2.25+): one table per partition.

The lossless columnar format: one row per time, columns
`time,station,latitude,longitude,depth,<sensor>,<sensor>_qc,...`. `time` is float64 seconds
since 1970-01-01T00:00:00Z (as in our NetCDF files; exact to the millisecond for any ONC time);
`station` the `cf_role=timeseries_id` ONC location code and latitude/longitude/depth its constant
position (see metadata.Station); per sensor a float64 value column, NaN kept as NaN (ONC's
gap-fill rows, flag 9), and an int8 `_qc` flag column. A sensor without a record at a time has
NaN and the flag ABSENT_FLAG (-127), the `_FillValue` the datasets.xml entry declares for flag
columns: the file holds no nulls, so no reader has to guess what a null means.

ERDDAP reads no metadata from a Parquet file: asked for a file's metadata, its reader returns
"a table with columns but no rows. There is never any metadata", and its generated entries
say "Since Parquet files have no metadata, you MUST edit the chunk of datasets.xml below to
add all of the metadata (especially "units")" (ERDDAP/erddap
src/main/java/gov/noaa/pfel/erddap/dataset/EDDTableFromParquetFiles.java,
lowGetSourceDataFromFile and generateDatasetsXml). So the attributes ERDDAP needs (units,
standard_name, long_name, flag_values/flag_meanings, ioos_category, the global ACDD/IOOS ones)
go into the datasets.xml entry's addAttributes (datasets_xml.py); the file keeps the same
attributes as Arrow schema metadata (global) and field metadata (per column), which other
readers (pyarrow, pandas, DuckDB) show, and which this writer reads back to merge.

ERDDAP reads a whole Parquet file into memory for every file a request touches (the same
lowGetSourceDataFromFile hands Table.readParquet the file and the wanted columns, none of the
request's constraints), so a partition should stay small: daily partitions, the default, bound
a file to one day of one instrument; monthly ones are thirty times that for every request.

A new partition's file is written as its pages come, row groups into its temporary, and
renamed into place when the build is published (`_RowGroups`): a backfill's build holds a page,
not its day. A window into an existing partition merges into it, and the file is rewritten
whole and atomically; an unchanged partition is left alone. pyarrow is imported only by
processes that write or read Parquet (LazyWriters, datasets_xml).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from io import IOBase
from pathlib import Path
from typing import Any, Final, cast

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.exceptions import OutputError
from pipeline.outputs.cf_names import (
    cf_name,
    flag_meaning_word,
    ioos_category,
    udunits,
    variable_name,
)
from pipeline.outputs.metadata import onc_sensor_attributes
from pipeline.outputs.publish import AtomicFile, HashingSink, publish_atomically
from pipeline.outputs.table import (
    ABSENT_FLAG,
    MergedPartitionFile,
    MergedTableWriter,
    TableTarget,
    WideTable,
    merged_sensor,
)
from pipeline.records import PublishedFile, ScalarBatch, SensorInfo
from pipeline.times import format_onc_time, from_epoch_ms

SUFFIX = ".parquet"
FIXED_COLUMNS = ("time", "station", "latitude", "longitude", "depth")
TIME_UNITS = "seconds since 1970-01-01T00:00:00Z"
# The field-metadata key naming the ONC sensor a value column holds: how a file is read back.
SENSOR_KEY = "onc_sensor_code"
# Snappy: parquet-java's default codec, which every Parquet reader (ERDDAP's included) has.
_COMPRESSION: Final = "snappy"
# Rows per row group. A writer holds one row group's encoded pages until it is flushed, so this
# bounds the memory of writing a partition (a 1 Hz day is 86,400 rows: three row groups). ERDDAP
# reads every row group of a file it touches (see above), so their size changes what a writer
# holds, not what ERDDAP loads; much smaller groups only add per-group overhead to the file.
# A new partition written as its pages come starts a group at each page (a backfill's pages
# hold up to ONC's 100,000 rows a sensor: a day of 1 Hz data in two to four groups).
ROW_GROUP_ROWS: Final = 32_768
# Dictionary encoding for the station column only (one code per row, a handful of stations).
# For measured values it saves a few % of the file and costs a hash table per column chunk.
_DICTIONARY_COLUMNS: Final = ["station"]
# Where Arrow keeps the Arrow schema (attributes included) in a Parquet file's footer: base64
# of the serialized IPC schema, written by GetSchemaMetadata in apache/arrow
# cpp/src/parquet/arrow/writer.cc, read back by GetOriginSchema in .../arrow/schema.cc.
ARROW_SCHEMA_KEY: Final = "ARROW:schema"

_FIXED_TYPES: Final = (
    pa.float64(),
    pa.dictionary(pa.int32(), pa.string()),
    pa.float64(),
    pa.float64(),
    pa.float64(),
)
# Attributes of the fixed columns, for the file's field metadata and the datasets.xml entry.
FIXED_ATTRIBUTES: Mapping[str, Mapping[str, str]] = {
    "time": {
        "standard_name": "time",
        "long_name": "Time",
        "units": TIME_UNITS,
        "axis": "T",
        "ioos_category": "Time",
    },
    "station": {
        "cf_role": "timeseries_id",
        "long_name": "Station (ONC location code)",
        "ioos_category": "Identifier",
    },
    "latitude": {
        "standard_name": "latitude",
        "long_name": "Latitude",
        "units": "degrees_north",
        "axis": "Y",
        "ioos_category": "Location",
    },
    "longitude": {
        "standard_name": "longitude",
        "long_name": "Longitude",
        "units": "degrees_east",
        "axis": "X",
        "ioos_category": "Location",
    },
    "depth": {
        "standard_name": "depth",
        "long_name": "Instrument depth below sea surface",
        "units": "m",
        "positive": "down",
        "axis": "Z",
        "ioos_category": "Location",
    },
}


def _text(metadata: Mapping[bytes, bytes] | None) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (metadata or {}).items()}


def read_parquet_table(path: Path) -> tuple[WideTable, dict[str, str]]:
    """The records of a file this writer made, and its global attributes."""
    try:
        table = pq.read_table(path)
        schema = table.schema
        attributes = _text(schema.metadata)
        seconds = table.column("time").to_numpy()
        times = np.rint(np.asarray(seconds, dtype=np.float64) * 1000.0).astype(np.int64)
        sensors: list[SensorInfo] = []
        rows_v = []
        rows_f = []
        for field in schema:
            meta = _text(field.metadata)
            if SENSOR_KEY not in meta:
                continue
            sensors.append(
                SensorInfo(
                    code=meta[SENSOR_KEY],
                    name=meta.get("onc_sensor_name"),
                    unit=meta.get("onc_unit"),
                    property_code=meta.get("onc_property_code"),
                )
            )
            values = table.column(field.name).to_numpy()
            flags = table.column(f"{field.name}_qc").to_numpy()
            rows_v.append(np.asarray(values, dtype=np.float64))
            rows_f.append(np.asarray(flags, dtype=np.int8))
    except (OSError, KeyError, ValueError, pa.ArrowException) as exc:
        raise OutputError(f"existing output {path} is unreadable: {exc}", path=str(path)) from exc
    if not sensors:
        return WideTable.empty(), attributes
    return WideTable(times, sensors, np.vstack(rows_v), np.vstack(rows_f)), attributes


def _flag_table(info: Mapping[str, str]) -> tuple[str, str]:
    codes = sorted((int(k), v) for k, v in info.items() if k.strip().lstrip("-").isdigit())
    return " ".join(str(k) for k, _ in codes), " ".join(flag_meaning_word(v) for _, v in codes)


class ParquetWindowWriter(MergedPartitionFile):
    """Merges one window's readings into its partition's Parquet file.

    A partition without a file yet (a backfill's, a new day's) is written as its pages come:
    each page's rows go to the temporary file as row groups (`_RowGroups`) and are dropped,
    so a build holds one page, not its partition. That holds while every page brings rows
    after the ones written, of sensors already in the file: a page that does not (a sensor
    appearing late, a page overlapping the last one) has the rows written read back, and the
    partition is merged in memory and written whole at publish, as an existing one always is.
    """

    def __init__(self, target: TableTarget) -> None:
        super().__init__(target)
        self._carried: dict[str, str] = {}
        base: WideTable | None = None
        if target.path.exists():
            base, self._carried = read_parquet_table(target.path)
        self._merger = self._new_merger(base)
        self._fresh = base is None
        # The new partition's file as written so far (None: not opened yet, published, or
        # merged whole), and the records it holds.
        self._rows: _RowGroups | None = None
        self._written = 0
        self._streams = self._fresh

    def add(self, batch: ScalarBatch) -> int:
        """Merge a page, then write its rows out when the partition is streamed."""
        kept = super().add(batch)
        if self._streams:
            self._write_rows()
        return kept

    @property
    def record_count(self) -> int:
        """Distinct (time, sensor) records the file will hold."""
        return self._written + self._merger.merged().record_count

    @property
    def changed(self) -> bool:
        """A new partition changes when it gets a record; an existing one when a record
        differs from the file's."""
        return self.record_count > 0 if self._fresh else super().changed

    def publish(self) -> PublishedFile | None:
        """Publish the partition file atomically; an unchanged file is left alone."""
        if self._streams:
            self._write_rows()
        if (rows := self._rows) is not None:
            # Kept until published: a failed publish dropped the file, and publishing again
            # fails too instead of publishing the rows not written.
            published = rows.publish(self._schema(rows.sensors, rows.first_ms, rows.last_ms))
            self._rows = None
            return published
        table = self._merger.merged()
        if table.record_count == 0:
            return None
        if (unchanged := self.unchanged_file()) is not None:
            return unchanged
        arrow = self.to_arrow(table)
        return publish_atomically(self._path, lambda sink: _write(sink, arrow))

    def discard(self) -> None:
        """Drop the temporary a streamed partition was being written to."""
        rows, self._rows = self._rows, None
        if rows is not None:
            rows.abort()

    def _write_rows(self) -> None:
        """Write the rows merged since the last call to the new partition's file, or go
        back to merging the partition whole when they do not follow the rows written."""
        table = self._merger.merged()
        if table.record_count == 0:
            return
        rows = self._rows
        if rows is None:
            sensors = list(table.sensors)
            first, last = int(table.times[0]), int(table.times[-1])
            schema = self._schema(sensors, first, last)
            rows = self._rows = _RowGroups(self._path, schema, sensors, first)
        elif not rows.follows(table):
            self._merge_whole(rows)
            return
        rows.write(self._columns(table, rows.sensors), table)
        self._written += table.record_count
        self._merger = self._new_merger(None)

    def _merge_whole(self, rows: _RowGroups) -> None:
        """The rows written, read back under the rows merged since: the partition is merged
        in memory from here on and written whole at publish. (A file that failed to write or
        to read back stays `_rows`, dropped: publishing fails rather than lose its rows.)"""
        written = rows.read_back()
        self._rows, self._streams, self._written = None, False, 0
        self._merger = self._merger.rebased(written)

    def to_arrow(self, table: WideTable) -> pa.Table:
        """The whole partition as an Arrow table with its schema and field metadata."""
        schema = self._schema(table.sensors, int(table.times[0]), int(table.times[-1]))
        return pa.Table.from_arrays(self._columns(table, table.sensors), schema=schema)

    def _columns(self, table: WideTable, sensors: list[SensorInfo]) -> list[pa.Array[Any]]:
        """The table's columns in the order of `sensors` (which holds the table's): a sensor
        the table does not have is NaN with the absent flag."""
        stations, rows = self._meta.stations_of(table.times)
        codes = pa.array([s.code for s in stations], type=pa.string())
        columns: list[pa.Array[Any]] = [
            pa.array(table.times / 1000.0, type=pa.float64()),
            # Dictionary-encoded: one string per station, not per row.
            pa.DictionaryArray.from_arrays(pa.array(rows, type=pa.int32()), codes),
            *(
                pa.array(np.array([getattr(s, axis) for s in stations], dtype=np.float64)[rows])
                for axis in ("latitude", "longitude", "depth")
            ),
        ]
        at = {sensor.code: row for row, sensor in enumerate(table.sensors)}
        for sensor in sensors:
            row = at.get(sensor.code)
            if row is None:
                columns.append(pa.array(np.full(len(table.times), np.nan), type=pa.float64()))
                columns.append(
                    pa.array(np.full(len(table.times), ABSENT_FLAG, np.int8), type=pa.int8())
                )
                continue
            columns.append(pa.array(table.values[row], type=pa.float64()))
            columns.append(pa.array(table.flags[row], type=pa.int8()))
        return columns

    def _schema(self, sensors: list[SensorInfo], first_ms: int, last_ms: int) -> pa.Schema:
        """The file's schema: its columns' types and attributes, and the global attributes
        of records from `first_ms` to `last_ms`."""
        fields = [
            pa.field(name, kind, nullable=False, metadata=dict(FIXED_ATTRIBUTES[name]))
            for name, kind in zip(FIXED_COLUMNS, _FIXED_TYPES, strict=True)
        ]
        flag_values, flag_meanings = _flag_table(self._flag_info)
        seen: set[str] = set()
        for sensor in sensors:
            name = variable_name(sensor.code)
            if name in seen or f"{name}_qc" in seen:
                raise OutputError(
                    f"sensor codes map to the same column name {name!r}", path=str(self._path)
                )
            seen.update((name, f"{name}_qc"))
            attrs = self.sensor_attributes(sensor)
            fields.append(pa.field(name, pa.float64(), nullable=False, metadata=attrs))
            qc = {
                "long_name": f"{attrs['long_name']} ONC QAQC flag",
                "standard_name": "quality_flag",
                "flag_values": flag_values,
                "flag_meanings": flag_meanings,
                "_FillValue": str(ABSENT_FLAG),
                "ioos_category": "Quality",
            }
            fields.append(pa.field(f"{name}_qc", pa.int8(), nullable=False, metadata=qc))
        metadata: dict[bytes | str, bytes | str] = dict(self._globals(first_ms, last_ms).items())
        return pa.schema(fields, metadata=metadata)

    def sensor_attributes(self, sensor: SensorInfo) -> dict[str, str]:
        """The CF attributes of a sensor's value column, and the ONC names it came from."""
        mapped = cf_name(sensor.property_code)
        prop = self._meta.properties.get((sensor.property_code or "").lower())
        units = udunits(sensor.unit) or udunits(prop.uom if prop else None)
        if units is None and mapped is not None:
            units = mapped.units
        attrs = {"long_name": sensor.name or (prop.name if prop else None) or sensor.code}
        if mapped is not None:
            attrs["standard_name"] = mapped.standard_name
            if mapped.standard_name == "depth":
                attrs["positive"] = "down"
        if units is not None:
            attrs["units"] = units
        attrs["ioos_category"] = ioos_category(attrs.get("standard_name"), sensor.code)
        attrs[SENSOR_KEY] = sensor.code
        attrs.update(onc_sensor_attributes(sensor))
        return attrs

    def _globals(self, first_ms: int, last_ms: int) -> dict[str, str]:
        meta = self._meta
        now = self._clock()
        line = meta.history_line(now, self._partition.start, self._partition.end)
        previous = self._carried.get("history", "").splitlines()
        # The first harvest and the latest one: enough provenance without growing per rewrite.
        history = [previous[0], line] if previous and previous[0] != line else [line]
        position = meta.position_at(from_epoch_ms(first_ms))
        attrs = dict(meta.attributes)
        attrs.update(
            {
                "featureType": "timeSeries",
                "cdm_data_type": "TimeSeries",
                "cdm_timeseries_variables": "station,latitude,longitude,depth",
                "subsetVariables": "station,latitude,longitude,depth",
                "time_coverage_start": format_onc_time(from_epoch_ms(first_ms)),
                "time_coverage_end": format_onc_time(from_epoch_ms(last_ms)),
                "date_created": self._carried.get("date_created", _iso(now)),
                "date_modified": _iso(now),
                "history": "\n".join(history),
                "onc_device_code": position.device_code,
            }
        )
        return attrs


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _open_writer(sink: HashingSink, schema: pa.Schema) -> pq.ParquetWriter:
    # Arrow's wrapper only calls write() and reads `closed`, which the sink has.
    out = pa.PythonFile(cast(IOBase, sink), mode="w")
    return pq.ParquetWriter(
        out,
        schema,
        compression=_COMPRESSION,
        # pyarrow takes a bool or a list of column names; its stubs know only the bool.
        use_dictionary=_DICTIONARY_COLUMNS,  # type: ignore[arg-type]
    )


def _write_groups(writer: pq.ParquetWriter, table: pa.Table) -> None:
    """The table as row groups of `ROW_GROUP_ROWS`: what the writer holds is one row group's
    encoded pages, not the whole table's."""
    for start in range(0, max(table.num_rows, 1), ROW_GROUP_ROWS):
        writer.write_table(table.slice(start, ROW_GROUP_ROWS))


def _write(sink: HashingSink, table: pa.Table) -> None:
    """The table as Parquet, straight into the sink."""
    with _open_writer(sink, table.schema) as writer:
        _write_groups(writer, table)


class _RowGroups:
    """A new partition's Parquet file, written into its temporary row group by row group.

    Arrow's writer takes the schema when it opens but writes the Arrow schema, with every
    attribute, into the footer's key-value metadata when it closes (under `ARROW_SCHEMA_KEY`,
    where pyarrow reads attributes back from). `publish` replaces it there with the final
    schema (the time coverage, the sensors' and flags' attributes as the last page told
    them): the columns are fixed at open, their attributes are not.
    """

    def __init__(
        self, final: Path, schema: pa.Schema, sensors: list[SensorInfo], first_ms: int
    ) -> None:
        self.sensors = sensors
        self.first_ms = first_ms
        self.last_ms = first_ms - 1
        self._schema = schema
        self._file = AtomicFile(final)
        with self._writing():
            self._writer = _open_writer(self._file.sink, schema)

    def follows(self, table: WideTable) -> bool:
        """Whether `table` can be written after the rows written: later, same columns."""
        known = {sensor.code for sensor in self.sensors}
        later = int(table.times[0]) > self.last_ms
        return later and all(sensor.code in known for sensor in table.sensors)

    def write(self, columns: list[pa.Array[Any]], table: WideTable) -> None:
        """Write `table` (as `columns`, in the file's order) after the rows written."""
        with self._writing():
            _write_groups(self._writer, pa.Table.from_arrays(columns, schema=self._schema))
        self.last_ms = int(table.times[-1])
        newer = {sensor.code: sensor for sensor in table.sensors}
        self.sensors = [
            merged_sensor(s, newer[s.code]) if s.code in newer else s for s in self.sensors
        ]

    def publish(self, schema: pa.Schema) -> PublishedFile:
        """Close the file under `schema`'s attributes and publish it."""
        final = {key.decode(): value.decode() for key, value in (schema.metadata or {}).items()}
        final[ARROW_SCHEMA_KEY] = base64.b64encode(schema.serialize().to_pybytes()).decode()
        with self._writing():
            self._writer.add_key_value_metadata(final)
            self._writer.close()
        return self._file.publish()

    def read_back(self) -> WideTable:
        """The rows written, the temporary dropped; the sensors as the pages written last
        described them (the footer holds what the first page said)."""
        with self._writing():
            self._writer.close()
        try:
            table, _ = read_parquet_table(self._file.written())
        finally:
            self._file.abort()
        described = {sensor.code: sensor for sensor in self.sensors}
        table.sensors = [described.get(sensor.code, sensor) for sensor in table.sensors]
        return table

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """A round of Arrow's writes: any failure drops the temporary, and Arrow's own
        errors are OutputErrors naming the file, as OSErrors are (`AtomicFile.writing`)."""
        final = self._file.final
        try:
            with self._file.writing():
                yield
        except pa.ArrowException as exc:
            raise OutputError(f"cannot write {final}: {exc}", path=str(final)) from exc

    def abort(self) -> None:
        """Drop the temporary, the writer unfinished."""
        with contextlib.suppress(Exception):
            self._writer.close()
        self._file.abort()


def schema_of(path: Path) -> pa.Schema:
    """The Arrow schema (with its metadata) of a Parquet file, without reading its data."""
    try:
        return pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise OutputError(f"{path} is not a readable Parquet file: {exc}", path=str(path)) from exc


def field_attributes(schema: pa.Schema) -> list[tuple[str, str, dict[str, str]]]:
    """(column, Arrow type name, attributes) of every column of a schema, in order."""
    return [(f.name, str(f.type), _text(f.metadata)) for f in schema]


def global_attributes(schema: pa.Schema) -> dict[str, str]:
    """A schema's global attributes."""
    return _text(schema.metadata)


class ParquetWriter(MergedTableWriter[ParquetWindowWriter]):
    """The Parquet output format: one table per (dataset, partition)."""

    name = "parquet"
    suffix = SUFFIX
    window_writer = ParquetWindowWriter
