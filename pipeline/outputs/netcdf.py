"""CF-1.8 discrete-sampling-geometry NetCDF files (featureType=timeSeries), one per partition,
NetCDF-3 (64-bit offset, CDF-2) with an unlimited `time` dimension, grown by appending records.

Layout (CF H.2.1, orthogonal multidimensional array, one station): `time(time)` float64 seconds
since 1970-01-01T00:00:00Z on the unlimited dimension; `station(station)` (cf_role=
timeseries_id, the IOOS platform variable; a station dimension of length 1 as IOOS 1.2 asks),
`latitude(station)`, `longitude(station)`, `depth(station)` from the deployment active in the
partition; per sensor a float64 `<name>(time, station)` (NaN fill; ONC gap-fill rows stay NaN
with flag 9) with an int8 `<name>_qc(time, station)` ancillary flag variable. Flag variables
carry `flag_values`/`flag_meanings` built from ONC's qaqcFlagInfo. Global attributes follow
ACDD-1.3 and IOOS-1.2.

Why NetCDF-3 with time first: ERDDAP's advice for files that grow is "Best: NetCDF v3 files
with an unlimited time dimension, appended" (ERDDAP/erddap.github.io
docs/server-admin/datasets.md). In NetCDF-3 only the first dimension can be unlimited, so data
variables are `(time, station)`. CF 1.8 §9.3.1 allows it: in the orthogonal multidimensional
representation "the dimensions may be given in any order", and an unlimited element dimension
"must be the outer dimension". ERDDAP's EDDTableFromMultidimNcFiles reads the variables that
use the most dimensions, in whatever order, and joins the station variables to them. NetCDF-3
has no compression: a value takes its full 8 bytes (a flag 4, padded), more bytes than the
zlib'd NetCDF-4 files took, for less CPU per value and records that never move.

How a window reaches its partition file:
- Append (whenever it applies): the window's records whose times come after the file's last
  time are written as whole records after it; records at times the file already has are
  compared and, when equal, cost nothing; the header's changing attributes (time_coverage_end,
  date_modified, ...) are overwritten in place when the new value takes the same bytes; then
  numrecs (see `nc3.write_change` for the order). Records a reader can already see never change in
  place.
- Rewrite (otherwise: no file yet, a revision (a lookback found a new value or flag, or a
  reading for a time the file has without it), a time between existing ones that is not
  there, a new sensor or station, changed variable metadata, an attribute that no longer
  fits, a NetCDF-4 file from an earlier version, which is thereby migrated): the window
  merges with the file's records and the partition is written whole under a temporary name
  and renamed.
Both give the same file: an append writes exactly what a rewrite of the merged records would.

netCDF4 (the Unidata binding of netcdf-c) defines the file (dimensions, attributes, station
variables; a dataset's next partition in the same process reuses that definition with its
global attributes' new values patched in, when each keeps its size: `_Rendering`);
the records are written by `nc3`, ours, whole records in slices of about a MiB:
netcdf-c writes classic record variables one variable at a time, a strided pass over the
file per variable.
"""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import netCDF4
import numpy as np

from pipeline.exceptions import OutputError
from pipeline.outputs import nc3
from pipeline.outputs.cf_names import (
    cf_name,
    flag_meaning_word,
    ioos_category,
    udunits,
    variable_name,
)
from pipeline.outputs.growth import AsRead, FileAsRead, Lru, StatCache, locked, place
from pipeline.outputs.metadata import Position, Station, onc_sensor_attributes
from pipeline.outputs.publish import HashingSink, publish_atomically, sha256_of
from pipeline.outputs.table import (
    ABSENT_FLAG,
    GrowingPartitionFile,
    MergedTableWriter,
    TableTarget,
    WideTable,
)
from pipeline.records import PublishedFile, SensorInfo
from pipeline.times import format_onc_time, from_epoch_ms

SUFFIX = ".nc"
# ACDD 1.3 recommends `comment`; output.attributes may set its own.
_COMMENT = (
    "Harvested by onc-pipeline. The station is the ONC location code and latitude, longitude "
    "and depth are the location's position; where each deployment stood is in "
    "onc_deployment_* (first record of the file) and at ONC's deployments service."
)
TIME_UNITS = "seconds since 1970-01-01T00:00:00Z"


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
    """The records of a file this writer made (either format), and the global attributes to
    carry over."""
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
                if var.dimensions[0] == "time":
                    # NetCDF-3 files hold (time, station); NetCDF-4 ones (station, time).
                    values, flags = values.T, flags.T
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


