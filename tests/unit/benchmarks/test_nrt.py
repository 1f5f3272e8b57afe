"""Workload 3's arithmetic and its NetCDF freshness watcher (files written here, no daemon)."""

from __future__ import annotations

import os
import struct
from datetime import UTC, datetime
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import yaml

from benchmarks.nrt import (
    MAX_RATE_PER_S,
    NetcdfFreshnessWatcher,
    bytes_per_day,
    clock_offset_s,
    daemon_config,
    day_file_bytes,
    landed_freshness,
    notable_lines,
)
from pipeline.outputs import nc3

T0 = datetime(2026, 1, 1, 23, 0, tzinfo=UTC).timestamp()


def _write(path: Path, times: list[float]) -> None:
    """A NetCDF-3 record file as the pipeline's partitions are: unlimited `time` first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with netCDF4.Dataset(path, "w", format="NETCDF3_64BIT_OFFSET") as ds:
        ds.createDimension("time", None)
        ds.createVariable("time", "f8", ("time",))[:] = times


def _append(path: Path, times: list[float], *, finish: bool = True) -> None:
    """Append records in place as `nc3.write_change` does: the records, then numrecs (unless
    `finish` is False: an append caught between the two writes)."""
    header = nc3.read_header(path)
    records = np.asarray(times, dtype=">f8").tobytes()
    with open(path, "r+b") as handle:
        handle.seek(header.records_begin + header.numrecs * header.recsize)
        handle.write(records)
        if finish:
            handle.seek(nc3.NUMRECS_OFFSET)
            handle.write(struct.pack(">I", header.numrecs + len(times)))


def _visible(path: Path, offset: float) -> float:
    """When the file's latest change became visible, on the pipeline's clock."""
    return path.stat().st_ctime_ns / 1e9 + offset


def test_landed_freshness_counts_new_times_in_the_window_once() -> None:
    seen = {2.0}
    assert landed_freshness([1.0, 2.0, 3.0, 9.0], seen, 10.0, (2.0, 5.0)) == [7.0]
    assert seen == {2.0, 3.0, 9.0}  # 9.0 is after the window but now seen; 1.0 never counts
    assert landed_freshness([2.0, 3.0, 4.0], seen, 11.0, (2.0, 5.0)) == [7.0]


def test_watcher_measures_appended_samples_from_when_they_became_visible(
    tmp_path: Path,
) -> None:
    path = tmp_path / "ds" / "2026" / "ds_20260101.nc"
    offset = 1000.0  # the pipeline's clock runs 1000 s ahead of the file system's
    seeded = [T0 - 60, T0 - 30]
    _write(path, seeded)
    watcher = NetcdfFreshnessWatcher(tmp_path, T0, T0 + 100, offset_s=offset)
    watcher.prime()
    assert watcher.freshness == []  # the seeded samples are not measured

    _append(path, [T0 + 1, T0 + 2])
    landed = _visible(path, offset)
    watcher.scan()
    watcher.scan()  # unchanged: not read again
    assert watcher.freshness == pytest.approx([landed - T0 - 1, landed - T0 - 2])
    assert list(watcher.first_change) == [path]

    # Appended again: only the new sample time counts, at the new change; one past the
    # window none.
    _append(path, [T0 + 30, T0 + 200])
    later = _visible(path, offset)
    watcher.scan()
    assert watcher.freshness[2:] == pytest.approx([later - T0 - 30])
    assert watcher.scan_max_s >= 0.0
    assert watcher.lag_max_s >= 0.0


def test_watcher_reads_only_the_records_past_those_it_read(tmp_path: Path) -> None:
    """Records the watcher has read are not read again: a rewrite of their bytes in place
    (which the pipeline never does) goes unnoticed, as it would not with a whole read."""
    path = tmp_path / "ds" / "x.nc"
    _write(path, [T0 - 60, T0 - 30])
    watcher = NetcdfFreshnessWatcher(tmp_path, T0, T0 + 100)
    watcher.prime()
    header = nc3.read_header(path)
    with open(path, "r+b") as handle:
        handle.seek(header.records_begin)
        handle.write(np.asarray([T0 + 5], dtype=">f8").tobytes())
    _append(path, [T0 + 7])
    watcher.scan()
    assert watcher.freshness == pytest.approx([_visible(path, 0.0) - T0 - 7])


def test_watcher_waits_for_an_append_to_move_numrecs(tmp_path: Path) -> None:
    path = tmp_path / "ds" / "x.nc"
    _write(path, [T0 - 30])
    watcher = NetcdfFreshnessWatcher(tmp_path, T0, T0 + 100)
    watcher.prime()
    _append(path, [T0 + 1], finish=False)  # records written, numrecs not yet
    watcher.scan()
    assert watcher.freshness == []
    header = nc3.read_header(path)
    with open(path, "r+b") as handle:  # the append's last write
        handle.seek(nc3.NUMRECS_OFFSET)
        handle.write(struct.pack(">I", header.numrecs + 1))
    watcher.scan()
    assert watcher.freshness == pytest.approx([_visible(path, 0.0) - T0 - 1])


def test_a_rewritten_file_is_read_whole_and_counts_only_new_times(tmp_path: Path) -> None:
    path = tmp_path / "ds" / "x.nc"
    _write(path, [T0 + 1, T0 + 3])
    watcher = NetcdfFreshnessWatcher(tmp_path, T0, T0 + 100)
    watcher.scan()
    assert len(watcher.freshness) == 2
    tmp = path.with_suffix(".tmp")
    _write(tmp, [T0 + 1, T0 + 2, T0 + 3])  # a time between records: a rewrite, renamed
    os.replace(tmp, path)
    watcher.scan()
    assert watcher.freshness[2:] == pytest.approx([_visible(path, 0.0) - T0 - 2])


def test_watcher_skips_a_file_it_cannot_read_and_retries(tmp_path: Path) -> None:
    path = tmp_path / "ds" / "x.nc"
    path.parent.mkdir()
    path.write_bytes(b"not a netcdf file")
    watcher = NetcdfFreshnessWatcher(tmp_path, T0, T0 + 100)
    watcher.scan()
    assert watcher.freshness == []
    tmp = path.with_suffix(".tmp")
    _write(tmp, [T0 + 1])
    os.replace(tmp, path)
    watcher.scan()
    assert watcher.freshness == pytest.approx([_visible(path, 0.0) - T0 - 1])


@pytest.mark.parametrize(
    ("real", "offset"),
    [
        (datetime(2026, 3, 4, 10, 0, tzinfo=UTC), 12 * 3600 + 55 * 60),
        (datetime(2026, 3, 4, 23, 30, tzinfo=UTC), -35 * 60),
    ],
)
def test_clock_offset_puts_now_at_the_seeding_time_of_day(real: datetime, offset: float) -> None:
    assert clock_offset_s(real) == offset


def test_bytes_per_day_and_a_days_files_scale_linearly() -> None:
    assert bytes_per_day(1_000.0, 300.0) == 288_000.0
    assert day_file_bytes(23_000.0, 23 * 3600.0) == 24_000.0
    with pytest.raises(ValueError, match="positive"):
        bytes_per_day(1.0, 0.0)
    with pytest.raises(ValueError, match="hold"):
        day_file_bytes(1.0, 0.0)


def test_daemon_config_publishes_netcdf_daily_at_the_documented_rate(tmp_path: Path) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    measured = yaml.safe_load(daemon_config(tmp_path, "http://x", 3, 30, start).read_text())
    seed = yaml.safe_load(daemon_config(tmp_path, "http://x", 3, 30, start, seed=True).read_text())
    assert measured["onc"]["max_rate_per_s"] == MAX_RATE_PER_S
    assert measured["output"]["partition"] == seed["output"]["partition"] == "daily"
    assert [s["formats"] for s in measured["streams"]] == [["netcdf"]] * 3
    assert "window" not in measured["streams"][0]  # the default a user gets
    # Same datasets and start for both, so the run continues the seeded files.
    assert [s["dataset_id"] for s in seed["streams"]] == [
        s["dataset_id"] for s in measured["streams"]
    ]
    assert seed["streams"][0]["start"] == "2026-01-01T00:00:00Z"
    # The CSV run seeds and measures the same streams in CSV.
    for seeding in (False, True):
        csv = yaml.safe_load(
            daemon_config(tmp_path, "http://x", 3, 30, start, seed=seeding, fmt="csv").read_text()
        )
        assert [s["formats"] for s in csv["streams"]] == [["csv"]] * 3


def test_notable_lines_prefer_a_fatal_error_and_the_pipelines_frames() -> None:
    log = "\n".join(
        [
            '{"event": "x", "level": "info"}',
            '{"event": "coverage_sensors_unreadable", "level": "warning"}',
            "Fatal Python error: Segmentation fault",
            '  File "/r/pipeline/outputs/netcdf.py", line 90 in read_netcdf_table',
            '  File "/usr/lib/python3.11/threading.py", line 982 in run',
            '  File "/r/pipeline/coverage/held.py", line 150 in _read_sensors',
        ]
    )
    assert notable_lines(log) == [
        "Fatal Python error: Segmentation fault",
        'File "/r/pipeline/outputs/netcdf.py", line 90 in read_netcdf_table',
        'File "/r/pipeline/coverage/held.py", line 150 in _read_sensors',
    ]
    no_crash = log.split("\nFatal")[0]
    assert notable_lines(no_crash) == [
        '{"event": "coverage_sensors_unreadable", "level": "warning"}'
    ]
    assert notable_lines("a\nb\n") == ["a", "b"]
