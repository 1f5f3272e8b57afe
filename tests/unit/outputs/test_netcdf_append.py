"""NetCDF partitions grown in place: the classic header reader, appends equal to rewrites,
the cases that fall back to a rewrite (revisions among them), and crashes at each step."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pytest

from pipeline.exceptions import OutputError
from pipeline.outputs import nc3
from pipeline.outputs import netcdf as netcdf_module
from pipeline.outputs.cf_names import variable_name
from pipeline.outputs.netcdf import NetcdfWriter, read_netcdf_table
from pipeline.records import PublishedFile, SensorInfo, Window
from tests.unit.outputs.helpers import COND, DAY, DEPTH, TEMP, ctd_meta, race, times

HOUR = timedelta(hours=1)
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
DATASET = "onc_bacax_ctd"


def writer() -> NetcdfWriter:
    meta = ctd_meta()
    return NetcdfWriter({meta.dataset_id: meta}, clock=lambda: NOW)


def publish(
    root: Path,
    start: datetime,
    end: datetime,
    readings: Sequence[tuple[SensorInfo, datetime, int, float]],
) -> PublishedFile:
    """Publish one window with (sensor, first time, count, first value) runs at 1 Hz."""
    w = writer().open_window(root, DATASET, Window(start, end))
    for sensor, first, count, value in readings:
        values = [value + i for i in range(count)]
        flags = [1] * count
        w.add_scalar(sensor, times(first, count), values, flags)
    published = w.publish()
    assert published is not None
    return published


def hours(first: int, last: int) -> list[tuple[SensorInfo, datetime, int, float]]:
    return [
        (sensor, DAY + h * HOUR, 600, 100.0 * h + n)
        for h in range(first, last + 1)
        for n, sensor in enumerate((TEMP, COND))
    ]


def file_content(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every global attribute and every variable (attributes, dimensions, values)."""
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_mask(False)
        attrs = {k: ds.getncattr(k) for k in ds.ncattrs()}
        variables = {
            name: (
                var.dimensions,
                {k: np.asarray(var.getncattr(k)).tolist() for k in var.ncattrs()},
                np.asarray(var[:]).tolist(),
            )
            for name, var in ds.variables.items()
        }
    return attrs, variables


def same_records(a: Path, b: Path) -> None:
    attrs_a, vars_a = file_content(a)
    attrs_b, vars_b = file_content(b)
    # `history` is the first harvest and the latest: a file harvested once has one line.
    history_a, history_b = attrs_a.pop("history"), attrs_b.pop("history")
    assert history_a.splitlines()[0] == history_b.splitlines()[0]
    assert attrs_a == attrs_b
    assert vars_a.keys() == vars_b.keys()
    for name in vars_a:
        # NaN != NaN in lists: compare through numpy.
        dims_a, var_attrs_a, data_a = vars_a[name]
        dims_b, var_attrs_b, data_b = vars_b[name]
        assert dims_a == dims_b, name
        assert str(var_attrs_a) == str(var_attrs_b), name
        arr_a, arr_b = np.asarray(data_a), np.asarray(data_b)
        assert arr_a.dtype == arr_b.dtype, name
        assert np.array_equal(arr_a, arr_b, equal_nan=arr_a.dtype.kind == "f"), name


def data_bytes(path: Path) -> int:
    """Bytes after the header (whose history may differ in length)."""
    return os.path.getsize(path) - nc3.read_header(path).records_begin


def two_step(root: Path) -> Path:
    """The day built window by window: 05h, 06h (the one rewrite: history grows), 07h-09h."""
    path = None
    for h in range(5, 10):
        path = publish(root, DAY + h * HOUR, DAY + (h + 1) * HOUR, hours(h, h)).path
    assert path is not None
    return path


# ------------------------------------------------------------------ the header reader


