"""What we hold, read cheaply from the state store and the output folder (no API call).

Held spans are the manifest's entries whose file is still on disk: a file's entry carries its
time range (a partition file its partition's, a JSON Lines or archive file its own), so one
`list_manifest` and one `stat` per file answer "what do we hold" without opening any file.
Measured in benchmarks/coverage_bench.py. The per-record truth inside a file (NaN/flag 9
fill rows) is not read here: ONC's own account (`sources.py`) says where it had nothing.

Per sensor (scalardata only): which sensors each held file holds, read from the file itself
because the manifest does not carry them: a NetCDF file's variables with `onc_sensor_code`
(the header only), a Parquet file's columns with that key in their metadata (the footer only),
a CSV file's first line, a JSON Lines file's `sensorCode` fields (the whole
file: it has no header). A file is read once per (size, mtime) and remembered, so a daemon
reads each file once; `coverage` reads each once per run. A partition file (NetCDF, CSV,
Parquet) answers per file: a sensor absent from one window of a partition that has it
elsewhere is not seen (its cells are empty, and only the header is read). Sensors are named as
the CSV, NetCDF and Parquet files name their columns (`outputs.netcdf.variable_name` of the
sensor code), so the formats of one stream agree.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from pipeline.coverage.model import Quarantined, Span, merge
from pipeline.exceptions import OutputError
from pipeline.outputs.cf_names import variable_name
from pipeline.settings import ArchiveFileStream, StreamSettings
from pipeline.state.base import ManifestEntry, QuarantineRecord, StreamRecord

log = structlog.get_logger(__name__)

# `window:20261124T000000Z_20261125T000000Z` and `product:...` keys name their span.
_LABEL = re.compile(r"(\d{8}T\d{6}Z)_(\d{8}T\d{6}Z)")
# ONC archive file names carry their start: `ICLISTENHF1560_20240109T120200.000Z.wav`.
_FILE_START = re.compile(r"_(\d{8}T\d{6})(?:\.(\d{3}))?Z")
# A quarantined archive file's end is unknown from the state: it spans up to the next held
# file, at most this long.
QUARANTINED_FILE_MAX = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class Held:
    """One stream's held spans, quarantined spans and progress."""

    stream: str
    held: list[Span]
    quarantined: list[Quarantined]
    cursor: datetime | None
    last_success: datetime | None
    last_error: str | None
    last_error_at: datetime | None
    files: int
    files_absent: int
    # Scalardata only: each sensor seen in a held file, and the spans of the files holding it.
    sensors: dict[str, list[Span]] = field(default_factory=dict)


def data_cursor(stream: StreamSettings, record: StreamRecord | None) -> datetime | None:
    """The data time the harvester has reached. An archive stream's cursor is on archive
    time; the files it took began before the cursor minus `safety_lag`."""
    if record is None or record.cursor_time is None:
        return None
    if isinstance(stream, ArchiveFileStream):
        return record.cursor_time - stream.safety_lag
    return record.cursor_time


def held_of(
    stream: StreamSettings,
    record: StreamRecord | None,
    entries: list[ManifestEntry],
    quarantine: list[QuarantineRecord],
    root: Path,
) -> Held:
    """Join one stream's state rows with the files on disk (one `stat` per entry)."""
    spans: list[Span] = []
    by_sensor: dict[str, list[Span]] = {}
    absent = 0
    for entry in entries:
        if entry.time_start is None or entry.time_end is None:
            continue
        path = root / entry.path
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            absent += 1
            continue
        span = Span(entry.time_start, entry.time_end)
        spans.append(span)
        if stream.kind == "scalardata":
            for sensor in sensors_in(path, stat):
                by_sensor.setdefault(sensor, []).append(span)
    held = merge(spans)
    return Held(
        stream=stream.name,
        held=held,
        quarantined=[q for q in (quarantined_span(r, held) for r in quarantine) if q],
        cursor=data_cursor(stream, record),
        last_success=record.last_success if record else None,
        last_error=record.last_error if record else None,
        last_error_at=record.last_error_at if record else None,
        files=len(entries),
        files_absent=absent,
        sensors={code: merge(s) for code, s in sorted(by_sensor.items())},
    )


