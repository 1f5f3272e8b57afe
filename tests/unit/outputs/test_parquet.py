"""The Parquet writer: ERDDAP's column layout, NaN versus absent records, merging round trips,
the attributes kept in the file, and the datasets.xml entry built from them."""

from __future__ import annotations

import errno
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from pipeline.exceptions import OutputError
from pipeline.outputs import parquet as parquet_module
from pipeline.outputs.cf_names import variable_name as column_name
from pipeline.outputs.datasets_xml import render_datasets_xml
from pipeline.outputs.parquet import ParquetWriter, read_parquet_table
from pipeline.outputs.publish import HashingSink
from pipeline.outputs.table import ABSENT_FLAG
from pipeline.records import ScalarBatch, SensorInfo, Window, scalar_batch
from pipeline.settings import load_settings
from tests.erddap.checker import check_datasets_xml, format_violations
from tests.unit.outputs.helpers import COND, DAY, DEPTH, TEMP, ctd_meta, times

HOUR = timedelta(hours=1)
WINDOW = Window(DAY + 5 * HOUR, DAY + 6 * HOUR)
PATH = Path("onc_bacax_ctd/2026/onc_bacax_ctd_20261120.parquet")


def writer() -> ParquetWriter:
    meta = ctd_meta()
    return ParquetWriter({meta.dataset_id: meta}, partition="daily")


def test_columns_types_and_rows(tmp_path: Path) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    t = times(DAY + 5 * HOUR, 3)
    w.add_scalar(TEMP, t, [3.9012, math.nan, 1e-5], [1, 9, 2])
    w.add_scalar(DEPTH, t[1:], [985.25, 985.5], [1, 1])
    published = w.publish()
    assert published is not None
    assert published.path == tmp_path / PATH
    table = pq.read_table(published.path)
    assert table.column_names == [
        "time",
        "station",
        "latitude",
        "longitude",
        "depth",
        "Temperature",
        "Temperature_qc",
        "depth_measured",
        "depth_measured_qc",
    ]
    types = {f.name: f.type for f in table.schema}
    assert types["time"] == pa.float64()
    assert types["Temperature"] == pa.float64()
    assert types["Temperature_qc"] == pa.int8()
    assert pa.types.is_string(types["station"].value_type)
    # No nulls anywhere: absent is NaN with the flag fill, which ERDDAP is told about.
    assert all(table.column(name).null_count == 0 for name in table.column_names)
    start = (DAY + 5 * HOUR).timestamp()
    assert table.column("time").to_pylist() == [start, start + 1, start + 2]
    # The station is the location, at the location's position (not the deployment's).
    assert table.column("station").to_pylist() == ["BACAX"] * 3
    assert table.column("latitude").to_pylist() == [48.3] * 3
    assert table.column("depth").to_pylist() == [982.0] * 3
    temp = table.column("Temperature").to_pylist()
    assert temp[0] == 3.9012
    assert math.isnan(temp[1])
    assert temp[2] == 1e-5
    assert table.column("Temperature_qc").to_pylist() == [1, 9, 2]
    assert math.isnan(table.column("depth_measured").to_pylist()[0])
    assert table.column("depth_measured_qc").to_pylist() == [ABSENT_FLAG, 1, 1]


def test_a_partition_is_written_in_row_groups_and_reads_back_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(parquet_module, "ROW_GROUP_ROWS", 2)
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    t = times(DAY + 5 * HOUR, 5)
    w.add_scalar(TEMP, t, [1.0, math.nan, 3.0, 4.0, 5.0], [1, 9, 1, 1, 1])
    published = w.publish()
    assert published is not None
    assert pq.ParquetFile(published.path).metadata.num_row_groups == 3
    table, _ = read_parquet_table(published.path)
    assert table.record_count == 5
    assert table.flags[0].tolist() == [1, 9, 1, 1, 1]
    assert math.isnan(table.values[0][1])
    assert table.values[0][4] == 5.0