def _station_key(stations: Sequence[Station]) -> str:
    return _stations_text(
        [s.code for s in stations],
        [s.latitude for s in stations],
        [s.longitude for s in stations],
        [s.depth for s in stations],
    )


def _attribute_changes(
    header: nc3.Header, attributes: Mapping[str, Any]
) -> list[tuple[nc3.Attribute, bytes]] | None:
    """The global attributes whose values, encoded as the header stores them, differ from
    their bytes there, with those encodings; None when one is not in the header (netCDF
    normalises names to NFC) or no longer fits the bytes it has. Bytes, not values, are
    compared: -0.0 is not 0.0, nor one NaN another, in the file."""
    changes: list[tuple[nc3.Attribute, bytes]] = []
    for key, value in attributes.items():
        attr = header.attributes.get(key)
        encoded = None if attr is None else nc3.encode_attribute(attr, value)
        if attr is None or encoded is None:
            return None
        if encoded != header.stored(attr.nelems_offset, len(encoded)):
            changes.append((attr, encoded))
    return changes


def _same(stored: Any, wanted: Any) -> bool:
    """True when an attribute as stored equals the value a rewrite would give it."""
    if isinstance(stored, str) or isinstance(wanted, str):
        return isinstance(stored, str) and isinstance(wanted, str) and stored == wanted
    a = np.atleast_1d(np.asarray(stored, dtype=np.float64))
    b = np.atleast_1d(np.asarray(wanted, dtype=np.float64))
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


class _FileSensor(NamedTuple):
    """A sensor's variables in an existing classic file: its value and flag variables."""

    info: SensorInfo
    var: str
    qc: str


@dataclass(frozen=True, slots=True)
class _Described:
    """What a classic partition's header says of it, as this process last read the file or
    appended to it: kept between windows (`Known`, while the file's inode, size and
    modification time are what they were then), so a near-real-time poll neither parses the
    header again nor counts the records already there."""

    inode: int
    header: nc3.Header
    sensors: list[_FileSensor]
    carried: dict[str, str]
    record_count: int  # (time, sensor) records the file holds


# One per dataset folder (the partition each dataset is growing), 256 folders at most: an
# entry holds about 77 KB for 8 sensors (the header's bytes and attributes parsed).
KNOWN_FOLDERS = 256
Known = StatCache[_Described]


@dataclass(frozen=True, slots=True)
class _Classic:
    """An existing partition file in the classic format: its header, records (mapped from
    disk), times, sensors, and what a rewrite would carry over from it."""

    described: _Described
    records: Any  # numpy structured memmap, one element per record
    times: np.ndarray[Any, np.dtype[np.int64]]

    @property
    def inode(self) -> int:
        """The inode of the file the header was read from."""
        return self.described.inode

    @property
    def header(self) -> nc3.Header:
        """The header as read (or as this process's last append left it)."""
        return self.described.header

    @property
    def sensors(self) -> list[_FileSensor]:
        """The sensors' variables, in file order."""
        return self.described.sensors

    @property
    def carried(self) -> dict[str, str]:
        """What a rewrite carries over: `date_created`, `history`, the station variables."""
        return self.described.carried

    @classmethod
    def open(cls, path: Path, known: Known | None = None) -> _Classic | None:
        """The file, or None when it is not a classic file laid out as this writer lays it
        out (a NetCDF-4 file from an earlier version, a foreign file): such a file is read
        by netCDF4 and rewritten whole. So is one our reader cannot make sense of: netCDF4
        either reads it (and the rewrite repairs it) or says what is wrong with it. Its
        header is taken from `known` while the file is as it was when it was kept there."""
        try:
            described = known.get(path) if known is not None else None
            if described is None:
                # Taken before the header: a file changed meanwhile is not kept under the
                # identity of what was read, and a file renamed over it fails `still`.
                seen = os.stat(path)
                found = _describe(path, seen.st_ino)
                if found is None:
                    return None
                described, records = found
                if known is not None:
                    known.put(path, described, seen=seen)
            else:
                records = nc3.read_records(path, described.header)
        except (nc3.NotClassicError, ValueError, IndexError, KeyError, struct.error):
            return None  # UnicodeDecodeError is a ValueError
        seconds = np.asarray(records["time"], dtype=np.float64)
        times = np.rint(seconds * 1000.0).astype(np.int64)
        return cls(described, records, times)

    def still(self, fd: int, stat: os.stat_result) -> bool:
        """True when the file open at `fd` is this one (`growth.locked`): same inode, header
        byte for byte, records all there. Not its length: bytes a crashed append left past
        the records are cut by the next append."""
        return stat.st_ino == self.inode and nc3.still_as_read(fd, self.header)

    def record_count(self) -> int:
        """(time, sensor) records the file holds."""
        return self.described.record_count