def test_the_header_reader_agrees_with_netcdf4(tmp_path: Path) -> None:
    path = publish(tmp_path, DAY + 5 * HOUR, DAY + 6 * HOUR, hours(5, 5)).path
    header = nc3.read_header(path)
    assert header.version == 2  # 64-bit offset
    assert header.numrecs == 600
    assert header.dims[header.record_dim or 0] == ("time", 0)
    assert header.value(header.attributes["featureType"]) == "timeSeries"
    assert header.value(header.variables["Temperature_qc"].attributes["flag_values"]).tolist()[
        :3
    ] == [0, 1, 2]
    records = nc3.read_records(path, header)
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_mask(False)
        assert np.array_equal(records["time"], ds["time"][:])
        assert np.array_equal(records["cond"], ds["cond"][:])
        assert np.array_equal(records["cond_qc"], ds["cond_qc"][:])
        assert header.recsize == 8 + 2 * 8 + 2 * 4  # time, two doubles, two padded flags
        assert os.path.getsize(path) == header.records_begin + 600 * header.recsize


def test_other_formats_are_not_classic(tmp_path: Path) -> None:
    path = tmp_path / "x.nc"
    with netCDF4.Dataset(path, "w", format="NETCDF4") as ds:
        ds.createDimension("time", None)
    with pytest.raises(nc3.NotClassicError, match="CDF magic"):
        nc3.read_header(path)
    path.write_bytes(b"CDF\x05" + bytes(60))
    with pytest.raises(nc3.NotClassicError, match="version 5"):
        nc3.read_header(path)


# ------------------------------------------------------------------ appends


def test_appends_in_place_give_the_file_a_rewrite_gives(tmp_path: Path) -> None:
    grown = two_step(tmp_path / "grown")
    whole = publish(tmp_path / "whole", DAY, DAY + 24 * HOUR, hours(5, 9)).path
    same_records(grown, whole)
    table, _ = read_netcdf_table(grown)
    assert table.record_count == 5 * 600 * 2
    assert data_bytes(grown) == data_bytes(whole)
    # The records themselves are the same bytes.
    begin_grown, begin_whole = (nc3.read_header(p).records_begin for p in (grown, whole))
    assert grown.read_bytes()[begin_grown:] == whole.read_bytes()[begin_whole:]


def test_an_append_writes_the_new_records_and_keeps_the_file(tmp_path: Path) -> None:
    path = two_step(tmp_path)
    inode, size = path.stat().st_ino, path.stat().st_size
    header = nc3.read_header(path)
    published = publish(tmp_path, DAY + 10 * HOUR, DAY + 11 * HOUR, hours(10, 10))
    assert path.stat().st_ino == inode  # not renamed over: grown in place
    assert published.size == size + 600 * header.recsize
    assert not published.replaced
    with netCDF4.Dataset(path) as ds:
        assert len(ds.dimensions["time"]) == 6 * 600
        assert ds.time_coverage_end == "2026-11-20T10:09:59.000Z"
        assert ds.time_coverage_duration == "PT18599.000S"


def test_a_refetch_of_equal_records_writes_nothing(tmp_path: Path) -> None:
    path = two_step(tmp_path)
    before = path.read_bytes(), path.stat().st_mtime_ns
    w = writer().open_window(tmp_path, DATASET, Window(DAY + 9 * HOUR, DAY + 10 * HOUR))
    w.add_scalar(TEMP, times(DAY + 9 * HOUR, 600), [900.0 + i for i in range(600)], [1] * 600)
    assert w.record_count == 5 * 600 * 2
    assert not w.changed
    published = w.publish()
    assert published is not None
    assert not published.replaced
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_a_revision_rewrites_the_partition_atomically_and_marks_it_replaced(
    tmp_path: Path,
) -> None:
    # Records a reader can see never change in place (it could read them half old, half new):
    # a revision goes to the atomic rewrite, a new file under the same name.
    path = two_step(tmp_path)
    inode, size = path.stat().st_ino, path.stat().st_size
    w = writer().open_window(tmp_path, DATASET, Window(DAY + 7 * HOUR, DAY + 8 * HOUR))
    # ONC re-flagged two readings and filled one gap value; the rest is unchanged.
    values = [700.0 + i for i in range(600)]
    flags = [1] * 600
    values[10], flags[10] = math.nan, 9
    flags[11] = 4
    w.add_scalar(TEMP, times(DAY + 7 * HOUR, 600), values, flags)
    assert w.record_count == 5 * 600 * 2
    published = w.publish()
    assert published is not None
    assert published.replaced
    assert path.stat().st_ino != inode
    assert path.stat().st_size == size
    table, _ = read_netcdf_table(path)
    at = 2 * 600 + 10
    assert math.isnan(table.values[0][at])
    assert table.flags[0][at] == 9
    assert table.flags[0][at + 1] == 4
    assert table.values[0][at + 1] == 711.0
    assert table.values[1][at] == 701.0 + 10  # the other sensor untouched


