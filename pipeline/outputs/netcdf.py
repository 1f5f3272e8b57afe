"""CF-1.8 discrete-sampling-geometry NetCDF-4 files (featureType=timeSeries), one per partition.

Layout (CF H.2.1, orthogonal multidimensional array, one station): `time(time)` float64 seconds
since 1970-01-01T00:00:00Z; `station(station)` (cf_role=timeseries_id, the IOOS platform
variable; a station dimension of length 1 as IOOS 1.2 asks), `latitude(station)`,
`longitude(station)`, `depth(station)` from the deployment active in the partition; per sensor a
float64 `<name>(station, time)` (NaN fill; ONC gap-fill rows stay NaN with flag 9) with an int8
`<name>_qc(station, time)` ancillary flag variable. The (station, time) shape is also what
ERDDAP's EDDTableFromMultidimNcFiles expects: it reads the variables using the most dimensions
and joins the station variables to them. Flag variables carry `flag_values`/`flag_meanings`
built from ONC's qaqcFlagInfo. Global attributes follow ACDD-1.3 and IOOS-1.2. Each window
merges into its partition's file, which is rewritten whole and atomically (cost: the partition,
never the history).

netCDF4 (the Unidata binding of netcdf-c/HDF5) is used directly: it is what the IOOS compliance
checker and ERDDAP's readers are tested against, and it writes numpy columns without the
per-variable overhead of xarray.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

from pipeline.exceptions import OutputError
from pipeline.outputs.cf_names import cf_name, flag_meaning_word, ioos_category, udunits
from pipeline.outputs.metadata import DatasetMeta, Position, Station
from pipeline.outputs.partition import Partition, PartitionKind
from pipeline.outputs.publish import publish_path_atomically
from pipeline.outputs.table import (
    ABSENT_FLAG,
    MergedPartitionFile,
    MergedTableWriter,
    ScalarMerger,
    WideTable,
)
from pipeline.records import PublishedFile, SensorInfo, Window
from pipeline.times import epoch_ms, format_onc_time, from_epoch_ms, utc_now

SUFFIX = ".nc"
# ACDD 1.3 recommends `comment`; output.attributes may set its own.
_COMMENT = (
    "Harvested by onc-pipeline. The station is the ONC location code and latitude, longitude "
    "and depth are the location's position; where each deployment stood is in "
    "onc_deployment_* (first record of the file) and at ONC's deployments service."
)
TIME_UNITS = "seconds since 1970-01-01T00:00:00Z"
# Names the file layout uses itself; a sensor code equal to one gets a suffix.
RESERVED = frozenset({"time", "station", "latitude", "longitude", "depth", "name_strlen"})
_NAME_BAD = re.compile(r"[^A-Za-z0-9_]")


def variable_name(sensor_code: str) -> str:
    """A NetCDF/ERDDAP-safe variable name for a sensor code, stable across files."""
    name = _NAME_BAD.sub("_", sensor_code) or "sensor"
    if not name[0].isalpha():
        name = "s_" + name
    if name in RESERVED:
        name += "_measured"
    return name


def _flag_table(info: Mapping[str, str]) -> tuple[np.ndarray[Any, np.dtype[np.int8]], str]:
    codes = sorted((int(k), v) for k, v in info.items() if k.strip().lstrip("-").isdigit())
    values = np.array([k for k, _ in codes], dtype=np.int8)
    return values, " ".join(flag_meaning_word(v) for _, v in codes)


def _iso(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


# netCDF4 (netcdf-c and HDF5 underneath) is not thread-safe, even for different files: windows
# of two streams published from two threads at once crash the process (SIGSEGV, SIGBUS,
# "NetCDF: HDF error"; Unidata/netcdf4-python#1405, pydata/xarray#9779). Every netCDF4 call in
# this process holds this lock. Window worker processes each have their own.
NETCDF_LOCK = threading.Lock()


def read_netcdf_table(path: Path) -> tuple[WideTable, dict[str, str]]:
    """The records of a file this writer made, and the global attributes to carry over."""
    try:
        with NETCDF_LOCK, netCDF4.Dataset(path, "r") as ds:
            ds.set_auto_mask(False)
            seconds = np.asarray(ds.variables["time"][:], dtype=np.float64)
            times = np.rint(seconds * 1000.0).astype(np.int64)
            sensors: list[SensorInfo] = []
            rows_v = []
            rows_f = []
            for var in ds.variables.values():
                attrs = var.ncattrs()
                if "onc_sensor_code" not in attrs:
                    continue
                sensors.append(
                    SensorInfo(
                        code=str(var.getncattr("onc_sensor_code")),
                        name=_opt_attr(var, "onc_sensor_name"),
                        unit=_opt_attr(var, "onc_unit"),
                        property_code=_opt_attr(var, "onc_property_code"),
                    )
                )
                flag_var = ds.variables[str(var.getncattr("ancillary_variables")).split()[0]]
                # One row per station; a record is on the row of its station only.
                values = np.asarray(var[:, :], dtype=np.float64)
                flags = np.asarray(flag_var[:, :], dtype=np.int8)
                row = np.argmax(flags != ABSENT_FLAG, axis=0)
                columns = np.arange(values.shape[1])
                rows_v.append(values[row, columns])
                rows_f.append(flags[row, columns])
            carried: dict[str, str] = {
                key: str(ds.getncattr(key))
                for key in ("date_created", "history")
                if key in ds.ncattrs()
            }
            carried[STATIONS_KEY] = _stations_text(
                [str(code) for code in netCDF4.chartostring(ds.variables["station"][:])],
                *(
                    np.asarray(ds.variables[n][:]).tolist()
                    for n in ("latitude", "longitude", "depth")
                ),
            )
    except (OSError, KeyError, ValueError, IndexError) as exc:
        raise OutputError(f"existing output {path} is unreadable: {exc}", path=str(path)) from exc
    if not sensors:
        return WideTable.empty(), carried
    return WideTable(times, sensors, np.vstack(rows_v), np.vstack(rows_f)), carried


# Not an attribute: the station variables of a file as read, to compare with what the writer
# would write now (a file from before stations were ONC locations is rewritten).
STATIONS_KEY = "\0stations"


def _stations_text(
    codes: Sequence[str], lats: Sequence[float], lons: Sequence[float], depths: Sequence[float]
) -> str:
    return ";".join(
        f"{c} {la!r} {lo!r} {d!r}" for c, la, lo, d in zip(codes, lats, lons, depths, strict=True)
    )


def _opt_attr(var: Any, name: str) -> str | None:
    return str(var.getncattr(name)) if name in var.ncattrs() else None


class NetcdfWindowWriter(MergedPartitionFile):
    """Merges one window's readings into its partition's NetCDF file."""

    def __init__(
        self,
        path: Path,
        meta: DatasetMeta,
        window: Window,
        partition: Partition,
        clock: Callable[[], datetime],
    ) -> None:
        self._path = path
        self._meta = meta
        self._partition = partition
        self._clock = clock
        self._carried: dict[str, str] = {}
        base: WideTable | None = None
        if path.exists():
            base, self._carried = read_netcdf_table(path)
        self._merger = ScalarMerger(epoch_ms(window.start), epoch_ms(window.end), base)
        self._flag_info: Mapping[str, str] = meta.qaqc_flag_info

    def note_page(self, qaqc_flag_info: Mapping[str, str]) -> None:
        """Use a page's own qaqcFlagInfo (metadata=full) for the flag attributes."""
        if qaqc_flag_info:
            self._flag_info = dict(qaqc_flag_info)

    def publish(self) -> PublishedFile | None:
        """Rewrite the partition file atomically; an unchanged file is left alone."""
        table = self._merger.merged()
        if table.record_count == 0:
            return None
        stations, rows = self._meta.stations_of(table.times)
        current = _stations_text(
            [s.code for s in stations],
            [s.latitude for s in stations],
            [s.longitude for s in stations],
            [s.depth for s in stations],
        )
        # A file whose station variables are not what we write now (written before stations
        # were ONC locations at a constant position) is rewritten even when its records are.
        stale = self._carried.get(STATIONS_KEY, current) != current
        if not stale and (unchanged := self.unchanged_file()) is not None:
            return unchanged
        position = self._meta.position_at(from_epoch_ms(int(table.times[0])))
        return publish_path_atomically(
            self._path, lambda tmp: self._write(tmp, table, position, stations, rows)
        )

    # ------------------------------------------------------------------ writing

    def _write(
        self,
        target: Path,
        table: WideTable,
        position: Position,
        stations: Sequence[Station],
        rows: np.ndarray[Any, Any],
    ) -> None:
        meta = self._meta
        flag_values, flag_meanings = _flag_table(self._flag_info)
        authority = meta.attributes.get("naming_authority", "ca.oceannetworks")
        strlen = max(len(s.code) for s in stations)
        with NETCDF_LOCK, netCDF4.Dataset(target, "w", format="NETCDF4") as ds:
            ds.set_auto_mask(False)
            ds.createDimension("time", len(table.times))
            # IOOS 1.2 wants the cf_role variable on a station dimension (length 1 unless a
            # device moved to another location inside the partition).
            ds.createDimension("station", len(stations))
            ds.createDimension("name_strlen", strlen)
            self._write_globals(ds, table, position, stations)

            time = ds.createVariable("time", "f8", ("time",))
            time.setncatts(
                {
                    "standard_name": "time",
                    "long_name": "Time",
                    "units": TIME_UNITS,
                    "calendar": "standard",
                    "axis": "T",
                    "ioos_category": "Time",
                }
            )
            time[:] = table.times / 1000.0

            station = ds.createVariable("station", "S1", ("station", "name_strlen"))
            first = stations[0]
            station.setncatts(
                {
                    "cf_role": "timeseries_id",
                    "long_name": f"{first.name} ({first.code})"
                    if len(stations) == 1
                    else "ONC location code",
                    "short_name": first.code,
                    "ioos_code": f"urn:ioos:station:{authority}:{first.code}",
                    "type": meta.attributes.get("platform", "fixed"),
                    "ioos_category": "Identifier",
                }
            )
            codes = np.array([s.code for s in stations], dtype=f"S{strlen}")
            station[:] = netCDF4.stringtochar(codes)

            self._axis(ds, "latitude", [s.latitude for s in stations], "degrees_north", "Y")
            self._axis(ds, "longitude", [s.longitude for s in stations], "degrees_east", "X")
            depth = self._axis(ds, "depth", [s.depth for s in stations], "m", "Z")
            depth.setncatts({"positive": "down", "long_name": "Instrument depth below sea surface"})

            for row, sensor in enumerate(table.sensors):
                self._sensor(ds, sensor, table, row, rows, flag_values, flag_meanings)

    def _axis(
        self, ds: netCDF4.Dataset, name: str, values: list[float], units: str, axis: str
    ) -> Any:
        var = ds.createVariable(name, "f8", ("station",))
        var.setncatts(
            {
                "standard_name": name,
                "long_name": name.capitalize(),
                "units": units,
                "axis": axis,
                "valid_min": np.float64(min(values)),
                "valid_max": np.float64(max(values)),
                "ioos_category": "Location",
            }
        )
        var[:] = values
        return var

    def _sensor(
        self,
        ds: netCDF4.Dataset,
        sensor: SensorInfo,
        table: WideTable,
        row: int,
        rows: np.ndarray[Any, Any],
        flag_values: np.ndarray[Any, np.dtype[np.int8]],
        flag_meanings: str,
    ) -> None:
        name = variable_name(sensor.code)
        if name in ds.variables or f"{name}_qc" in ds.variables:
            raise OutputError(
                f"sensor codes map to the same variable name {name!r}", path=str(self._path)
            )
        mapped = cf_name(sensor.property_code)
        prop = self._meta.properties.get((sensor.property_code or "").lower())
        units = udunits(sensor.unit) or udunits(prop.uom if prop else None)
        if units is None and mapped is not None:
            units = mapped.units
        long_name = sensor.name or (prop.name if prop else None) or sensor.code
        # Light compression: level 1 with byte shuffle shrinks slowly varying series well for
        # little CPU; the partition is rewritten whole, so higher levels cost every rewrite.
        var = ds.createVariable(
            name,
            "f8",
            ("station", "time"),
            fill_value=np.nan,
            zlib=True,
            complevel=1,
            shuffle=True,
        )
        # NaN is both fill and missing value: ERDDAP's recommendation for floating point.
        attrs: dict[str, Any] = {"long_name": long_name, "missing_value": np.nan}
        if mapped is not None:
            attrs["standard_name"] = mapped.standard_name
            attrs["standard_name_url"] = (
                f"https://vocab.nerc.ac.uk/standard_name/{mapped.standard_name}/"
            )
            if mapped.standard_name == "depth":
                # A measured depth is a vertical quantity too: CF wants its direction.
                attrs["positive"] = "down"
        if units is not None:
            attrs["units"] = units
        attrs.update(
            {
                "coordinates": "time latitude longitude depth",
                "ancillary_variables": f"{name}_qc",
                "platform": "station",
                # ACDD 1.3 asks for coverage_content_type; ERDDAP's docs say not to use it
                # for EDDTable datasets, so our datasets.xml entry removes it ("null").
                "coverage_content_type": "physicalMeasurement",
                "ioos_category": ioos_category(attrs.get("standard_name"), name),
                "onc_sensor_code": sensor.code,
            }
        )
        for key, value in (
            ("onc_sensor_name", sensor.name),
            ("onc_unit", sensor.unit),
            ("onc_property_code", sensor.property_code),
        ):
            if value is not None:
                attrs[key] = value
        var.setncatts(attrs)
        columns = np.arange(len(table.times))
        # A record goes on the row of its station; other rows stay fill (CF H.2.1).
        grid = np.full((int(rows.max()) + 1, len(table.times)), np.nan)
        grid[rows, columns] = table.values[row]
        var[:, :] = grid

        flags = ds.createVariable(
            f"{name}_qc",
            "i1",
            ("station", "time"),
            fill_value=np.int8(ABSENT_FLAG),
            zlib=True,
            complevel=1,
            shuffle=True,
        )
        flags.setncatts(
            {
                "long_name": f"{long_name} ONC QAQC flag",
                # The general CF name for quality information; the "X status_flag" modifier
                # form is deprecated since CF 1.7.
                "standard_name": "quality_flag",
                "flag_values": flag_values,
                "flag_meanings": flag_meanings,
                "coordinates": "time latitude longitude depth",
                "coverage_content_type": "qualityInformation",
                "ioos_category": "Quality",
            }
        )
        flag_grid = np.full(grid.shape, ABSENT_FLAG, dtype=np.int8)
        flag_grid[rows, columns] = table.flags[row]
        flags[:, :] = flag_grid

    def _write_globals(
        self,
        ds: netCDF4.Dataset,
        table: WideTable,
        position: Position,
        stations: Sequence[Station],
    ) -> None:
        meta = self._meta
        now = self._clock()
        start = from_epoch_ms(int(table.times[0]))
        end = from_epoch_ms(int(table.times[-1]))
        attrs: dict[str, Any] = dict(meta.attributes)
        lats = [s.latitude for s in stations]
        lons = [s.longitude for s in stations]
        depths = [s.depth for s in stations]
        line = meta.history_line(now, self._partition.start, self._partition.end)
        previous = self._carried.get("history", "").splitlines()
        # The first harvest and the latest one: enough provenance without growing per rewrite.
        history = [previous[0], line] if previous and previous[0] != line else [line]
        attrs.update(
            {
                "featureType": "timeSeries",
                "cdm_data_type": "TimeSeries",
                "cdm_timeseries_variables": "station,latitude,longitude,depth",
                "subsetVariables": "station,latitude,longitude,depth",
                "time_coverage_start": format_onc_time(start),
                "time_coverage_end": format_onc_time(end),
                "time_coverage_duration": _iso_duration(end - start),
                "geospatial_lat_min": min(lats),
                "geospatial_lat_max": max(lats),
                "geospatial_lat_units": "degrees_north",
                "geospatial_lon_min": min(lons),
                "geospatial_lon_max": max(lons),
                "geospatial_lon_units": "degrees_east",
                "geospatial_vertical_min": min(depths),
                "geospatial_vertical_max": max(depths),
                "geospatial_vertical_units": "m",
                "geospatial_vertical_positive": "down",
                "geospatial_bounds": f"POINT ({lats[0]} {lons[0]})",
                "geospatial_bounds_crs": "EPSG:4326",
                "geospatial_bounds_vertical_crs": "EPSG:5831",
                "date_created": self._carried.get("date_created", _iso(now)),
                "date_modified": _iso(now),
                "date_issued": _iso(now),
                "history": "\n".join(history),
                "onc_device_code": position.device_code,
                # Where the deployment of the first record really stood; the station
                # variables hold the location's constant position.
                "onc_deployment_latitude": position.latitude,
                "onc_deployment_longitude": position.longitude,
                "onc_deployment_depth": position.depth,
            }
        )
        attrs.setdefault("comment", _COMMENT)
        if len(table.times) > 1:
            step_ms = float(np.median(np.diff(table.times)))
            attrs["time_coverage_resolution"] = _iso_duration(timedelta(milliseconds=step_ms))
        if position.citation:
            attrs["citation"] = position.citation
        if position.doi:
            attrs["doi"] = position.doi
        if position.landing_page_url:
            attrs["references"] = position.landing_page_url
        ds.setncatts(attrs)


def _iso_duration(span: timedelta) -> str:
    seconds = span.total_seconds()
    return f"PT{seconds:.3f}S".replace(".000S", "S")


class NetcdfWriter(MergedTableWriter[NetcdfWindowWriter]):
    """The NetCDF output format: one CF DSG file per (dataset, partition)."""

    name = "netcdf"
    suffix = SUFFIX

    def __init__(
        self,
        metadata: Mapping[str, DatasetMeta],
        *,
        partition: PartitionKind = "daily",
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        super().__init__(metadata, partition=partition)
        self._clock = clock

    def _window_writer(
        self, path: Path, meta: DatasetMeta, window: Window, partition: Partition
    ) -> NetcdfWindowWriter:
        return NetcdfWindowWriter(path, meta, window, partition, self._clock)