def _describe(path: Path, inode: int) -> tuple[_Described, Any] | None:
    """What the classic file at `path` says of its sensors, stations and records, and its
    records (mapped from disk); None when it is not laid out as this writer lays files out."""
    header = nc3.read_header(path)
    time = header.variables.get("time")
    if time is None or not header.is_record(time):
        return None
    if not {"station", "latitude", "longitude", "depth"} <= header.variables.keys():
        return None
    sensors: list[_FileSensor] = []
    for var in header.variables.values():
        code = var.attributes.get("onc_sensor_code")
        ancillary = var.attributes.get("ancillary_variables")
        if code is None:
            continue
        qc = str(header.value(ancillary)).split()[0] if ancillary else ""
        qc_var = header.variables.get(qc)
        if qc_var is None or not (header.is_record(var) and header.is_record(qc_var)):
            return None

        def text(name: str, attrs: dict[str, nc3.Attribute] = var.attributes) -> str | None:
            return str(header.value(attrs[name])) if name in attrs else None

        info = SensorInfo(
            code=str(header.value(code)),
            name=text("onc_sensor_name"),
            unit=text("onc_unit"),
            property_code=text("onc_property_code"),
        )
        sensors.append(_FileSensor(info, var.name, qc))
    codes = nc3.read_fixed(path, header, "station")
    stations = _stations_text(
        [b"".join(row).rstrip(b"\0").decode("utf-8") for row in codes.tolist()],
        *(nc3.read_fixed(path, header, n).tolist() for n in ("latitude", "longitude", "depth")),
    )
    records = nc3.read_records(path, header)
    count = sum(int(np.count_nonzero(np.asarray(records[s.qc]) != ABSENT_FLAG)) for s in sensors)
    return _Described(inode, header, sensors, _carried(header, stations), count), records


def _carried(header: nc3.Header, stations: str) -> dict[str, str]:
    """What a rewrite of the file carries over from `header`, and its station variables."""
    carried: dict[str, str] = {
        key: str(header.value(header.attributes[key]))
        for key in ("date_created", "history")
        if key in header.attributes
    }
    carried[STATIONS_KEY] = stations
    return carried


@dataclass(frozen=True, slots=True)
class _Append:
    """How a window goes into its classic file in place: what to write, the records the file
    then holds, and whether existing records change."""

    change: nc3.RecordWrite
    records: int
    replaced: bool
    # The global attributes the change patches, with their new bytes (`_attribute_changes`).
    attributes: list[tuple[nc3.Attribute, bytes]] = field(default_factory=list)

    @property
    def adds(self) -> bool:
        """True when records are appended."""
        return bool(self.change.appended)