def test_a_new_record_at_an_existing_time_is_written_in_place(tmp_path: Path) -> None:
    root = tmp_path
    publish(root, DAY + 5 * HOUR, DAY + 6 * HOUR, [(TEMP, DAY + 5 * HOUR, 10, 0.0)])
    path = publish(root, DAY + 5 * HOUR, DAY + 6 * HOUR, [(TEMP, DAY + 5 * HOUR, 20, 0.0)]).path
    inode = path.stat().st_ino
    # cond arrives late for times the file has (TEMP only so far): no new times, no rewrite
    # needed for the records, but a new sensor is a new variable: the file is rewritten.
    published = publish(root, DAY + 5 * HOUR, DAY + 6 * HOUR, [(COND, DAY + 5 * HOUR, 5, 1.0)])
    assert published.replaced
    assert path.stat().st_ino != inode
    table, _ = read_netcdf_table(path)
    assert table.record_count == 25


# ------------------------------------------------------------------ rewrites


def test_a_time_before_or_between_the_records_rewrites_the_partition(tmp_path: Path) -> None:
    path = two_step(tmp_path)
    inode = path.stat().st_ino
    published = publish(tmp_path, DAY + 3 * HOUR, DAY + 4 * HOUR, hours(3, 3))
    assert published.replaced
    assert path.stat().st_ino != inode
    whole = publish(tmp_path / "whole", DAY, DAY + 24 * HOUR, hours(3, 3) + hours(5, 9)).path
    same_records(path, whole)


def test_a_header_that_no_longer_fits_rewrites_the_partition(tmp_path: Path) -> None:
    path = two_step(tmp_path)
    inode = path.stat().st_ino
    # A longer title from changed settings: the header would have to grow.
    meta = ctd_meta(title="A much longer title than the one the file was created with, surely")
    w = NetcdfWriter({meta.dataset_id: meta}, clock=lambda: NOW).open_window(
        tmp_path, DATASET, Window(DAY + 10 * HOUR, DAY + 11 * HOUR)
    )
    w.add_scalar(TEMP, times(DAY + 10 * HOUR, 5), [1.0] * 5, [1] * 5)
    published = w.publish()
    assert published is not None
    assert published.replaced
    assert path.stat().st_ino != inode
    with netCDF4.Dataset(path) as ds:
        assert ds.title.startswith("A much longer title")
        assert len(ds.dimensions["time"]) == 5 * 600 + 5


def test_a_new_station_rewrites_the_partition(tmp_path: Path) -> None:
    path = two_step(tmp_path)
    inode = path.stat().st_ino
    # The device moved to another location at 10:00: a second station in the partition.
    meta = ctd_meta()
    moved = replace(meta.positions[-1], begin=DAY + 10 * HOUR, location_code="BACUS")
    meta = replace(meta, positions=(*meta.positions, moved))
    w = NetcdfWriter({meta.dataset_id: meta}, clock=lambda: NOW).open_window(
        tmp_path, DATASET, Window(DAY + 10 * HOUR, DAY + 11 * HOUR)
    )
    w.add_scalar(TEMP, times(DAY + 10 * HOUR, 5), [1.0] * 5, [1] * 5)
    published = w.publish()
    assert published is not None
    assert published.replaced
    assert path.stat().st_ino != inode
    with netCDF4.Dataset(path) as ds:
        ds.set_auto_mask(False)
        codes = netCDF4.chartostring(ds["station"][:]).tolist()
        assert codes == ["BACAX", "BACUS"]
        assert ds["Temperature_qc"][-1, :].tolist() == [-127, 1]  # on the new station's row