def test_attributes_are_kept_in_the_file(tmp_path: Path) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    w.add_scalar(TEMP, times(DAY + 5 * HOUR, 2), [1.0, 2.0], [1, 1])
    schema = pq.read_schema(w.publish().path)  # type: ignore[union-attr]
    glob = {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}
    assert glob["cdm_data_type"] == "TimeSeries"
    assert glob["institution"] == "Ocean Networks Canada"
    assert glob["time_coverage_start"] == "2026-11-20T05:00:00.000Z"
    field = {
        k.decode(): v.decode() for k, v in (schema.field("Temperature").metadata or {}).items()
    }
    assert field["units"] == "degree_Celsius"
    assert field["standard_name"] == "sea_water_temperature"
    assert field["onc_sensor_code"] == "Temperature"
    qc = {
        k.decode(): v.decode() for k, v in (schema.field("Temperature_qc").metadata or {}).items()
    }
    assert qc["_FillValue"] == str(ABSENT_FLAG)
    assert qc["flag_values"].split()[:3] == ["0", "1", "2"]
    assert len(qc["flag_values"].split()) == len(qc["flag_meanings"].split())


def test_a_pages_own_flag_table_names_the_flags(tmp_path: Path) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    page = [(TEMP, times(DAY + 5 * HOUR, 2), [1.0, 2.0], [1, 4])]
    assert w.add(scalar_batch(page, {"1": "Good", "4": "Bad"})) == 2
    schema = pq.read_schema(w.publish().path)  # type: ignore[union-attr]
    qc = schema.field("Temperature_qc").metadata or {}
    assert (qc[b"flag_values"], qc[b"flag_meanings"]) == (b"1 4", b"good bad")


def test_round_trip_keeps_nan_flags_and_absent_records(tmp_path: Path) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    t = times(DAY + 5 * HOUR, 4)
    values = [1.0, math.nan, 0.1 + 0.2, -1e300]
    w.add_scalar(TEMP, t, values, [1, 9, 3, 4])
    w.add_scalar(COND, t[:2], [3.355, math.nan], [1, 9])
    table, _ = read_parquet_table(w.publish().path)  # type: ignore[union-attr]
    # The sensor itself comes back (code, name, unit, property), not only its column name.
    assert table.sensors == [TEMP, COND]
    got = table.values[0].tolist()
    assert got[0] == 1.0
    assert math.isnan(got[1])
    assert got[2:] == values[2:]
    assert math.isnan(table.values[1][1])
    assert table.flags.tolist() == [[1, 9, 3, 4], [1, 9, ABSENT_FLAG, ABSENT_FLAG]]
    assert table.times.tolist()[1] - table.times.tolist()[0] == 1000


def test_a_second_window_merges_into_the_partition(tmp_path: Path) -> None:
    first = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    first.add_scalar(TEMP, times(DAY + 5 * HOUR, 2), [1.0, 2.0], [1, 1])
    created = first.publish()
    assert created is not None
    assert created.replaced is False
    later = Window(DAY + 6 * HOUR, DAY + 7 * HOUR)
    second = writer().open_window(tmp_path, "onc_bacax_ctd", later)
    assert second.record_count == 2  # the partition's records, read back
    # A re-read of the first window's range is outside this window: dropped, not doubled.
    second.add_scalar(TEMP, times(DAY + 5 * HOUR, 1), [99.0], [4])
    second.add_scalar(TEMP, times(DAY + 6 * HOUR, 2), [3.0, math.nan], [1, 9])
    second.add_scalar(COND, times(DAY + 6 * HOUR, 1), [3.3], [2])
    published = second.publish()
    assert published is not None
    assert published.replaced is True
    table, attrs = read_parquet_table(published.path)
    assert [s.code for s in table.sensors] == ["Temperature", "cond"]
    assert table.values[0][:3].tolist() == [1.0, 2.0, 3.0]
    assert math.isnan(table.values[0][3])
    assert table.flags.tolist() == [[1, 1, 1, 9], [ABSENT_FLAG, ABSENT_FLAG, 2, ABSENT_FLAG]]
    assert attrs["time_coverage_end"] == "2026-11-20T06:00:01.000Z"
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [PATH.name]


def test_provenance_is_carried_over_rewrites(tmp_path: Path) -> None:
    meta = ctd_meta()
    for hour, harvested in ((5, DAY + 6 * HOUR), (6, DAY + 7 * HOUR), (7, DAY + 8 * HOUR)):
        clock = (lambda at: lambda: at)(harvested)
        w = ParquetWriter({meta.dataset_id: meta}, clock=clock).open_window(
            tmp_path, meta.dataset_id, Window(DAY + hour * HOUR, DAY + (hour + 1) * HOUR)
        )
        w.add_scalar(TEMP, times(DAY + hour * HOUR, 1), [1.0], [1])
        w.publish()
    _, attrs = read_parquet_table(tmp_path / PATH)
    assert attrs["date_created"] == "2026-11-20T06:00:00Z"  # the first harvest's
    assert attrs["date_modified"] == "2026-11-20T08:00:00Z"
    history = attrs["history"].splitlines()
    # The first harvest and the latest one, not one line per rewrite.
    assert [line[:20] for line in history] == ["2026-11-20T06:00:00Z", "2026-11-20T08:00:00Z"]
    assert "token" not in attrs["history"]