def _kinds(attributes: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Each attribute's name and the kind of value netCDF4 is given (which sets its type)."""
    return [(key, _kind(value)) for key, value in attributes.items()]


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return "str"
    array = np.asarray(value)
    return f"{array.dtype.str}{array.ndim}"


class _Layout(NamedTuple):
    """What a rendering's bytes depend on besides the global attributes' values: the station
    variables (their width and values) and every variable's attributes."""

    strlen: int
    stations: tuple[tuple[str, bytes], ...]
    variables: dict[str, dict[str, Any]]

    @classmethod
    def of(
        cls, strlen: int, stations: Sequence[Station], variables: dict[str, dict[str, Any]]
    ) -> _Layout:
        # Positions as their bytes: -0.0 is not 0.0 in the file, nor one NaN another.
        return cls(
            strlen,
            tuple(
                (s.code, np.array([s.latitude, s.longitude, s.depth], dtype=np.float64).tobytes())
                for s in stations
            ),
            variables,
        )

    def same_as(self, other: _Layout) -> bool:
        return (
            self.strlen == other.strlen
            and self.stations == other.stations
            and list(self.variables) == list(other.variables)
            and all(
                _kinds(attrs) == _kinds(other.variables[name])
                and all(
                    _identical(value, other.variables[name][key]) for key, value in attrs.items()
                )
                for name, attrs in self.variables.items()
            )
        )


def _identical(a: Any, b: Any) -> bool:
    """Values of one kind (`_kind`) that netCDF4 would store as the same bytes."""
    if isinstance(a, str) or isinstance(b, str):
        return isinstance(a, str) and isinstance(b, str) and a == b
    return np.asarray(a).tobytes() == np.asarray(b).tobytes()


@dataclass(frozen=True, slots=True)
class _Rendering:
    """A file's bytes up to its records as netCDF4 rendered them, for the layout and the
    kinds of global attributes it had."""

    layout: _Layout
    kinds: list[tuple[str, str]]
    header: nc3.Header
    head: bytes

    def patched(
        self, layout: _Layout, attributes: Mapping[str, Any]
    ) -> tuple[nc3.Header, bytearray] | None:
        """This rendering with the global `attributes` patched in (the header and the file
        up to its records), when only their values differ and each keeps the size it has
        here: then every byte lies where netCDF4 would put it. None otherwise."""
        if _kinds(attributes) != self.kinds or not layout.same_as(self.layout):
            return None
        changes = _attribute_changes(self.header, attributes)
        if changes is None:
            return None
        header = self.header.after(changes)
        # The head begins with the header's bytes: the patched ones, then the rest as kept.
        head = bytearray(header.raw)
        head += memoryview(self.head)[header.size :]
        return header, head


# netCDF4 takes 10 - 15 ms to define a partition's header (its dimensions, 20 variables and
# 300 attributes); a dataset's next partition usually differs in a few global attributes.
# The last rendering of each dataset folder in this process (any thread's), the least
# recently used forgotten past 256 folders (a few tens of KB each).
_RENDERED: Lru[Path, _Rendering] = Lru(256)


class NetcdfWindowWriter(GrowingPartitionFile[_Append]):
    """Merges one window's readings into its partition's NetCDF file: appended in place when
    the window only adds records after the file's last time (or repeats existing ones), the
    partition rewritten whole otherwise."""

    def __init__(self, target: TableTarget, known: Known | None = None) -> None:
        super().__init__(target)
        path = target.path
        # Partitions as this process last read or appended to them (the writer's, shared by
        # its windows).
        self._known = known if known is not None else Known(KNOWN_FOLDERS)
        self._carried: dict[str, str] = {}
        self._classic: _Classic | None = None
        # The file as this window read it: its append or rewrite goes ahead only while the
        # file is still that one (`growth.locked`, which the text formats' appends hold too).
        self._as_read: AsRead | None = None
        base: WideTable | None = None
        if path.exists():
            self._classic = _Classic.open(path, self._known)
            if self._classic is None:
                stat = os.stat(path)  # a NetCDF-4 file of an earlier version, read whole
                self._as_read = FileAsRead(stat.st_ino, stat.st_size)
                base, self._carried = read_netcdf_table(path)
            else:
                self._as_read = self._classic
                self._carried = self._classic.carried
        # Over a classic file the merger holds the window alone; the file's records are read
        # (`_rebased`) only when the window cannot be appended.
        self._merger = self._new_merger(base)
        self._start_growth()

    def note_page(self, qaqc_flag_info: Mapping[str, str]) -> None:
        """Use a page's own qaqcFlagInfo (metadata=full) for the flag attributes."""
        super().note_page(qaqc_flag_info)
        if qaqc_flag_info:
            self._forget_plan()

    @property
    def _growing(self) -> bool:
        return self._classic is not None

    def _existing_records(self) -> int:
        assert self._classic is not None
        return self._classic.record_count()

    def _read_records(self) -> WideTable:
        return read_netcdf_table(self._path)[0]

    def publish(self) -> PublishedFile | None:
        """Append the window to its partition file in place when it can, else rewrite the
        partition atomically; an unchanged file is left alone."""
        if self._classic is not None:
            plan = self._plan()
            if plan is not None:
                return self._publish_append(plan)
            table = self._rebased().merged()
            changed = not table.same_as(self._rebased().base)
        else:
            table = self._merger.merged()
            changed = not table.same_as(self._merger.base)
        if table.record_count == 0:
            return None
        stations, rows = self._meta.stations_of(table.times)
        # A file whose station variables are not what we write now (written before stations
        # were ONC locations at a constant position) is rewritten even when its records are.
        stale = self._carried.get(STATIONS_KEY, _station_key(stations)) != _station_key(stations)
        if not stale and not changed and self._path.exists():
            size, digest = sha256_of(self._path)
            return PublishedFile(self._path, size, digest, replaced=False)
        position = self._meta.position_at(from_epoch_ms(int(table.times[0])))

        def rewrite() -> PublishedFile:
            header, head = self._header(table, position, stations)
            return publish_atomically(
                self._path, lambda sink: self._write(sink, header, head, table, stations, rows)
            )

        # Forgotten first: the file is replaced, or the rewrite is refused (see the append).
        self._known.forget(self._path)
        if self._as_read is None:
            return rewrite()
        with locked(self._path, self._as_read, write=False):
            return rewrite()

    # ------------------------------------------------------------------ appending

    def _make_plan(self, window: WideTable) -> _Append | None:
        """What appending `window` in place writes, or None when the file must be rewritten."""
        classic = self._classic
        assert classic is not None
        by_code = {s.info.code: s for s in classic.sensors}
        if any(s.code not in by_code for s in window.sensors):
            return None  # a new sensor: new variables, a new header
        known = classic.times
        n = len(known)
        times = window.times
        placement = place(known, times)
        if placement is None:
            return None  # a time between existing records (or before them) that is not there
        idx, equal, later = placement.index, placement.equal, placement.later
        all_times = np.concatenate([known, times[later]])
        if len(all_times) == 0:
            return None
        stations, rows = self._meta.stations_of(all_times)
        if _station_key(stations) != classic.carried[STATIONS_KEY]:
            return None  # a new station, or station variables that are stale

        records = classic.records
        window_row = {s.code: i for i, s in enumerate(window.sensors)}
        added = 0
        # (record index, station row, variable, flag variable, value, flag) for revisions.
        revised: list[tuple[Any, Any, str, str, Any, Any]] = []
        for code, r in window_row.items():
            sensor = by_code[code]
            flags = window.flags[r]
            here = equal & (flags != ABSENT_FLAG)
            at = idx[here]
            station = rows[at]
            old_v = np.asarray(records[sensor.var][at, station], dtype=np.float64)
            old_f = np.asarray(records[sensor.qc][at, station], dtype=np.int8)
            new_v = window.values[r][here]
            new_f = flags[here]
            differs = (old_f != new_f) | ~((old_v == new_v) | (np.isnan(old_v) & np.isnan(new_v)))
            added += int(np.count_nonzero(old_f == ABSENT_FLAG))
            added += int(np.count_nonzero(later & (flags != ABSENT_FLAG)))
            if np.any(differs):
                revised.append(
                    (
                        at[differs],
                        station[differs],
                        sensor.var,
                        sensor.qc,
                        new_v[differs],
                        new_f[differs],
                    )
                )
        if revised:
            # A revision (a lookback found a new value or flag, or a reading for a time the
            # file has without it) goes into records a reader can see: written in place it
            # could be read half old, half new. Revisions are rare: the partition is
            # rewritten, atomically.
            return None
        change = nc3.RecordWrite()
        count = int(np.count_nonzero(later))
        if count:
            columns = []
            for sensor in classic.sensors:
                at_row = window_row.get(sensor.info.code)
                if at_row is None:
                    columns.append(
                        (
                            sensor.var,
                            sensor.qc,
                            np.full(count, np.nan),
                            np.full(count, ABSENT_FLAG, np.int8),
                        )
                    )
                else:
                    columns.append(
                        (
                            sensor.var,
                            sensor.qc,
                            window.values[at_row][later],
                            window.flags[at_row][later],
                        )
                    )
            change.appended = list(
                _record_blocks(classic.header, times[later], columns, rows[n:], len(stations))
            )
            change.appended_count = count
        records_after = self._existing_records() + added
        if change.empty:
            return _Append(change, records_after, replaced=False)
        changes = self._header_changes(all_times, stations, window)
        if changes is None:
            return None
        for attr, encoded in changes:
            # Only the bytes that differ: the header read at open is what is on disk.
            change.attribute_patches += classic.header.changed_spans(attr.nelems_offset, encoded)
        return _Append(change, records_after, replaced=False, attributes=changes)

    def _header_changes(
        self, times: np.ndarray[Any, Any], stations: Sequence[Station], window: WideTable
    ) -> list[tuple[nc3.Attribute, bytes]] | None:
        """The global attributes to update in place (with their new bytes) so the header
        holds exactly the attributes a rewrite of the merged records would write; None when
        one does not fit in the bytes it has, or a variable's attributes changed."""
        classic = self._classic
        assert classic is not None
        header = classic.header
        window_info = {s.code: s for s in window.sensors}
        sensors = [_merged_info(s.info, window_info.get(s.info.code)) for s in classic.sensors]
        wanted = self._variable_attributes(stations, sensors)
        if set(wanted) != set(header.variables):
            return None
        for name, attrs in wanted.items():
            stored = header.variables[name].attributes
            if set(attrs) != set(stored) or not all(
                _same(header.value(stored[key]), value) for key, value in attrs.items()
            ):
                return None  # variable metadata changed: rewrite
        position = self._meta.position_at(from_epoch_ms(int(times[0])))
        attrs = self._global_attributes(times, position, stations)
        if set(attrs) != set(header.attributes):
            return None
        return _attribute_changes(header, attrs)

    def _publish_append(self, plan: _Append) -> PublishedFile:
        classic = self._classic
        assert classic is not None
        if plan.change.empty:
            size, digest = sha256_of(self._path)
            return PublishedFile(self._path, size, digest, replaced=False)
        # Forgotten first, whatever comes: a refused or failed publish never leaves a header
        # kept for the retry to take again (were the file's identity to miss a change: a
        # file system with coarse modification times).
        self._known.forget(self._path)
        with locked(self._path, classic, write=True) as fd:
            try:
                nc3.write_change(fd, classic.header, plan.change)
                # The manifest records the digest of the file as it stands, hashed under the
                # lock so no other writer's append is in it: hashing reads the file (from the
                # page cache, writing nothing), the one per-append cost that grows with the
                # partition.
                size, digest = sha256_of(self._path)
                # The header as written, for the next window (under the lock: no other
                # writer's append is in the identity it is kept under).
                described = classic.described
                header = described.header.after(plan.attributes, plan.change.appended_count)
                after = replace(
                    described,
                    header=header,
                    carried=_carried(header, described.carried[STATIONS_KEY]),
                    record_count=plan.records,
                )
                self._known.put(self._path, after, seen=os.fstat(fd))
            except OSError as exc:
                raise OutputError(
                    f"cannot append to {self._path}: {exc.strerror or exc}",
                    path=str(self._path),
                ) from exc
        return PublishedFile(self._path, size, digest, replaced=plan.replaced)

    # ------------------------------------------------------------------ writing

    def _header(
        self, table: WideTable, position: Position, stations: Sequence[Station]
    ) -> tuple[nc3.Header, bytearray]:
        """The file up to its records, and its parsed header: header and station variables,
        rendered by netCDF4 in memory (`NC_INMEMORY`: nothing on disk until the whole file is
        written), kept as a file written on disk holds them (`nc3.fixed_part`); or, when the
        dataset's last rendering differs only in global attribute values that keep their sizes
        (the next day of a backfill: its time coverage and history), that rendering
        with those values patched in, byte for byte what netCDF4 would render."""
        strlen = max(len(s.code) for s in stations)
        variables = self._variable_attributes(stations, table.sensors)
        attributes = self._global_attributes(table.times, position, stations)
        layout = _Layout.of(strlen, stations, variables)
        folder = self._path.parent
        reused = _RENDERED.get(folder)
        if reused is not None:
            patched = reused.patched(layout, attributes)
            if patched is not None:
                return patched
        with NETCDF_LOCK:
            ds = netCDF4.Dataset(self._path.name, "w", format="NETCDF3_64BIT_OFFSET", memory=1)
            try:
                ds.set_auto_mask(False)
                # Every value is written below: no fill pass first.
                ds.set_fill_off()
                # The unlimited dimension must be the first of every variable using it (NetCDF-3).
                ds.createDimension("time", None)
                # IOOS 1.2 wants the cf_role variable on a station dimension (length 1 unless a
                # device moved to another location inside the partition).
                ds.createDimension("station", len(stations))
                ds.createDimension("name_strlen", strlen)
                ds.setncatts(attributes)
                for name, attrs in variables.items():
                    fill = attrs.get("_FillValue")
                    attrs = {k: v for k, v in attrs.items() if k != "_FillValue"}
                    if name == "time":
                        var = ds.createVariable(name, "f8", ("time",))
                    elif name == "station":
                        var = ds.createVariable(name, "S1", ("station", "name_strlen"))
                        codes = np.array([s.code for s in stations], dtype=f"S{strlen}")
                        var[:] = netCDF4.stringtochar(codes)
                    elif name in ("latitude", "longitude", "depth"):
                        var = ds.createVariable(name, "f8", ("station",))
                        var[:] = [getattr(s, name) for s in stations]
                    elif (
                        name.endswith("_qc")
                        and fill is not None
                        and np.asarray(fill).dtype == np.int8
                    ):
                        var = ds.createVariable(name, "i1", ("time", "station"), fill_value=fill)
                    else:
                        var = ds.createVariable(name, "f8", ("time", "station"), fill_value=fill)
                    var.setncatts(attrs)
            except BaseException:
                with contextlib.suppress(Exception):  # the error above is the one to report
                    ds.close()
                raise
            image = ds.close()
        header = nc3.parse_header(bytes(image))
        if header.numrecs:
            raise OutputError(
                f"netCDF4 rendered records for {self._path} before any", path=str(self._path)
            )
        head = nc3.fixed_part(header, image)
        _RENDERED.keep(folder, _Rendering(layout, _kinds(attributes), header, bytes(head)))
        return header, head

    def _write(
        self,
        sink: HashingSink,
        header: nc3.Header,
        head: bytearray,
        table: WideTable,
        stations: Sequence[Station],
        rows: np.ndarray[Any, Any],
    ) -> None:
        """The whole file: `head` with its record count, then the records, a slice at a time."""
        columns = [
            (variable_name(s.code), f"{variable_name(s.code)}_qc", table.values[i], table.flags[i])
            for i, s in enumerate(table.sensors)
        ]
        head[nc3.NUMRECS_OFFSET : nc3.NUMRECS_OFFSET + 4] = struct.pack(">I", len(table.times))
        sink.write(head)
        for block in _record_blocks(header, table.times, columns, rows, len(stations)):
            sink.write(block)

    def _variable_attributes(
        self, stations: Sequence[Station], sensors: Sequence[SensorInfo]
    ) -> dict[str, dict[str, Any]]:
        """Every variable's attributes (`_FillValue` included), in file order."""
        meta = self._meta
        authority = meta.attributes.get("naming_authority", "ca.oceannetworks")
        first = stations[0]
        variables: dict[str, dict[str, Any]] = {
            "time": {
                "standard_name": "time",
                "long_name": "Time",
                "units": TIME_UNITS,
                "calendar": "standard",
                "axis": "T",
                "ioos_category": "Time",
            },
            "station": {
                "cf_role": "timeseries_id",
                "long_name": f"{first.name} ({first.code})"
                if len(stations) == 1
                else "ONC location code",
                "short_name": first.code,
                "ioos_code": f"urn:ioos:station:{authority}:{first.code}",
                "type": meta.attributes.get("platform", "fixed"),
                "ioos_category": "Identifier",
            },
        }
        for name, units, axis in (
            ("latitude", "degrees_north", "Y"),
            ("longitude", "degrees_east", "X"),
            ("depth", "m", "Z"),
        ):
            values = [float(getattr(s, name)) for s in stations]
            variables[name] = {
                "standard_name": name,
                "long_name": name.capitalize(),
                "units": units,
                "axis": axis,
                "valid_min": np.float64(min(values)),
                "valid_max": np.float64(max(values)),
                "ioos_category": "Location",
            }
        variables["depth"].update(
            {"positive": "down", "long_name": "Instrument depth below sea surface"}
        )
        flag_values, flag_meanings = _flag_table(self._flag_info)
        for sensor in sensors:
            name = variable_name(sensor.code)
            if name in variables or f"{name}_qc" in variables:
                raise OutputError(
                    f"sensor codes map to the same variable name {name!r}", path=str(self._path)
                )
            data, flags = self._sensor_attributes(sensor, name, flag_values, flag_meanings)
            variables[name] = data
            variables[f"{name}_qc"] = flags
        return variables

    def _sensor_attributes(
        self,
        sensor: SensorInfo,
        name: str,
        flag_values: np.ndarray[Any, np.dtype[np.int8]],
        flag_meanings: str,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        mapped = cf_name(sensor.property_code)
        prop = self._meta.properties.get((sensor.property_code or "").lower())
        units = udunits(sensor.unit) or udunits(prop.uom if prop else None)
        if units is None and mapped is not None:
            units = mapped.units
        long_name = sensor.name or (prop.name if prop else None) or sensor.code
        # NaN is both fill and missing value: ERDDAP's recommendation for floating point.
        attrs: dict[str, Any] = {
            "_FillValue": np.float64(np.nan),
            "long_name": long_name,
            "missing_value": np.nan,
        }
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
        attrs.update(onc_sensor_attributes(sensor))
        flags = {
            "_FillValue": np.int8(ABSENT_FLAG),
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
        return attrs, flags

    def _global_attributes(
        self,
        times: np.ndarray[Any, Any],
        position: Position,
        stations: Sequence[Station],
    ) -> dict[str, Any]:
        """The file's global attributes for records at `times` (sorted epoch ms)."""
        meta = self._meta
        now = self._clock()
        start = from_epoch_ms(int(times[0]))
        end = from_epoch_ms(int(times[-1]))
        attrs: dict[str, Any] = dict(meta.attributes)
        lats = [s.latitude for s in stations]
        lons = [s.longitude for s in stations]
        depths = [s.depth for s in stations]
        line = meta.history_line(now, self._partition.start, self._partition.end)
        previous = self._carried.get("history", "").splitlines()
        # The first harvest and the latest one: enough provenance without growing per rewrite.
        # Two lines from the first harvest on (the same line twice at creation): the attribute
        # keeps its length, so later harvests update it in place instead of rewriting the
        # partition (a 200-stream near-real-time run rewrote every partition at its second
        # harvest). A file with one line, from an earlier version, is rewritten once.
        history = [previous[0], line] if previous else [line, line]
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
        if len(times) > 1:
            step_ms = float(np.median(np.diff(times)))
            attrs["time_coverage_resolution"] = _iso_duration(timedelta(milliseconds=step_ms))
        if position.citation:
            attrs["citation"] = position.citation
        if position.doi:
            attrs["doi"] = position.doi
        if position.landing_page_url:
            attrs["references"] = position.landing_page_url
        return attrs


def _merged_info(known: SensorInfo, latest: SensorInfo | None) -> SensorInfo:
    """A sensor's metadata as a merge keeps it: the latest page wins, never erasing."""
    if latest is None:
        return known
    return SensorInfo(
        code=known.code,
        name=latest.name or known.name,
        unit=latest.unit or known.unit,
        property_code=latest.property_code or known.property_code,
    )


#: Bytes of records rendered at a time. A file is built and written a slice at a time, so
#: building it holds one slice beside the table, not a second copy of the whole file (a day of
#: an 8-sensor 1 Hz CTD is 9 MB of records). A slice stays under the allocator's mmap
#: threshold (`pipeline.allocator`): its memory comes from the heap, reused slice after slice
#: instead of faulted in afresh.
RECORD_SLICE_BYTES = 1 << 20


def _record_blocks(
    header: nc3.Header,
    times: np.ndarray[Any, Any],
    columns: Sequence[tuple[str, str, np.ndarray[Any, Any], np.ndarray[Any, Any]]],
    rows: np.ndarray[Any, Any],
    station_count: int,
) -> Iterator[memoryview]:
    """Whole records for `times` (epoch ms), in order, `RECORD_SLICE_BYTES` at most at a
    time (at least one record): each (variable, flag variable, values, flags) column on the
    row of its record's station, fill elsewhere (CF H.2.1). Each slice is a byte view of a
    record array of its own, written as it is: a caller that drops it before asking for the
    next holds about one slice at a time (a record bigger than the slice is a slice alone)."""
    step = max(1, RECORD_SLICE_BYTES // header.recsize)
    dtype = header.record_dtype()
    for start in range(0, len(times), step):
        end = min(start + step, len(times))
        count = end - start
        block = np.zeros(count, dtype=dtype)
        block["time"] = times[start:end] / 1000.0
        at, on = np.arange(count), rows[start:end]
        for var, qc, values, flags in columns:
            if station_count == 1:
                # Every record on the one station's row: the column as it is, nothing to fill.
                block[var] = values[start:end].reshape(block[var].shape)
                block[qc] = flags[start:end].reshape(block[qc].shape)
                continue
            grid = np.full((count, station_count), np.nan)
            grid[at, on] = values[start:end]
            block[var] = grid
            flag_grid = np.full((count, station_count), ABSENT_FLAG, dtype=np.int8)
            flag_grid[at, on] = flags[start:end]
            block[qc] = flag_grid
        yield block.view(np.uint8).data


def _iso_duration(span: timedelta) -> str:
    # Always three decimals, so the value mostly keeps its padded length as a partition grows
    # (PT10.000S to PT86399.000S all take 12 header bytes) and appends update it in place; it
    # outgrows its slot at 10 s and at 100,000 s (28 h, in a monthly file), each a rewrite once.
    return f"PT{span.total_seconds():.3f}S"


class NetcdfWriter(MergedTableWriter[NetcdfWindowWriter]):
    """The NetCDF output format: one CF DSG file per (dataset, partition)."""

    name = "netcdf"
    suffix = SUFFIX
    window_writer = NetcdfWindowWriter

    @functools.cached_property
    def _known(self) -> Known:
        """The partitions this writer's windows read or appended to, kept between windows."""
        return Known(KNOWN_FOLDERS)

    def _window_writer(self, target: TableTarget) -> NetcdfWindowWriter:
        return NetcdfWindowWriter(target, self._known)