def to_netcdf4(path: Path) -> None:
    """The file as the previous version wrote it: NETCDF4, (station, time), zlib."""
    old = path.with_suffix(".old")
    with netCDF4.Dataset(path) as src, netCDF4.Dataset(old, "w", format="NETCDF4") as dst:
        src.set_auto_mask(False)
        for name, dim in src.dimensions.items():
            dst.createDimension(name, len(dim))
        dst.setncatts({k: src.getncattr(k) for k in src.ncattrs()})
        for name, var in src.variables.items():
            dims = var.dimensions
            flip = dims == ("time", "station")
            attrs = {k: var.getncattr(k) for k in var.ncattrs()}
            fill = attrs.pop("_FillValue", None)
            new = dst.createVariable(
                name,
                var.dtype,
                ("station", "time") if flip else dims,
                fill_value=fill,
                zlib=flip,
            )
            new.setncatts(attrs)
            new[:] = np.asarray(var[:]).T if flip else var[:]
    os.replace(old, path)


def test_an_old_netcdf4_partition_is_migrated_by_a_rewrite(tmp_path: Path) -> None:
    path = two_step(tmp_path)
    to_netcdf4(path)
    with netCDF4.Dataset(path) as ds:
        assert ds.data_model == "NETCDF4"
    publish(tmp_path, DAY + 10 * HOUR, DAY + 11 * HOUR, hours(10, 10))
    with netCDF4.Dataset(path) as ds:
        assert ds.data_model == "NETCDF3_64BIT_OFFSET"
        assert ds["Temperature"].dimensions == ("time", "station")
    whole = publish(tmp_path / "whole", DAY, DAY + 24 * HOUR, hours(5, 10)).path
    same_records(path, whole)


# ------------------------------------------------------------------ crashes


def fail_at_numrecs(monkeypatch: pytest.MonkeyPatch) -> None:
    real = nc3._pwrite_all

    def pwrite(fd: int, data: bytes, offset: int) -> None:
        if offset == nc3.NUMRECS_OFFSET:
            raise OSError(5, "Input/output error")  # the process dies before numrecs
        real(fd, data, offset)

    monkeypatch.setattr(nc3, "_pwrite_all", pwrite)


def fail_at_first_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    def fdatasync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(nc3.os, "fdatasync", fdatasync)


@pytest.mark.parametrize("crash", [fail_at_first_flush, fail_at_numrecs])
def test_a_crash_before_numrecs_leaves_the_old_records_and_the_retry_completes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: Any
) -> None:
    path = two_step(tmp_path)
    before, _ = read_netcdf_table(path)
    with monkeypatch.context() as patched:
        crash(patched)
        with pytest.raises(OutputError, match="cannot append"):
            publish(tmp_path, DAY + 10 * HOUR, DAY + 11 * HOUR, hours(10, 10))
    # Readers see the records the file had: the appended bytes lie past numrecs.
    after, _ = read_netcdf_table(path)
    assert after.same_as(before)
    header = nc3.read_header(path)
    assert os.path.getsize(path) == header.records_begin + (5 * 600 + 600) * header.recsize
    # The window is retried (the cursor did not move) with fewer readings this time: the
    # leftover bytes are overwritten and cut off.
    published = publish(tmp_path, DAY + 10 * HOUR, DAY + 11 * HOUR, hours(10, 10)[:1])
    whole = publish(tmp_path / "whole", DAY, DAY + 24 * HOUR, hours(5, 9) + hours(10, 10)[:1]).path
    same_records(path, whole)
    assert published.size == os.path.getsize(path)
    assert data_bytes(path) == data_bytes(whole)  # the leftover is gone


def test_a_crash_after_numrecs_is_refetched_and_found_equal(tmp_path: Path) -> None:
    path = two_step(tmp_path)
    # The append completed but the cursor commit did not: the same window comes again.
    publish(tmp_path, DAY + 10 * HOUR, DAY + 11 * HOUR, hours(10, 10))
    content, mtime = path.read_bytes(), path.stat().st_mtime_ns
    again = publish(tmp_path, DAY + 10 * HOUR, DAY + 11 * HOUR, hours(10, 10))
    assert not again.replaced
    assert (path.read_bytes(), path.stat().st_mtime_ns) == (content, mtime)


def test_a_classic_header_our_reader_cannot_parse_goes_to_netcdf4(tmp_path: Path) -> None:
    """A damaged classic header (a name that is not UTF-8) is not a crash of the window: the
    file is handed to netCDF4, which says what is wrong with it."""
    from pipeline.exceptions import OutputError
    from pipeline.outputs.netcdf import _Classic

    bad = tmp_path / "bad.nc"
    dim = b"\x00\x00\x00\x0a\x00\x00\x00\x01\x00\x00\x00\x04ti\xffe\x00\x00\x00\x05"
    bad.write_bytes(b"CDF\x02\x00\x00\x00\x00" + dim + b"\x00" * 40)
    assert _Classic.open(bad) is None
    with pytest.raises(OutputError, match="unreadable"):
        read_netcdf_table(bad)


