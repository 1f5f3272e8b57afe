"""The NetCDF writer on synthetic readings: layout, attributes, merging, atomic rewrites."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

import netCDF4
import numpy as np
import pytest

from pipeline.exceptions import OutputError
from pipeline.outputs import nc3
from pipeline.outputs import netcdf as netcdf_module
from pipeline.outputs.cf_names import variable_name
from pipeline.outputs.growth import Lru
from pipeline.outputs.netcdf import NetcdfWriter, read_netcdf_table
from pipeline.records import Window
from tests.unit.outputs.helpers import COND, DAY, DEPTH, RESIDUAL, TEMP, ctd_meta, times

HOUR = timedelta(hours=1)
NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)


def writer(**attributes: str) -> NetcdfWriter:
    meta = ctd_meta(**attributes)
    return NetcdfWriter({meta.dataset_id: meta}, clock=lambda: NOW)


def window(hour: int) -> Window:
    return Window(DAY + hour * HOUR, DAY + (hour + 1) * HOUR)


def write_hour(root: Path, hour: int, count: int = 10, *, sensors=(TEMP, COND)) -> Path:  # type: ignore[no-untyped-def]
    w = writer().open_window(root, "onc_bacax_ctd", window(hour))
    t = times(DAY + hour * HOUR, count)
    for n, sensor in enumerate(sensors):
        values = [float(i) + n for i in range(count)]
        flags = [1] * count
        values[1], flags[1] = math.nan, 9  # an ONC gap-fill row
        w.add_scalar(sensor, t, values, flags)
    published = w.publish()
    assert published is not None
    return published.path


def test_file_layout_and_variable_attributes(tmp_path: Path) -> None:
    path = write_hour(tmp_path, 5, sensors=(TEMP, COND, DEPTH, RESIDUAL))
    assert path == tmp_path / "onc_bacax_ctd/2026/onc_bacax_ctd_20261120.nc"
    with netCDF4.Dataset(path) as ds:
        assert ds.data_model == "NETCDF3_64BIT_OFFSET"
        assert ds.dimensions["time"].isunlimited()
        assert ds.featureType == "timeSeries"
        assert ds["time"].dtype == np.float64
        assert ds["time"][0] == (DAY + 5 * HOUR).timestamp()
        assert ds["station"].cf_role == "timeseries_id"
        assert netCDF4.chartostring(ds["station"][:])[0] == "BACAX"
        assert ds["Temperature"].dimensions == ("time", "station")
        # The station's position is the location's, constant whatever the deployment...
        assert (ds["latitude"][0], ds["longitude"][0], ds["depth"][0]) == (48.3, -126.0, 982.0)
        # ...and the deployment active at the data's time (the second, with its DOI) is kept.
        assert (
            ds.onc_deployment_latitude,
            ds.onc_deployment_longitude,
            ds.onc_deployment_depth,
        ) == (48.316585, -126.050798, 985.0)
        assert ds.doi == "10.80242/abc"
        # Every variable has an ioos_category ERDDAP knows.
        categories = {name: var.ioos_category for name, var in ds.variables.items()}
        assert categories == {
            "time": "Time",
            "station": "Identifier",
            "latitude": "Location",
            "longitude": "Location",
            "depth": "Location",
            "Temperature": "Temperature",
            "Temperature_qc": "Quality",
            "cond": "Salinity",
            "cond_qc": "Quality",
            "depth_measured": "Location",
            "depth_measured_qc": "Quality",
            "dart_pressure_residual": "Pressure",
            "dart_pressure_residual_qc": "Quality",
        }
        assert ds.comment
        temp = ds["Temperature"]
        assert (temp.standard_name, temp.units) == ("sea_water_temperature", "degree_Celsius")
        assert math.isnan(temp._FillValue)
        assert temp.ancillary_variables == "Temperature_qc"
        qc = ds["Temperature_qc"]
        assert qc.flag_values.tolist() == [0, 1, 2, 3, 4, 6, 7, 8, 9]
        assert qc.flag_meanings.split()[9 - 1 - 1] == "interpolated_value"
        assert qc.flag_meanings.split()[-1] == "missing_data"
        assert ds["cond"].units == "S m-1"
        # A sensor code equal to a coordinate name is renamed, and still a depth (positive).
        assert variable_name("depth") == "depth_measured"
        assert ds["depth_measured"].standard_name == "depth"
        assert ds["depth_measured"].positive == "down"
        # No invented standard name for a sensor ONC gives no property.
        residual = ds["dart_pressure_residual"]
        assert "standard_name" not in residual.ncattrs()
        assert residual.long_name == "DART Pressure Residual"
        assert residual.units == "dbar"


def test_global_attributes_follow_settings_and_discovery(tmp_path: Path) -> None:
    w = writer(title="My title", publisher_name="Example RA").open_window(
        tmp_path, "onc_bacax_ctd", window(5)
    )
    w.add_scalar(TEMP, times(DAY + 5 * HOUR, 3), [1.0, 2.0, 3.0], [1, 1, 1])
    path = w.publish().path  # type: ignore[union-attr]
    with netCDF4.Dataset(path) as ds:
        assert ds.title == "My title"
        assert ds.publisher_name == "Example RA"
        assert "publisher_email" not in ds.ncattrs()  # ONC's details are not mixed in
        assert ds.id == "onc_bacax_ctd"
        assert ds.time_coverage_start == "2026-11-20T05:00:00.000Z"
        assert ds.time_coverage_end == "2026-11-20T05:00:02.000Z"
        assert ds.time_coverage_duration == "PT2.000S"
        assert ds.time_coverage_resolution == "PT1.000S"
        assert ds.geospatial_lat_min == ds.geospatial_lat_max == 48.3
        assert "onc-pipeline 0.1.0" in ds.history
        assert (
            "/api/scalardata/location?locationCode=BACAX&deviceCategoryCode=CTD"
            "&dateFrom=2026-11-20T00:00:00Z&dateTo=2026-11-21T00:00:00Z" in ds.history
        )
        assert "token" not in ds.history.lower()
        assert ds.date_modified == "2026-11-20T12:00:00Z"


def test_values_nan_and_flags_round_trip(tmp_path: Path) -> None:
    path = write_hour(tmp_path, 5)
    table, _ = read_netcdf_table(path)
    assert [s.code for s in table.sensors] == ["Temperature", "cond"]
    assert table.sensors[0].unit == "C"  # ONC's own unit is kept for round trips
    assert math.isnan(table.values[0][1])
    assert table.flags[0][1] == 9
    assert table.values[1].tolist()[2:4] == [3.0, 4.0]


def test_windows_of_a_day_merge_into_one_file(tmp_path: Path) -> None:
    paths = {write_hour(tmp_path, hour) for hour in (5, 3, 4)}
    assert [p.name for p in paths] == ["onc_bacax_ctd_20261120.nc"]
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["onc_bacax_ctd_20261120.nc"]
    table, _ = read_netcdf_table(paths.pop())
    assert table.record_count == 3 * 10 * 2
    assert np.all(np.diff(table.times) > 0)


def test_ten_growing_rewrites_keep_every_record_once(tmp_path: Path) -> None:
    path = None
    replaced = []
    for step in range(10):
        w = writer().open_window(tmp_path, "onc_bacax_ctd", window(6))
        # Each pass re-fetches the last 5 readings and adds 10 new ones.
        start = max(0, step * 10 - 5)
        t = times(DAY + 6 * HOUR + timedelta(seconds=start), step * 10 + 10 - start)
        w.add_scalar(TEMP, t, [float(start + i) for i in range(len(t))], [1] * len(t))
        published = w.publish()
        assert published is not None
        path, _ = published.path, replaced.append(published.replaced)
    # The second harvest adds the file's second `history` line, a header that grows: that one
    # publish rewrites the partition (replaced). After it, re-fetched readings equal those in
    # the file, nothing existing changes and the new ones are appended in place.
    assert replaced == [False, True] + [False] * 8
    table, _ = read_netcdf_table(path)  # type: ignore[arg-type]
    assert table.record_count == 100
    assert table.values[0].tolist() == [float(i) for i in range(100)]
    assert not list(tmp_path.rglob("*.tmp"))


def test_an_unchanged_partition_is_not_rewritten(tmp_path: Path) -> None:
    path = write_hour(tmp_path, 5)
    before = path.stat().st_mtime_ns, path.stat().st_ino
    w = writer().open_window(tmp_path, "onc_bacax_ctd", window(5))
    t = times(DAY + 5 * HOUR, 10)
    values = [float(i) for i in range(10)]
    values[1] = math.nan
    flags = [1] * 10
    flags[1] = 9
    w.add_scalar(TEMP, t, values, flags)
    assert not w.changed
    published = w.publish()
    assert published is not None
    assert not published.replaced
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == before


def test_a_failed_rewrite_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_hour(tmp_path, 5)
    content = path.read_bytes()
    # An hour before the file's records: not an append, the partition is rewritten.
    w = writer().open_window(tmp_path, "onc_bacax_ctd", window(3))
    w.add_scalar(TEMP, times(DAY + 3 * HOUR, 3), [1.0, 2.0, 3.0], [1, 1, 1])

    def explode(*args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(netcdf_module, "_record_blocks", explode)
    with pytest.raises(OutputError, match="no space left"):
        w.publish()
    assert path.read_bytes() == content
    assert not list(tmp_path.rglob("*.tmp"))


def test_nothing_to_write_publishes_nothing(tmp_path: Path) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", window(5))
    assert w.add_scalar(TEMP, times(DAY, 3), [1.0, 2.0, 3.0], [1, 1, 1]) == 0  # outside
    assert w.publish() is None
    assert not list(tmp_path.rglob("*.nc"))


def test_a_corrupt_existing_file_is_an_output_error(tmp_path: Path) -> None:
    path = tmp_path / "onc_bacax_ctd/2026/onc_bacax_ctd_20261120.nc"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not netcdf")
    with pytest.raises(OutputError, match="unreadable"):
        writer().open_window(tmp_path, "onc_bacax_ctd", window(5))


def test_unknown_datasets_are_refused(tmp_path: Path) -> None:
    # Raw lines refused: tests/unit/outputs/test_assembly.py
    with pytest.raises(OutputError, match="no discovery metadata"):
        writer().open_window(tmp_path, "onc_other", window(5))


def test_page_flag_info_replaces_the_default_table(tmp_path: Path) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", window(5))
    w.note_page({"1": "Good", "4": "Bad"})
    w.add_scalar(TEMP, times(DAY + 5 * HOUR, 2), [1.0, 2.0], [1, 4])
    with netCDF4.Dataset(w.publish().path) as ds:  # type: ignore[union-attr]
        assert ds["Temperature_qc"].flag_values.tolist() == [1, 4]
        assert ds["Temperature_qc"].flag_meanings == "good bad"


def test_partition_writers_cover_their_partition_and_jsonl_its_window(tmp_path: Path) -> None:
    from pipeline.outputs.csv import CsvWriter
    from pipeline.outputs.jsonl import JsonlWriter
    from pipeline.outputs.rawtext import RawTextWriter

    meta = ctd_meta()
    nc = writer().open_window(tmp_path, "onc_bacax_ctd", window(5))
    csv = CsvWriter({meta.dataset_id: meta}).open_window(tmp_path, "onc_bacax_ctd", window(5))
    raw = RawTextWriter().open_window(tmp_path, "onc_bacax_ctd", window(5))
    for w in (nc, csv, raw):
        assert w.covers == (DAY, DAY + 24 * HOUR)
        assert (w.time_start, w.time_end) == (DAY, DAY + 24 * HOUR)
    jsonl = JsonlWriter().open_window(tmp_path, "onc_bacax_ctd", window(5))
    assert jsonl.covers is None


def test_a_file_with_another_station_position_is_rewritten_by_the_next_pass(
    tmp_path: Path,
) -> None:
    # Files written before stations were ONC locations hold the deployment's position.
    path = write_hour(tmp_path, 5)
    with netCDF4.Dataset(path, "a") as ds:
        ds["latitude"][:] = [48.316585]
    # The same records again (a backfill over the range): nothing new, yet the file is
    # rewritten so that the station has one position across the dataset.
    again = write_hour(tmp_path, 5)
    with netCDF4.Dataset(again) as ds:
        assert ds["latitude"][0] == 48.3
    mtime = again.stat().st_mtime_ns
    write_hour(tmp_path, 5)  # now current: left alone
    assert again.stat().st_mtime_ns == mtime


@pytest.mark.parametrize("codes", [["AB"], ["BACAX"], ["AB", "CDE"]])
def test_the_fixed_part_is_what_netcdf4_writes_to_disk_whatever_its_memory_held(
    tmp_path: Path, codes: list[str]
) -> None:
    # netCDF-C mallocs its in-memory file and, with fill off, never writes padding: those
    # bytes are poisoned here, as a reused heap may leave them; what is kept must be the
    # file netCDF4 writes on disk, up to its records.
    def render(target: str, memory: int | None) -> memoryview | None:
        kwargs = {} if memory is None else {"memory": memory}
        ds = netCDF4.Dataset(target, "w", format="NETCDF3_64BIT_OFFSET", **kwargs)
        ds.set_fill_off()
        ds.createDimension("time", None)
        ds.createDimension("station", len(codes))
        ds.createDimension("name_strlen", max(map(len, codes)))
        ds.setncattr("title", "small")
        ds.createVariable("time", "f8", ("time",))
        station = ds.createVariable("station", "S1", ("station", "name_strlen"))
        station[:] = netCDF4.stringtochar(np.array(codes, dtype=f"S{max(map(len, codes))}"))
        depth = ds.createVariable("depth", "f4", ("station",))  # 4 bytes: padded to 4
        depth[:] = [1.5] * len(codes)
        ds.createVariable("temp", "f8", ("time", "station"))
        result: memoryview | None = ds.close()
        return result

    image = bytearray(render("mem.nc", 1))  # type: ignore[arg-type]
    header = nc3.parse_header(bytes(image))
    kept = bytearray(len(image))
    kept[: header.size] = b"\1" * header.size
    for var in header.variables.values():
        if not header.is_record(var):
            size = int(np.prod([header.dims[d][1] for d in var.dim_ids]))
            n = size * nc3.NC_TYPES[var.nc_type].itemsize
            kept[var.begin : var.begin + n] = b"\1" * n
    poisoned = bytes(b if keep else 0xAB for b, keep in zip(image, kept, strict=True))
    render(str(tmp_path / "disk.nc"), None)
    on_disk = (tmp_path / "disk.nc").read_bytes()
    expected = on_disk.ljust(header.records_begin, b"\0")[: header.records_begin]
    assert nc3.fixed_part(header, poisoned) == expected
    assert 0xAB in poisoned[: header.records_begin]  # there was something to clean


def test_an_error_while_rendering_the_header_is_the_one_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", window(3))
    w.add_scalar(TEMP, times(DAY + 3 * HOUR, 3), [1.0, 2.0, 3.0], [1, 1, 1])

    def broken(*args: object, **kwargs: object) -> dict[str, object]:
        raise ValueError("an attribute that cannot be rendered")

    monkeypatch.setattr(netcdf_module.NetcdfWindowWriter, "_global_attributes", broken)
    with pytest.raises(ValueError, match="cannot be rendered"):
        w.publish()
    assert not list(tmp_path.rglob("*"))  # nothing was written


def test_a_dataset_s_next_partition_reuses_its_header_byte_for_byte(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Days of one dataset, each its own partition: the header netCDF4 rendered for one is
    # patched for the next while only global attribute values change and keep their sizes.
    days = [
        (10, (TEMP, COND)),  # time_coverage_duration PT9.000S
        (8, (TEMP, COND)),  # another time coverage, PT7.000S: patched
        (30, (TEMP, COND)),  # PT29.000S takes 12 bytes, not 8: rendered again
        (40, (TEMP, COND)),  # PT39.000S: patched
        (5, (TEMP, COND, DEPTH)),  # a new sensor, new variables: rendered again
        (7, (TEMP, COND, DEPTH)),  # patched
    ]
    real = netCDF4.Dataset
    rendered: list[str] = []

    def counted(*args: object, **kwargs: object) -> netCDF4.Dataset:
        rendered.append(str(args[0]))
        return real(*args, **kwargs)

    monkeypatch.setattr(netcdf_module.netCDF4, "Dataset", counted)

    def write_days(root: Path) -> list[bytes]:
        files = []
        for day, (count, sensors) in enumerate(days):
            start = DAY + timedelta(days=day)
            w = writer().open_window(root, "onc_bacax_ctd", Window(start, start + HOUR))
            for n, sensor in enumerate(sensors):
                values = [float(i) + n for i in range(count)]
                w.add_scalar(sensor, times(start, count), values, [1] * count)
            published = w.publish()
            assert published is not None
            files.append(published.path.read_bytes())
        return files

    patched = write_days(tmp_path / "patched")
    assert len(rendered) == 3
    monkeypatch.setattr(netcdf_module, "_RENDERED", Lru(0))
    rendered.clear()
    fresh = write_days(tmp_path / "fresh")
    assert len(rendered) == len(days)  # netCDF4 rendered every header
    assert patched == fresh
    header = nc3.parse_header(patched[3])
    assert header.value(header.attributes["time_coverage_duration"]) == "PT39.000S"


def test_a_header_is_patched_only_for_values_of_the_kinds_it_was_rendered_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # netCDF4 picks an attribute's type from the value's kind: a float32 where a float was
    # rendered would be an NC_FLOAT in a fresh rendering, not a patched NC_DOUBLE.
    given: list[dict[str, object]] = []
    real = netcdf_module.NetcdfWindowWriter._global_attributes

    def recorded(self: netcdf_module.NetcdfWindowWriter, *args: object) -> dict[str, object]:
        given.append(real(self, *args))  # type: ignore[arg-type]
        return given[-1]

    monkeypatch.setattr(netcdf_module.NetcdfWindowWriter, "_global_attributes", recorded)
    path = write_hour(tmp_path, 3)
    rendering = netcdf_module._RENDERED.get(path.parent)
    assert rendering is not None
    attributes = given[-1]
    same = rendering.patched(rendering.layout, attributes)
    assert same is not None
    assert bytes(same[1]) == rendering.head
    narrower = {**attributes, "onc_deployment_depth": np.float32(7.25)}
    assert rendering.patched(rendering.layout, narrower) is None
    assert rendering.patched(rendering.layout, {**attributes, "title": "x" * 999}) is None
    variables = rendering.layout.variables
    name, attrs = next((n, a) for n, a in variables.items() if "_FillValue" in a and "_qc" not in n)
    changed = {**variables, name: {**attrs, "_FillValue": np.float32(attrs["_FillValue"])}}
    assert rendering.patched(rendering.layout._replace(variables=changed), attributes) is None
    assert rendering.patched(rendering.layout._replace(strlen=99), attributes) is None
    # Another station or position: the station variables' values, not attributes, differ.
    (code, position), *others = rendering.layout.stations
    deeper = np.frombuffer(position, dtype=np.float64) * [1.0, 1.0, -1.0]
    moved = rendering.layout._replace(stations=((code, deeper.tobytes()), *others))
    assert rendering.patched(moved, attributes) is None


def test_attribute_changes_patch_a_header_into_the_bytes_netcdf4_writes() -> None:
    def render(attributes: dict[str, object]) -> bytes:
        ds = netCDF4.Dataset("x.nc", "w", format="NETCDF3_64BIT_OFFSET", memory=1)
        ds.createDimension("time", None)
        ds.setncatts(attributes)
        ds.createVariable("time", "f8", ("time",))
        image = bytes(ds.close())
        return image[: nc3.parse_header(image).size]

    base = {"depth": 0.0, "title": "abc", "missing": math.nan}
    before = render(base)
    header = nc3.parse_header(before)
    # Equal as numbers, not as bytes: -0.0, a NaN with its sign bit; netCDF4 drops the
    # trailing NULs of a text.
    for change in ({"depth": -0.0}, {"missing": -math.nan}, {"title": "abc\0"}, {"title": "xyz"}):
        wanted = {**base, **change}
        changes = netcdf_module._attribute_changes(header, wanted)
        assert changes is not None
        patched = bytearray(before)
        for attr, encoded in changes:
            patched[attr.nelems_offset : attr.nelems_offset + len(encoded)] = encoded
        assert bytes(patched) == render(wanted), change
    # netCDF normalises names to NFC: a name the header does not hold as given is no patch.
    assert netcdf_module._attribute_changes(header, {**base, "e\u0301": "x"}) is None
    assert netcdf_module._attribute_changes(header, {**base, "title": "abcde"}) is None


def test_renderings_forget_the_least_recently_used_folder() -> None:
    renderings = Lru[Path, object](2)
    kept = [object(), object(), object()]
    renderings.keep(Path("a"), kept[0])
    renderings.keep(Path("b"), kept[1])
    assert renderings.get(Path("a")) is kept[0]  # used: b is now the oldest
    renderings.keep(Path("c"), kept[2])
    assert renderings.get(Path("b")) is None
    assert renderings.get(Path("a")) is kept[0]
    assert renderings.get(Path("c")) is kept[2]


def test_layouts_differ_where_their_bytes_would() -> None:
    def layout(value: object) -> netcdf_module._Layout:
        return netcdf_module._Layout(4, (("ABCD", b""),), {"v": {"valid_min": value}})

    assert layout(0.0).same_as(layout(0.0))
    assert not layout(0.0).same_as(layout(-0.0))
    assert not layout(math.nan).same_as(layout(-math.nan))
    assert not layout(1.0).same_as(layout(1))  # another kind: another type in the file
    assert not layout("1").same_as(layout(1.0))
