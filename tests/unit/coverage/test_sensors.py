"""Per-sensor coverage of scalardata: the sensors each held file holds, read from the file
(JSON Lines `sensorCode`, the CSV header, NetCDF variables and Parquet columns with
`onc_sensor_code`), and a
sensor absent from a held file shown as that sensor's own gap."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import netCDF4
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.coverage.check import StreamCoverage, facts_of, sensor_gaps
from pipeline.coverage.held import held_of, sensors_in
from pipeline.coverage.model import GapClass, Span, classify
from pipeline.coverage.page import render_page
from pipeline.coverage.report import render_table
from pipeline.settings import ArchiveFileStream, TimeSeriesStream
from pipeline.state.base import ManifestEntry, StreamRecord

T0 = datetime(2024, 1, 9, 12, tzinfo=UTC)
HOUR = timedelta(hours=1)
SERIES = TimeSeriesStream(name="ctd", kind="scalardata", device_code="X", formats=["jsonl"])


def entry(path: str, k: int) -> ManifestEntry:
    return ManifestEntry(
        path=path,
        stream="ctd",
        dataset_id="d",
        size=1,
        sha256="0" * 64,
        time_start=T0 + k * HOUR,
        time_end=T0 + (k + 1) * HOUR,
        records=1,
        source="scalardata",
        published_at=T0,
    )


def record(cursor: datetime) -> StreamRecord:
    return StreamRecord(
        name="ctd",
        cursor_time=cursor,
        cursor_file=None,
        last_success=cursor,
        last_error=None,
        last_error_at=None,
        updated_at=cursor,
    )


def jsonl(path: Path, sensors: list[str]) -> None:
    lines = [
        json.dumps({"sampleTime": f"2024-01-09T12:00:0{i}.000Z", "sensorCode": code, "value": 1})
        for i in range(3)
        for code in sensors
    ]
    path.write_text("".join(line + "\n" for line in lines))


def test_each_format_names_its_sensors(tmp_path: Path) -> None:
    jsonl(tmp_path / "a.jsonl", ["Temperature", "Pressure"])
    (tmp_path / "a.csv").write_text(
        "time,station,latitude,longitude,depth,Temperature,Temperature_qc,Pressure,Pressure_qc\n"
        "UTC,,degrees_north,degrees_east,m,C,,dbar,\n"
    )
    with netCDF4.Dataset(tmp_path / "a.nc", "w") as ds:
        ds.createDimension("time", 1)
        ds.createVariable("time", "f8", ("time",))
        var = ds.createVariable("Temperature", "f8", ("time",))
        var.setncattr("onc_sensor_code", "Temperature")
        ds.createVariable("Temperature_qc", "i1", ("time",))
    schema = pa.schema(
        [
            pa.field("time", pa.float64()),
            pa.field("Pressure", pa.float64(), metadata={"onc_sensor_code": "Pressure"}),
            pa.field("Pressure_qc", pa.int8()),
        ]
    )
    pq.write_table(pa.table([[0.0], [1.0], [1]], schema=schema), tmp_path / "a.parquet")
    # The NetCDF-3 layout the writer makes now: read from the header, without netCDF4.
    with netCDF4.Dataset(tmp_path / "b.nc", "w", format="NETCDF3_64BIT_OFFSET") as ds:
        ds.createDimension("time", None)
        ds.createVariable("time", "f8", ("time",))
        var = ds.createVariable("Pressure", "f8", ("time",))
        var.setncattr("onc_sensor_code", "Pressure")
    found = {
        name: sensors_in(tmp_path / name, os.stat(tmp_path / name))
        for name in ("a.jsonl", "a.csv", "a.nc", "b.nc", "a.parquet")
    }
    assert found == {
        "a.jsonl": {"Temperature", "Pressure"},
        "a.csv": {"Temperature", "Pressure"},
        "a.nc": {"Temperature"},
        "b.nc": {"Pressure"},
        "a.parquet": {"Pressure"},
    }
    # A file that cannot be read holds no sensor (logged), and does not stop the check.
    (tmp_path / "bad.nc").write_bytes(b"not netcdf")
    assert sensors_in(tmp_path / "bad.nc", os.stat(tmp_path / "bad.nc")) == frozenset()
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not parquet")
    assert sensors_in(tmp_path / "bad.parquet", os.stat(tmp_path / "bad.parquet")) == frozenset()
    # A file is read again when it changes (size or mtime), not otherwise.
    jsonl(tmp_path / "a.jsonl", ["Temperature"])
    assert sensors_in(tmp_path / "a.jsonl", os.stat(tmp_path / "a.jsonl")) == {"Temperature"}


def test_files_no_check_asks_about_any_more_are_forgotten(tmp_path: Path) -> None:
    from pipeline.coverage import held

    held.forget_sensors()
    for name in ("kept.jsonl", "deleted.jsonl"):
        jsonl(tmp_path / name, ["Temperature"])
        sensors_in(tmp_path / name, os.stat(tmp_path / name))
    held.prune_sensors()
    assert set(held._SEEN) == {tmp_path / "kept.jsonl", tmp_path / "deleted.jsonl"}
    # The next check asks about the file still there only: the other one is forgotten.
    sensors_in(tmp_path / "kept.jsonl", os.stat(tmp_path / "kept.jsonl"))
    held.prune_sensors()
    assert set(held._SEEN) == {tmp_path / "kept.jsonl"}


def test_a_sensor_missing_from_a_held_file_is_its_own_gap(tmp_path: Path) -> None:
    # Four hourly files: the second lacks Pressure, the third is deleted, the fourth is
    # ahead of nothing (the cursor is at its end).
    jsonl(tmp_path / "0.jsonl", ["Temperature", "Pressure"])
    jsonl(tmp_path / "1.jsonl", ["Temperature"])
    jsonl(tmp_path / "3.jsonl", ["Temperature", "Pressure"])
    entries = [entry(f"{k}.jsonl", k) for k in range(4)]
    now = T0 + 5 * HOUR
    held = held_of(SERIES, record(T0 + 4 * HOUR), entries, [], tmp_path)
    assert held.sensors == {
        "Pressure": [Span(T0, T0 + HOUR), Span(T0 + 3 * HOUR, T0 + 4 * HOUR)],
        "Temperature": [Span(T0, T0 + 2 * HOUR), Span(T0 + 3 * HOUR, T0 + 4 * HOUR)],
    }
    facts = facts_of(SERIES, held, Span(T0, now), [])
    sensors = sensor_gaps(held, facts, now)
    # Only Pressure has a gap, and only where the stream holds a file without it: the
    # deleted file and the span ahead of the cursor are the stream's gaps, not the sensor's.
    assert list(sensors) == ["Pressure"]
    ((gap),) = sensors["Pressure"].gaps
    assert (gap.span, gap.gap_class) == (Span(T0 + HOUR, T0 + 2 * HOUR), GapClass.MISSING)
    assert sensors["Pressure"].ratio == 2 / 3
    stream = classify(facts, now)
    assert [(g.span, g.gap_class) for g in stream.gaps] == [
        (Span(T0 + 2 * HOUR, T0 + 3 * HOUR), GapClass.MISSING),
        (Span(T0 + 4 * HOUR, now), GapClass.NOT_YET),
    ]
    row = StreamCoverage("ctd", "scalardata", held, stream, False, sensors)
    # The mender re-harvests the stream's and the sensors' missing spans.
    assert row.missing() == [Span(T0 + HOUR, T0 + 3 * HOUR)]
    (shown,) = row.as_json()["sensors"]
    assert shown["sensor"] == "Pressure"
    assert [g["class"] for g in shown["gaps"]] == ["missing"]
    table = render_table([row])
    assert "  sensor Pressure: 66.7%\n    missing       2024-01-09T13:00:00Z" in table
    page = render_page([row], set())
    assert "data-sensor='Pressure'" in page
    assert "data-sensor='Temperature'" not in page
    assert page.count("<svg") == 2


def test_other_kinds_read_no_sensors(tmp_path: Path) -> None:
    jsonl(tmp_path / "0.jsonl", ["Temperature"])
    archive = ArchiveFileStream(name="ctd", kind="archivefile", device_code="Y")
    held = held_of(archive, record(T0 + HOUR), [entry("0.jsonl", 0)], [], tmp_path)
    assert held.sensors == {}