# ------------------------------------------------------------------ header patches


def test_changed_spans_keep_only_the_differing_runs() -> None:
    header = nc3.Header(1, 0, [], {}, {}, 32, _raw=bytes(range(32)))
    data = bytearray(range(4, 28))
    assert header.changed_spans(4, bytes(data)) == []
    data[2] = 0xFF  # offset 6
    data[5] = 0xFF  # offset 9: 2 equal bytes apart, joined with the first
    data[20] = 0xEE  # offset 24: far, a run of its own
    assert header.changed_spans(4, bytes(data)) == [
        (6, bytes([0xFF, 7, 8, 0xFF])),
        (24, bytes([0xEE])),
    ]
    # Past the bytes read: written whole.
    assert header.changed_spans(30, b"abcd") == [(30, b"abcd")]


def append_at(root: Path, clock: datetime, h: int) -> nc3.RecordWrite:
    """Append hour `h` with the writer's clock at `clock`; returns what was written."""
    applied: list[nc3.RecordWrite] = []
    write_change = nc3.write_change

    def spy(fd: int, header: nc3.Header, change: nc3.RecordWrite, **kw: Any) -> None:
        applied.append(change)
        write_change(fd, header, change, **kw)

    meta = ctd_meta()
    w = NetcdfWriter({meta.dataset_id: meta}, clock=lambda: clock).open_window(
        root, DATASET, Window(DAY + h * HOUR, DAY + (h + 1) * HOUR)
    )
    for sensor, first, count, value in hours(h, h):
        w.add_scalar(sensor, times(first, count), [value + i for i in range(count)], [1] * count)
    original, nc3.write_change = nc3.write_change, spy
    try:
        assert w.publish() is not None
    finally:
        nc3.write_change = original
    (change,) = applied
    return change


def test_an_append_patches_only_the_header_bytes_that_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    later = NOW + timedelta(seconds=30)
    diffed = two_step(tmp_path / "diffed")
    change = append_at(tmp_path / "diffed", later, 10)
    # The same append with every changed attribute written whole.
    whole = two_step(tmp_path / "whole")
    monkeypatch.setattr(nc3.Header, "changed_spans", lambda self, at, data: [(at, data)])
    full = append_at(tmp_path / "whole", later, 10)
    assert diffed.read_bytes() == whole.read_bytes()
    written = sum(len(data) for _, data in change.attribute_patches)
    assert written < sum(len(data) for _, data in full.attribute_patches) / 3
    with netCDF4.Dataset(diffed) as ds:
        assert ds.date_modified == "2026-11-20T12:00:30Z"
        assert "2026-11-20T12:00:30Z" in ds.history.splitlines()[-1]


def test_an_append_to_a_file_another_writer_grew_meanwhile_is_refused(tmp_path: Path) -> None:
    # Two writers opened the same partition (an instance that lost its lease, say): the
    # second to append finds the header it read is no longer the file's, and changes nothing.
    path = two_step(tmp_path)
    late = writer().open_window(tmp_path, DATASET, Window(DAY + 10 * HOUR, DAY + 11 * HOUR))
    for sensor, first, count, value in hours(10, 10):
        late.add_scalar(sensor, times(first, count), [value + i for i in range(count)], [1] * count)
    publish(tmp_path, DAY + 10 * HOUR, DAY + 11 * HOUR, hours(10, 10))  # the other writer
    before = path.read_bytes()
    with pytest.raises(OutputError, match="changed while its window was built"):
        late.publish()
    assert path.read_bytes() == before
    # The retry opens the file as it now is and finds the records there.
    again = publish(tmp_path, DAY + 10 * HOUR, DAY + 11 * HOUR, hours(10, 10))
    assert again.size == len(before)