# path -> (size, mtime_ns, sensors): a file is read again only when it changed. Entries of
# files no check asked about since the last prune (deleted, or of a removed stream) go then.
_SEEN: dict[Path, tuple[int, int, frozenset[str]]] = {}
_ASKED: set[Path] = set()
_SENSOR_CODE = re.compile(rb'"sensorCode":\s*"([^"]*)"')
# CSV columns that are not sensors (see outputs/csv.py); `<sensor>_qc` are flags.
_CSV_FIXED = frozenset({"time", "station", "latitude", "longitude", "depth"})


def sensors_in(path: Path, stat: os.stat_result) -> frozenset[str]:
    """The sensor codes one output file holds (empty for a format without sensors, and for
    a file that cannot be read: its span then shows as every sensor's gap, and is mended)."""
    _ASKED.add(path)
    seen = _SEEN.get(path)
    if seen is not None and seen[:2] == (stat.st_size, stat.st_mtime_ns):
        return seen[2]
    try:
        codes = frozenset(_read_sensors(path))
    except (OSError, ValueError) as exc:  # unreadable or malformed: it holds no sensor
        log.warning("coverage_sensors_unreadable", path=str(path), error=str(exc))
        codes = frozenset()
    _SEEN[path] = (stat.st_size, stat.st_mtime_ns, codes)
    return codes


def forget_sensors() -> None:
    """Drop what `sensors_in` remembers (the benchmark measures a cold read)."""
    _SEEN.clear()
    _ASKED.clear()


def prune_sensors() -> None:
    """Forget files not asked about since the last prune: a check of every stream calls it,
    so what is remembered follows the files that exist, not every file ever seen."""
    for path in _SEEN.keys() - _ASKED:
        del _SEEN[path]
    _ASKED.clear()


def _read_sensors(path: Path) -> set[str]:
    if path.suffix == ".jsonl":
        codes = set(_SENSOR_CODE.findall(path.read_bytes()))
        return {variable_name(c.decode()) for c in codes}
    if path.suffix == ".csv":
        with open(path, encoding="utf-8") as handle:
            header = handle.readline().strip().split(",")
        return {c for c in header if c not in _CSV_FIXED and not c.endswith("_qc")}
    if path.suffix == ".nc":
        return _netcdf_sensors(path)
    if path.suffix == ".parquet":
        # Imported here: only streams that publish Parquet pay for pyarrow.
        from pipeline.outputs.parquet import SENSOR_KEY, field_attributes, schema_of

        try:
            schema = schema_of(path)  # the footer only
        except OutputError as exc:
            raise ValueError(str(exc)) from exc
        return {name for name, _, attrs in field_attributes(schema) if SENSOR_KEY in attrs}
    return set()


def quarantined_span(record: QuarantineRecord, held: list[Span]) -> Quarantined | None:
    """The span a quarantine record covers, from its key; None when the key names none."""
    label = _LABEL.search(record.item_key)
    if label:
        start, end = (_instant(label.group(i)) for i in (1, 2))
        return Quarantined(Span(start, end), record.reason)
    named = _FILE_START.search(record.item_key)
    if not named:
        return None
    start = _instant(named.group(1) + "Z", int(named.group(2) or 0))
    after = [s.start for s in held if s.start > start]
    end = min([start + QUARANTINED_FILE_MAX, *after])
    return Quarantined(Span(start, end), record.reason)


def _instant(text: str, millis: int = 0) -> datetime:
    moment = datetime.strptime(text, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    return moment + timedelta(milliseconds=millis)


def _netcdf_sensors(path: Path) -> set[str]:
    """The sensor variables of a NetCDF file: from the classic header alone (our own reader,
    no lock), or through netCDF4 for a NetCDF-4 file of an earlier version."""
    # Imported here: a daemon without NetCDF output never loads numpy and netCDF4.
    from pipeline.outputs import nc3

    try:
        header = nc3.read_header(path)
    except nc3.NotClassicError:
        pass
    else:
        return {v.name for v in header.variables.values() if "onc_sensor_code" in v.attributes}
    import netCDF4

    from pipeline.outputs.netcdf import NETCDF_LOCK

    # netCDF4 is not thread-safe (outputs/netcdf.py): this runs in a worker thread while a
    # window may be published from another.
    with NETCDF_LOCK, netCDF4.Dataset(path) as ds:
        return {name for name, var in ds.variables.items() if "onc_sensor_code" in var.ncattrs()}
