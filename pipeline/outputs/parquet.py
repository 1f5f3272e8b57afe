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

Each window merges into its partition's file, which is rewritten whole and atomically; an
unchanged partition is left alone. pyarrow is imported only by processes that write or read
Parquet (LazyWriters, datasets_xml).
"""

from __future__ import annotations

from collections.abc import Mapping
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
from pipeline.outputs.publish import HashingSink, publish_atomically
from pipeline.outputs.table import (
    ABSENT_FLAG,
    MergedPartitionFile,
    MergedTableWriter,
    TableTarget,
    WideTable,
)
from pipeline.records import PublishedFile, SensorInfo
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
ROW_GROUP_ROWS: Final = 32_768
# Dictionary encoding for the station column only (one code per row, a handful of stations).
# For measured values it saves a few % of the file and costs a hash table per column chunk.
_DICTIONARY_COLUMNS: Final = ["station"]

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
    """Merges one window's readings into its partition's Parquet file."""

    def __init__(self, target: TableTarget) -> None:
        super().__init__(target)
        self._carried: dict[str, str] = {}
        base: WideTable | None = None
        if target.path.exists():
            base, self._carried = read_parquet_table(target.path)
        self._merger = self._new_merger(base)

    def publish(self) -> PublishedFile | None:
        """Rewrite the partition file atomically; an unchanged file is left alone."""
        table = self._merger.merged()
        if table.record_count == 0:
            return None
        if (unchanged := self.unchanged_file()) is not None:
            return unchanged
        arrow = self.to_arrow(table)
        return publish_atomically(self._path, lambda sink: _write(sink, arrow))

    def to_arrow(self, table: WideTable) -> pa.Table:
        """The whole partition as an Arrow table with its schema and field metadata."""
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
        fields = [
            pa.field(name, column.type, nullable=False, metadata=dict(FIXED_ATTRIBUTES[name]))
            for name, column in zip(FIXED_COLUMNS, columns, strict=True)
        ]
        flag_values, flag_meanings = _flag_table(self._flag_info)
        seen: set[str] = set()
        for row, sensor in enumerate(table.sensors):
            name = variable_name(sensor.code)
            if name in seen or f"{name}_qc" in seen:
                raise OutputError(
                    f"sensor codes map to the same column name {name!r}", path=str(self._path)
                )
            seen.update((name, f"{name}_qc"))
            attrs = self.sensor_attributes(sensor)
            columns.append(pa.array(table.values[row], type=pa.float64()))
            fields.append(pa.field(name, pa.float64(), nullable=False, metadata=attrs))
            columns.append(pa.array(table.flags[row], type=pa.int8()))
            qc = {
                "long_name": f"{attrs['long_name']} ONC QAQC flag",
                "standard_name": "quality_flag",
                "flag_values": flag_values,
                "flag_meanings": flag_meanings,
                "_FillValue": str(ABSENT_FLAG),
                "ioos_category": "Quality",
            }
            fields.append(pa.field(f"{name}_qc", pa.int8(), nullable=False, metadata=qc))
        metadata: dict[bytes | str, bytes | str] = dict(self._globals(table).items())
        schema = pa.schema(fields, metadata=metadata)
        return pa.Table.from_arrays(columns, schema=schema)

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

    def _globals(self, table: WideTable) -> dict[str, str]:
        meta = self._meta
        now = self._clock()
        line = meta.history_line(now, self._partition.start, self._partition.end)
        previous = self._carried.get("history", "").splitlines()
        # The first harvest and the latest one: enough provenance without growing per rewrite.
        history = [previous[0], line] if previous and previous[0] != line else [line]
        position = meta.position_at(from_epoch_ms(int(table.times[0])))
        attrs = dict(meta.attributes)
        attrs.update(
            {
                "featureType": "timeSeries",
                "cdm_data_type": "TimeSeries",
                "cdm_timeseries_variables": "station,latitude,longitude,depth",
                "subsetVariables": "station,latitude,longitude,depth",
                "time_coverage_start": format_onc_time(from_epoch_ms(int(table.times[0]))),
                "time_coverage_end": format_onc_time(from_epoch_ms(int(table.times[-1]))),
                "date_created": self._carried.get("date_created", _iso(now)),
                "date_modified": _iso(now),
                "history": "\n".join(history),
                "onc_device_code": position.device_code,
            }
        )
        return attrs


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _write(sink: HashingSink, table: pa.Table) -> None:
    """The table as Parquet, one row group of `ROW_GROUP_ROWS` at a time, straight into the
    sink: what is held while writing is one row group's encoded pages, not the whole file."""
    # Arrow's wrapper only calls write() and reads `closed`, which the sink has.
    out = pa.PythonFile(cast(IOBase, sink), mode="w")
    with pq.ParquetWriter(
        out,
        table.schema,
        compression=_COMPRESSION,
        # pyarrow takes a bool or a list of column names; its stubs know only the bool.
        use_dictionary=_DICTIONARY_COLUMNS,  # type: ignore[arg-type]
    ) as writer:
        for start in range(0, max(table.num_rows, 1), ROW_GROUP_ROWS):
            writer.write_table(table.slice(start, ROW_GROUP_ROWS))


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