def test_a_rewrite_over_a_file_another_writer_appended_to_meanwhile_is_refused(
    tmp_path: Path,
) -> None:
    # A revision read the file, then another writer (an instance that lost its lease) appended
    # hour 10: renaming the rewrite over the file would drop that hour's records. Under the
    # lock the rewrite finds the file changed, changes nothing, and its window is retried.
    path = two_step(tmp_path)
    revision = writer().open_window(tmp_path, DATASET, Window(DAY + 7 * HOUR, DAY + 8 * HOUR))
    values = [700.0 + i for i in range(600)]
    values[10] = math.nan
    revision.add_scalar(TEMP, times(DAY + 7 * HOUR, 600), values, [1] * 600)
    publish(tmp_path, DAY + 10 * HOUR, DAY + 11 * HOUR, hours(10, 10))  # the other writer
    before = path.read_bytes()
    with pytest.raises(OutputError, match="changed while its window was built"):
        revision.publish()
    assert path.read_bytes() == before
    table, _ = read_netcdf_table(path)
    assert table.values[0][-1] == 1000.0 + 599  # hour 10 is still there


def test_readings_added_after_the_count_was_asked_are_published(tmp_path: Path) -> None:
    # The rewrite path merges the window over the file read whole; asked for its count
    # first, the window then takes more readings, and those are published too.
    path = publish(tmp_path, DAY, DAY + HOUR, [(TEMP, DAY, 3, 1.0)]).path
    w = writer().open_window(tmp_path, DATASET, Window(DAY, DAY + HOUR))
    w.add_scalar(TEMP, times(DAY, 1), [9.0], [1])  # a revision: the rewrite path
    assert w.record_count == 3
    w.add_scalar(TEMP, times(DAY + timedelta(seconds=10), 2), [4.0, 5.0], [1, 1])
    assert w.record_count == 5
    assert w.publish() is not None
    assert read_netcdf_table(path)[0].record_count == 5


def test_files_rendered_a_few_records_at_a_time_are_the_files_rendered_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = two_step(tmp_path / "whole")
    whole, header = path.read_bytes(), nc3.read_header(path)
    # Slices of 7 records (600 records a window: a short last slice), for both the rewrite
    # and the in-place appends; then one record at a time.
    for slice_bytes in (7 * header.recsize + 1, 1):
        monkeypatch.setattr(netcdf_module, "RECORD_SLICE_BYTES", slice_bytes)
        sliced = two_step(tmp_path / str(slice_bytes))
        assert sliced.read_bytes() == whole
        # Read by netCDF4, not our own reader: every record of every hour is there.
        with netCDF4.Dataset(sliced) as ds:
            seconds = np.asarray(ds["time"][:])
            temperature = np.asarray(ds[variable_name(TEMP.code)][:]).ravel()
        assert seconds.tolist() == [
            (DAY + h * HOUR).timestamp() + i for h in range(5, 10) for i in range(600)
        ]
        assert temperature.tolist() == [100.0 * h + i for h in range(5, 10) for i in range(600)]


# ------------------------------------------------------------------ partitions kept


def window_through(
    w: NetcdfWriter, root: Path, start: datetime, end: datetime, readings: Any
) -> tuple[PublishedFile, int]:
    """Publish one window through writer `w` (whose partitions it keeps between windows);
    returns the file and the record count the window reported."""
    opened = w.open_window(root, DATASET, Window(start, end))
    for sensor, first, count, value in readings:
        opened.add_scalar(
            sensor, times(first, count), [value + i for i in range(count)], [1] * count
        )
    published = opened.publish()
    assert published is not None
    return published, opened.record_count


def polls(first_hour: int, count: int) -> list[tuple[datetime, datetime, Any]]:
    """`count` 30 s windows from `first_hour`, both sensors at 1 Hz."""
    at = DAY + first_hour * HOUR
    step = timedelta(seconds=30)
    return [
        (
            at + i * step,
            at + (i + 1) * step,
            [(s, at + i * step, 30, 10.0 * i + n) for n, s in enumerate((TEMP, COND))],
        )
        for i in range(count)
    ]