def test_lookback_replaces_a_record_instead_of_adding_one(tmp_path: Path) -> None:
    first = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    first.add_scalar(TEMP, times(DAY + 5 * HOUR, 2), [1.0, math.nan], [1, 9])
    first.publish()
    again = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    again.add_scalar(TEMP, times(DAY + 5 * HOUR, 2), [1.0, 2.5], [1, 2])
    table, _ = read_parquet_table(again.publish().path)  # type: ignore[union-attr]
    assert table.values.tolist() == [[1.0, 2.5]]
    assert table.flags.tolist() == [[1, 2]]


def test_unchanged_file_is_left_alone(tmp_path: Path) -> None:
    t = times(DAY + 5 * HOUR, 2)
    first = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    first.add_scalar(TEMP, t, [1.0, math.nan], [1, 9])
    published = first.publish()
    assert published is not None
    stat = published.path.stat()
    again = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    again.add_scalar(TEMP, t, [1.0, math.nan], [1, 9])  # NaN equals NaN: nothing changed
    assert not again.changed
    same = again.publish()
    assert same is not None
    assert same.replaced is False
    assert (same.size, same.sha256) == (published.size, published.sha256)
    after = published.path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (stat.st_ino, stat.st_mtime_ns)


def test_published_atomically_with_its_digest(tmp_path: Path) -> None:
    import hashlib

    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    w.add_scalar(TEMP, times(DAY + 5 * HOUR, 2), [1.0, 2.0], [1, 1])
    published = w.publish()
    assert published is not None
    data = published.path.read_bytes()
    assert (published.size, published.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    assert list(tmp_path.rglob("*.tmp")) == []


def test_a_window_without_records_publishes_nothing(tmp_path: Path) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    w.add_scalar(TEMP, times(DAY + 7 * HOUR, 2), [1.0, 2.0], [1, 1])  # outside the window
    assert w.publish() is None
    assert not (tmp_path / PATH).exists()


def test_bad_existing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / PATH
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(OutputError, match="unreadable") as caught:
        writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    assert caught.value.path == str(path)


def test_sensor_codes_that_collide_are_refused(tmp_path: Path) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    t = times(DAY + 5 * HOUR, 1)
    w.add_scalar(TEMP, t, [1.0], [1])
    # Its column would be Temperature's flag column.
    w.add_scalar(SensorInfo("Temperature_qc", None, None, None), t, [1.0], [1])
    with pytest.raises(OutputError, match="same column name 'Temperature_qc'"):
        w.publish()
    assert not (tmp_path / PATH).exists()


@pytest.mark.parametrize(
    ("code", "name"),
    [("Temperature", "Temperature"), ("depth", "depth_measured"), ("2m temp", "s_2m_temp")],
)
def test_column_names_are_erddap_safe(code: str, name: str) -> None:
    assert column_name(code) == name


def test_writers_import_pyarrow_only_for_the_formats_that_use_it() -> None:
    # Parquet is written by Arrow and CSV rendered by its kernels; JSON Lines needs neither.
    probe = (
        "import sys\n"
        "from pipeline.outputs.writers import LazyWriters\n"
        "w = LazyWriters({}, 'daily')\n"
        "w['jsonl']; w['rawtext']; w['jsonlcsv']\n"
        "assert 'pyarrow' not in sys.modules, 'pyarrow imported without parquet or csv'\n"
        "w['csv']\n"
        "assert 'pyarrow' in sys.modules\n"
        "w['parquet']\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_erddap_config_entry_carries_the_attributes_and_loads(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    stream = {
        "name": "ctd",
        "kind": "scalardata",
        "location_code": "BACAX",
        "device_category_code": "CTD",
        "formats": ["parquet"],
    }
    out = tmp_path / "out"
    config.write_text(
        yaml.safe_dump({"onc": {"token": "t"}, "output": {"root": str(out)}, "streams": [stream]})
    )
    settings = load_settings(config, environ={}, secrets_dirs=[])
    before = render_datasets_xml(settings)
    assert "no file yet" in before
    w = writer().open_window(out, "onc_bacax_ctd", WINDOW)
    w.add_scalar(TEMP, times(DAY + 5 * HOUR, 2), [1.0, math.nan], [1, 9])
    w.publish()
    xml = render_datasets_xml(settings)
    assert "ERDDAP 2.25 or later" in xml
    root = ET.fromstring(f"<erddapDatasets>{xml}</erddapDatasets>")
    (dataset,) = root.findall("dataset")
    assert dataset.get("type") == "EDDTableFromParquetFiles"
    assert dataset.get("datasetID") == "onc_bacax_ctd"
    assert dataset.findtext("fileNameRegex") == r".*\.parquet"
    variables = {v.findtext("sourceName"): v for v in dataset.findall("dataVariable")}
    assert variables["time"].findtext("addAttributes/att[@name='units']") == (
        "seconds since 1970-01-01T00:00:00Z"
    )
    assert variables["station"].findtext("dataType") == "String"
    temp = variables["Temperature"]
    assert temp.findtext("addAttributes/att[@name='units']") == "degree_Celsius"
    qc = variables["Temperature_qc"]
    assert qc.findtext("dataType") == "byte"
    fill = qc.find("addAttributes/att[@name='_FillValue']")
    assert fill is not None
    assert (fill.get("type"), fill.text) == ("byte", str(ABSENT_FLAG))
    flag_values = qc.find("addAttributes/att[@name='flag_values']")
    assert flag_values is not None
    assert flag_values.get("type") == "byteList"
    glob = {a.get("name"): a.text for a in dataset.findall("addAttributes/att")}
    assert glob["creator_name"] == "Ocean Networks Canada"  # from the file's metadata
    # The newest file's own dates, history and device, not the dataset's.
    assert not {"time_coverage_start", "date_created", "history", "onc_device_code"} & set(glob)
    violations = check_datasets_xml(xml)
    assert violations == [], format_violations(violations)


# A new partition is written as its pages come (`_RowGroups`), not held until publish.


def page(
    start: datetime,
    count: int,
    *sensors: SensorInfo,
    value: float = 1.0,
    flags: str = "",
    step_s: float = 1.0,
) -> ScalarBatch:
    """One page: `count` readings `step_s` apart from `start` for each sensor."""
    t = times(start, count, step_s)
    info = {"1": "Good", "4": "Bad"} if flags else {}
    readings = [value + i for i in range(count)]
    return scalar_batch([(s, t, readings, [1] * count) for s in sensors], info)


def temporaries(root: Path) -> list[Path]:
    return list(root.rglob("*.tmp"))


def test_a_new_partition_is_written_page_by_page(tmp_path: Path) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    # Pages that name a sensor more or less fully: what a page says wins, none erases.
    bare_temp, bare_cond = (SensorInfo(s.code, None, None, None) for s in (TEMP, COND))
    # 10,000 rows: more than the file keeps in memory before writing (`durable.WRITE_SLICE`).
    assert w.add(page(DAY + 5 * HOUR, 10_000, TEMP, bare_cond, step_s=0.1)) == 20_000
    [tmp] = temporaries(tmp_path)
    size = tmp.stat().st_size
    assert size > 0  # the page's rows went to the file
    assert w.record_count == 20_000
    assert w.changed  # by the records written, none held
    later = DAY + 5 * HOUR + timedelta(seconds=1000)
    assert w.add(page(later, 10_000, bare_temp, COND, flags="x", step_s=0.1)) == 20_000
    assert tmp.stat().st_size > size
    last = DAY + 5 * HOUR + timedelta(seconds=2000)
    assert w.add(page(last, 2, TEMP)) == 2  # a sensor without readings in a page
    assert w.record_count == 40_002
    published = w.publish()
    assert published is not None
    assert w.record_count == 40_002  # what the build reports once published
    assert temporaries(tmp_path) == []
    assert pq.ParquetFile(published.path).metadata.num_row_groups == 3
    table, attrs = read_parquet_table(published.path)
    assert table.sensors == [TEMP, COND]
    assert table.values[0].tolist()[9_998:10_002] == [9_999.0, 10_000.0, 1.0, 2.0]
    assert table.values[0].tolist()[-3:] == [10_000.0, 1.0, 2.0]
    assert table.flags[1].tolist()[-3:] == [1, ABSENT_FLAG, ABSENT_FLAG]
    assert math.isnan(table.values[1][-1])
    assert table.record_count == 40_002
    # The attributes are the whole file's, and the last flag table a page gave: not the
    # first page's.
    assert attrs["time_coverage_start"] == "2026-11-20T05:00:00.000Z"
    assert attrs["time_coverage_end"] == "2026-11-20T05:33:21.000Z"
    schema = pq.read_schema(published.path)
    qc = schema.field("Temperature_qc").metadata or {}
    assert (qc[b"flag_values"], qc[b"flag_meanings"]) == (b"1 4", b"good bad")
    assert (schema.field("cond").metadata or {})[b"long_name"] == b"Conductivity"
    assert pa.types.is_dictionary(schema.field("station").type)


@pytest.mark.parametrize(
    "second",
    [
        # A sensor the file has no column for, and a sensor the first page named less.
        page(DAY + 5 * HOUR + timedelta(seconds=3), 2, TEMP, DEPTH, value=10.0),
        # Rows at or before the last one written, a value changed: the later page wins.
        page(DAY + 5 * HOUR + timedelta(seconds=2), 2, TEMP, value=10.0),
    ],
    ids=["new sensor", "overlap"],
)
def test_a_page_that_does_not_follow_has_the_partition_merged_whole(
    tmp_path: Path, second: ScalarBatch
) -> None:
    first = page(DAY + 5 * HOUR, 3, SensorInfo(TEMP.code, None, None, None))
    expected = writer().open_window(tmp_path / "whole", "onc_bacax_ctd", WINDOW)
    expected.add_scalar(*first.columns()[0])
    for column in second.columns():
        expected.add_scalar(*column)  # one merge at publish
    w = writer().open_window(tmp_path / "paged", "onc_bacax_ctd", WINDOW)
    w.add(first)
    assert len(temporaries(tmp_path / "paged")) == 1
    w.add(second)
    assert temporaries(tmp_path / "paged") == []  # read back and dropped
    assert w.record_count == expected.record_count
    got, _ = read_parquet_table(w.publish().path)  # type: ignore[union-attr]
    want, _ = read_parquet_table(expected.publish().path)  # type: ignore[union-attr]
    assert got.same_as(want)
    assert got.sensors == want.sensors
    assert got.sensors[0] == TEMP  # as the later page described it
    assert got.values[0].tolist()[-2:] == [10.0, 11.0]  # the later page's


def test_a_streamed_partition_dropped_or_failing_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    w.add(page(DAY + 5 * HOUR, 3, TEMP))
    w.discard()
    assert temporaries(tmp_path) == []
    assert not (tmp_path / PATH).exists()

    failing = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    failing.add(page(DAY + 5 * HOUR, 3, TEMP))

    def full(self: object, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(HashingSink, "write", full)
    with pytest.raises(OutputError, match="no space left on device") as caught:
        failing.add(page(DAY + 5 * HOUR + timedelta(seconds=3), 40_000, TEMP))
    assert caught.value.path == str(tmp_path / PATH)
    assert temporaries(tmp_path) == []
    monkeypatch.undo()
    # Publishing what is left would lose the rows written before: it fails instead.
    with pytest.raises(OutputError):
        failing.publish()
    assert not (tmp_path / PATH).exists()
    failing.discard()  # what the engine does next: nothing left to drop, no error
    assert not (tmp_path / PATH).exists()


def test_going_back_to_merging_keeps_what_pages_written_said_of_a_sensor(tmp_path: Path) -> None:
    bare = SensorInfo(TEMP.code, None, None, None)
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    w.add(page(DAY + 5 * HOUR, 2, bare))
    w.add(page(DAY + 5 * HOUR + timedelta(seconds=2), 2, TEMP))  # written: it follows
    w.add(page(DAY + 5 * HOUR + timedelta(seconds=4), 2, bare, DEPTH))  # a new column
    table, _ = read_parquet_table(w.publish().path)  # type: ignore[union-attr]
    assert table.sensors == [TEMP, DEPTH]
    assert table.record_count == 8


def test_a_streamed_partition_that_fails_to_publish_is_not_published_half(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    w.add(page(DAY + 5 * HOUR, 3, TEMP))

    def full(self: object, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(HashingSink, "write", full)
        with pytest.raises(OutputError, match="no space left on device"):
            w.publish()  # the footer cannot be written
    assert temporaries(tmp_path) == []
    with pytest.raises(OutputError):
        w.publish()  # again: not an empty partition, and not nothing to publish
    assert not (tmp_path / PATH).exists()