def test_windows_through_one_writer_give_the_files_fresh_writers_give(tmp_path: Path) -> None:
    # The writer keeps what each partition's header says between its windows; a fresh writer
    # per window reads every file whole. Byte for byte and count for count the same, through
    # appends, a refetch of equal records, a new sensor (a rewrite) and appends after it.
    kept = writer()
    steps = [(DAY + h * HOUR, DAY + (h + 1) * HOUR, hours(h, h)) for h in (5, 6)]
    steps += polls(7, 4)
    steps.append(polls(7, 4)[-1])  # refetched: equal records, nothing written
    late = DAY + 7 * HOUR + timedelta(minutes=5)
    steps.append((late, late + timedelta(seconds=30), [(DEPTH, late, 30, 3.0)]))
    steps += polls(8, 3)
    for start, end, readings in steps:
        a = window_through(kept, tmp_path / "kept", start, end, readings)
        b = window_through(writer(), tmp_path / "fresh", start, end, readings)
        assert a[0].path.read_bytes() == b[0].path.read_bytes()
        assert (a[0].size, a[0].sha256, a[1]) == (b[0].size, b[0].sha256, b[1])
    assert read_netcdf_table(a[0].path)[0].record_count == 2 * 600 * 2 + 7 * 60 + 30


def test_a_kept_partition_is_not_read_again_while_only_its_writer_grows_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[Path] = []
    read_header = nc3.read_header

    def counted(path: Path) -> nc3.Header:
        reads.append(path)
        return read_header(path)

    monkeypatch.setattr(nc3, "read_header", counted)
    kept = writer()
    windows = polls(5, 6)
    window_through(kept, tmp_path, *windows[0])  # creates the file: nothing to read
    window_through(kept, tmp_path, *windows[1])  # reads it once
    assert len(reads) == 1
    for window in windows[2:]:
        window_through(kept, tmp_path, *window)
    assert len(reads) == 1
    # Another writer's append: the file is not as this writer left it, so it is read again
    # and the next window goes after the other writer's records, not over them.
    later = polls(6, 2)
    other, _ = window_through(writer(), tmp_path, *later[0])
    published, _ = window_through(kept, tmp_path, *later[1])
    assert len(reads) == 3  # the other writer's read, then this writer's
    table, _ = read_netcdf_table(published.path)
    assert table.record_count == 8 * 60
    assert published.size == other.size + 30 * nc3.read_header(published.path).recsize


def test_a_partition_rewritten_by_another_writer_is_read_again(tmp_path: Path) -> None:
    kept = writer()
    for window in polls(5, 3):
        window_through(kept, tmp_path, *window)
    # Another writer revises a record (a rewrite renamed over the file: another inode).
    revision = writer().open_window(tmp_path, DATASET, Window(DAY + 5 * HOUR, DAY + 6 * HOUR))
    revision.add_scalar(TEMP, times(DAY + 5 * HOUR, 1), [99.0], [1])
    assert revision.publish() is not None
    published, count = window_through(kept, tmp_path, *polls(5, 4)[-1])
    table, _ = read_netcdf_table(published.path)
    assert count == table.record_count == 4 * 60
    assert table.values[0][0] == 99.0


@pytest.mark.parametrize("crash", [fail_at_first_flush, fail_at_numrecs])
def test_a_failed_append_is_not_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash: Any
) -> None:
    kept = writer()
    windows = polls(5, 3)
    for window in windows[:2]:
        window_through(kept, tmp_path, *window)
    with monkeypatch.context() as patched:
        crash(patched)
        with pytest.raises(OutputError, match="cannot append"):
            window_through(kept, tmp_path, *windows[2])
    # The retry reads the file as the failure left it (records past numrecs, the header's
    # attributes perhaps patched) and completes the append.
    published, count = window_through(kept, tmp_path, *windows[2])
    fresh = tmp_path / "fresh"
    for window in windows:
        whole, whole_count = window_through(writer(), fresh, *window)
    assert published.path.read_bytes() == whole.path.read_bytes()
    assert count == whole_count == 3 * 60


def test_a_header_after_a_change_is_the_header_parsed_after_it(tmp_path: Path) -> None:
    path = two_step(tmp_path)
    header = nc3.read_header(path)
    history = header.attributes["history"]
    start = header.attributes["time_coverage_start"]
    lat = header.attributes["geospatial_lat_min"]
    text = str(header.value(history))
    # Another length in the same padded size: nelems changes, nothing moves.
    new_text = text[:-1] if len(text) % 4 != 1 else text + "abc"
    changes = [
        (history, nc3.encode_attribute(history, new_text)),
        (start, nc3.encode_attribute(start, "2026-11-20T05:00:01.000Z")),
        (lat, nc3.encode_attribute(lat, -0.0)),
    ]
    assert all(encoded is not None for _, encoded in changes)
    after = header.after([(a, e) for a, e in changes if e is not None], appended=7)
    raw = bytearray(header.stored(0, header.size))
    for attr, encoded in changes:
        assert encoded is not None
        raw[attr.nelems_offset : attr.nelems_offset + len(encoded)] = encoded
    raw[nc3.NUMRECS_OFFSET : nc3.NUMRECS_OFFSET + 4] = (header.numrecs + 7).to_bytes(4, "big")
    parsed = nc3.parse_header(bytes(raw))
    assert after == parsed
    assert after.value(after.attributes["history"]) == new_text
    assert after.attributes["history"].nelems == len(new_text) != history.nelems
    assert header.value(header.attributes["history"]) == text  # the header itself unchanged
    with pytest.raises(ValueError, match="does not fit"):
        header.after([(history, b"\0\0\0\x01x\0\0\0")])


def test_a_file_changed_while_its_header_was_read_is_not_kept_as_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Another writer appends between this writer's stat of the file and its use of the
    # header it read: the header is kept under the identity the file had before, so the next
    # open reads the file again instead of taking the stale header for the file as it is.
    kept = writer()
    windows = polls(5, 4)
    window_through(writer(), tmp_path, *windows[0])
    read_header = nc3.read_header
    meanwhile = [windows[1]]

    def then_another_append(path: Path) -> nc3.Header:
        header = read_header(path)
        while meanwhile:
            window_through(writer(), tmp_path, *meanwhile.pop())
        return header

    monkeypatch.setattr(nc3, "read_header", then_another_append)
    # A revision of the first window's records: the partition is rewritten, under the lock
    # of the file as read.
    start, end, readings = windows[0]
    revised = [(sensor, first, count, value + 0.5) for sensor, first, count, value in readings]
    with pytest.raises(OutputError, match="changed while its window was built"):
        window_through(kept, tmp_path, start, end, revised)
    published, count = window_through(kept, tmp_path, start, end, revised)  # the retry
    assert published.replaced
    table, _ = read_netcdf_table(published.path)
    assert count == table.record_count == 2 * 60
    assert table.values[0][0] == revised[0][3]


@pytest.mark.parametrize("revise", [False, True])
def test_a_refused_publish_forgets_the_kept_partition(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, revise: bool
) -> None:
    # A file system whose modification times are too coarse to tell two writes apart (and
    # an append that keeps the size): the file's identity misses another writer's change.
    # The publish that finds the file changed is refused, and its retry reads the file again.
    from pipeline.outputs import growth

    monkeypatch.setattr(growth, "_identity", lambda stat: (stat.st_ino, 0, 0))
    kept = writer()
    windows = polls(5, 4)
    for window in windows[:2]:
        window_through(kept, tmp_path, *window)
    window_through(writer(), tmp_path, *windows[2])  # another writer
    start, end, readings = windows[3]
    if revise:  # the rewrite path
        start, end, readings = windows[0]
        readings = [(sensor, first, count, value + 0.5) for sensor, first, count, value in readings]
    with pytest.raises(OutputError, match="changed while its window was built"):
        window_through(kept, tmp_path, start, end, readings)
    published, count = window_through(kept, tmp_path, start, end, readings)
    assert count == read_netcdf_table(published.path)[0].record_count == (3 if revise else 4) * 60


def test_windows_of_one_partition_published_by_threads_of_one_writer(tmp_path: Path) -> None:
    # The inline builder publishes in threads: windows of one partition racing through one
    # writer are refused and retried (another's append changed the file), never crash, and
    # every record lands once.
    kept = writer()
    windows = polls(5, 24)
    window_through(kept, tmp_path, *windows[0])

    def publish_all(mine: list[tuple[datetime, datetime, Any]]) -> None:
        for window in mine:
            for _ in range(100):
                try:
                    window_through(kept, tmp_path, *window)
                    break
                except OutputError:
                    continue  # refused: the file changed; the window is retried

    shares = [windows[1 + i :: 4] for i in range(4)]
    assert race(*[functools.partial(publish_all, share) for share in shares], switch_s=1e-5) == []
    path = next(tmp_path.rglob("*.nc"))
    assert read_netcdf_table(path)[0].record_count == 24 * 60
