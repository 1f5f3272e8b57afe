"""The CSV writer: ERDDAP's header layout, NaN versus absent cells, merging round trips."""

from __future__ import annotations

import dataclasses
import math
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.exceptions import OutputError
from pipeline.outputs import csv as csv_module
from pipeline.outputs import growth
from pipeline.outputs.csv import CsvWriter, read_csv_table
from pipeline.outputs.metadata import Station
from pipeline.outputs.table import ABSENT_FLAG, WideTable, format_times
from pipeline.records import Window
from tests.unit.outputs.helpers import COND, DAY, DEPTH, TEMP, ctd_meta, times

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
SECOND = timedelta(seconds=1)
WINDOW = Window(DAY + 5 * HOUR, DAY + 6 * HOUR)


def writer(now: datetime | None = None) -> CsvWriter:
    meta = ctd_meta()
    if now is None:
        return CsvWriter({meta.dataset_id: meta}, partition="daily")
    return CsvWriter({meta.dataset_id: meta}, partition="daily", clock=lambda: now)


def test_header_units_and_rows(tmp_path: Path) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    t = times(DAY + 5 * HOUR, 3)
    w.add_scalar(TEMP, t, [3.9012, math.nan, 1e-5], [1, 9, 2])
    w.add_scalar(DEPTH, t[1:], [985.25, 985.5], [1, 1])
    published = w.publish()
    assert published is not None
    assert published.path == tmp_path / "onc_bacax_ctd/2026/onc_bacax_ctd_20261120.csv"
    assert published.path.read_text().splitlines() == [
        "time,station,latitude,longitude,depth,"
        "Temperature,Temperature_qc,depth_measured,depth_measured_qc",
        "UTC,,degrees_north,degrees_east,m,degree_Celsius,,m,",
        # The station is the location, at the location's position (not the deployment's).
        "2026-11-20T05:00:00.000Z,BACAX,48.3,-126.0,982.0,3.9012,1,,",
        "2026-11-20T05:00:01.000Z,BACAX,48.3,-126.0,982.0,NaN,9,985.25,1",
        "2026-11-20T05:00:02.000Z,BACAX,48.3,-126.0,982.0,1e-05,2,985.5,1",
    ]


def test_a_file_without_the_station_column_is_read_and_gets_it(tmp_path: Path) -> None:
    path = tmp_path / "onc_bacax_ctd/2026/onc_bacax_ctd_20261120.csv"
    path.parent.mkdir(parents=True)
    path.write_text(
        "time,latitude,longitude,depth,Temperature,Temperature_qc\n"
        "UTC,degrees_north,degrees_east,m,degree_Celsius,\n"
        "2026-11-20T05:00:00.000Z,48.316585,-126.050798,985.0,3.9,1\n"
    )
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    w.add_scalar(TEMP, times(DAY + 5 * HOUR + timedelta(seconds=1), 1), [4.0], [1])
    published = w.publish()
    assert published is not None
    assert published.path.read_text().splitlines()[2:] == [
        "2026-11-20T05:00:00.000Z,BACAX,48.3,-126.0,982.0,3.9,1",
        "2026-11-20T05:00:01.000Z,BACAX,48.3,-126.0,982.0,4.0,1",
    ]


def test_round_trip_keeps_nan_flags_and_absent_cells(tmp_path: Path) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    t = times(DAY + 5 * HOUR, 4)
    values = [1.0, math.nan, 0.1 + 0.2, -1e300]
    w.add_scalar(TEMP, t, values, [1, 9, 3, 4])
    w.add_scalar(COND, t[:2], [3.355, 3.356], [1, 1])
    table = read_csv_table(w.publish().path)  # type: ignore[union-attr]
    assert [s.code for s in table.sensors] == ["Temperature", "cond"]
    got = table.values[0].tolist()
    assert got[0] == 1.0
    assert math.isnan(got[1])
    assert got[2:] == values[2:]
    assert table.flags.tolist() == [[1, 9, 3, 4], [1, 1, ABSENT_FLAG, ABSENT_FLAG]]


def test_growing_partition_rewritten_ten_times(tmp_path: Path) -> None:
    for step in range(10):
        w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
        start = max(0, step * 6 - 3)
        t = times(DAY + 5 * HOUR + timedelta(seconds=start), step * 6 + 6 - start)
        w.add_scalar(TEMP, t, [float(start + i) for i in range(len(t))], [1] * len(t))
        assert w.publish() is not None
    table = read_csv_table(tmp_path / "onc_bacax_ctd/2026/onc_bacax_ctd_20261120.csv")
    assert table.values[0].tolist() == [float(i) for i in range(60)]
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["onc_bacax_ctd_20261120.csv"]


def test_unchanged_file_is_left_alone(tmp_path: Path) -> None:
    t = times(DAY + 5 * HOUR, 2)
    first = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    first.add_scalar(TEMP, t, [1.0, 2.0], [1, 1])
    path = first.publish().path  # type: ignore[union-attr]
    inode = path.stat().st_ino
    again = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    again.add_scalar(TEMP, t, [1.0, 2.0], [1, 1])
    assert not again.changed
    assert again.publish().replaced is False  # type: ignore[union-attr]
    assert path.stat().st_ino == inode


def test_bad_existing_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "onc_bacax_ctd/2026/onc_bacax_ctd_20261120.csv"
    path.parent.mkdir(parents=True)
    path.write_text("a,b\n")
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    with pytest.raises(OutputError, match="unreadable"):
        assert w.record_count  # what a build asks first: the records the file holds
    # Raw lines refused: tests/unit/outputs/test_assembly.py


def counting_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[Path]]:
    """The files each reader of the CSV module reads: whole, or from a time on."""
    reads: dict[str, list[Path]] = {"whole": [], "since": [], "scan": []}
    whole, since, scan = csv_module._read_csv, csv_module._read_csv_since, csv_module._scan_csv

    def scan_whole(path: Path, read: Any) -> Any:
        reads["scan"].append(path)
        return scan(path, read)

    def read_whole(path: Path, read: Any = None) -> Any:
        reads["whole"].append(path)
        return whole(path, read)

    def read_since(path: Path, at: str, read: Any) -> Any:
        reads["since"].append(path)
        return since(path, at, read)

    monkeypatch.setattr(csv_module, "_read_csv", read_whole)
    monkeypatch.setattr(csv_module, "_read_csv_since", read_since)
    monkeypatch.setattr(csv_module, "_scan_csv", scan_whole)
    return reads


def test_facts_are_used_only_while_the_file_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv_writer = writer()
    t = times(DAY + 5 * HOUR, 3)
    first = csv_writer.open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    first.add_scalar(TEMP, t, [1.0, 2.0, 3.0], [1, 1, 1])
    path = first.publish().path  # type: ignore[union-attr]
    reads = counting_reads(monkeypatch)
    assert csv_writer.open_window(tmp_path, "onc_bacax_ctd", WINDOW).record_count == 3
    assert reads == {"whole": [], "since": [], "scan": []}  # what the writer wrote is known
    # Someone edits the file: the writer must merge with what is on disk now.
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n")
    reopened = csv_writer.open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    assert reopened.record_count == 1
    assert reads == {"whole": [], "since": [], "scan": [path]}
    # What the scan learnt is kept for the next window, though this one wrote nothing.
    assert csv_writer.open_window(tmp_path, "onc_bacax_ctd", WINDOW).record_count == 1
    assert reads["scan"] == [path]


# (partition, the window each step merges, the clock): every way a next window meets a file
# the same process wrote, whether or not it polls again.
NEXT_WINDOWS = {
    # A backfill's gathered day, then the daemon's next poll of the same (ended) day.
    "whole-day-ended": ("daily", timedelta(days=1), DAY + 30 * HOUR),
    # Today's partition, polled again.
    "whole-day-today": ("daily", timedelta(days=1), DAY + 7 * HOUR),
    # A monthly partition built a day at a time, long after it ended.
    "month-by-day": ("monthly", timedelta(days=1), DAY + 90 * 24 * HOUR),
    # Hourly windows of an ended day.
    "day-by-hour": ("daily", HOUR, DAY + 30 * HOUR),
}


@pytest.mark.parametrize("case", list(NEXT_WINDOWS))
def test_a_next_window_reads_only_the_rows_it_may_touch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    partition, step, now = NEXT_WINDOWS[case]
    meta = ctd_meta()
    csv_writer = CsvWriter({meta.dataset_id: meta}, partition=partition, clock=lambda: now)
    first = Window(DAY, DAY + step)
    t = times(DAY + 10 * MINUTE, 3)
    w = csv_writer.open_window(tmp_path, "onc_bacax_ctd", first)
    w.add_scalar(TEMP, t, [1.0, 2.0, 3.0], [1, 1, 1])
    path = w.publish().path  # type: ignore[union-attr]
    reads = counting_reads(monkeypatch)
    # The next window (the same one again for a whole day: the daemon's next poll of it).
    second = first if step == timedelta(days=1) else Window(first.end, first.end + step)
    later = csv_writer.open_window(tmp_path, "onc_bacax_ctd", second)
    assert later.record_count == 3
    # The rows that follow are appended in place, as a rewrite would write them, and only the
    # file's last row was read to decide it.
    t2 = times(second.start + 30 * MINUTE, 2)
    later.add_scalar(TEMP, t2, [4.0, 5.0], [1, 1])
    grown = later.publish()
    assert grown is not None
    assert not grown.replaced
    assert later.record_count == 5
    assert reads == {"whole": [], "since": [path], "scan": []}
    whole = CsvWriter({meta.dataset_id: meta}, partition=partition).open_window(
        tmp_path / "whole", "onc_bacax_ctd", Window(DAY, max(second.end, DAY + timedelta(days=1)))
    )
    whole.add_scalar(TEMP, t + t2, [1.0, 2.0, 3.0, 4.0, 5.0], [1] * 5)
    assert path.read_bytes() == whole.publish().path.read_bytes()  # type: ignore[union-attr]


def grown_file(tmp_path: Path, rows: int) -> tuple[CsvWriter, Path]:
    """A CSV writer and the file it wrote: `rows` seconds of two sensors from 05:00."""
    csv_writer = writer()
    t = times(DAY + 5 * HOUR, rows)
    w = csv_writer.open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    w.add_scalar(TEMP, t, [float(i) for i in range(rows)], [1] * rows)
    w.add_scalar(COND, t[::2], [float(i) for i in range(0, rows, 2)], [1] * len(t[::2]))
    return csv_writer, w.publish().path  # type: ignore[union-attr]


@pytest.mark.parametrize("chunk", [1 << 16, 97, 7])
@pytest.mark.parametrize("since_row", [0, 1, 250, 399, 400, 10_000])
def test_rows_since_a_time_are_read_back_from_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, since_row: int
) -> None:
    # Chunks smaller than a line (7 bytes), across lines (97), and the file in one (64 KiB).
    monkeypatch.setattr(csv_module, "_BACK_CHUNK", chunk)
    _, path = grown_file(tmp_path, 400)
    full = read_csv_table(path)
    since = format_times(np.array([full.times[0] + since_row * 1000]))[0]
    read = growth.open_partition(path)
    assert read is not None
    got, header = csv_module._read_csv_since(path, since, read)
    # The rows from `since` on, or the last one when there is none.
    expect = slice(since_row, None) if since_row < 400 else slice(-1, None)
    assert got.times.tolist() == full.times[expect].tolist()
    assert np.array_equal(got.values, full.values[:, expect], equal_nan=True)
    assert got.flags.tolist() == full.flags[:, expect].tolist()
    assert [s.code for s in got.sensors] == ["Temperature", "cond"]
    assert header == b"".join(path.read_bytes().splitlines(keepends=True)[:2])


def test_a_file_replaced_after_its_window_read_it_is_refused(tmp_path: Path) -> None:
    csv_writer, path = grown_file(tmp_path, 10)
    late = csv_writer.open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    late.add_scalar(TEMP, times(DAY + 5 * HOUR + 10 * SECOND, 2), [10.0, 11.0], [1, 1])
    other = path.with_name("other")
    other.write_text("time,station\nUTC,\nnot a row\n")
    other.replace(path)
    with pytest.raises(OutputError, match="changed while"):
        late.publish()


# A poll's window against a file of rows 05:00:00-05:00:09 (Temperature every second, cond
# every other): what it brings, and whether the file grows in place.
POLLS = {
    # Lookback: the last rows again, unchanged, then new ones.
    "overlap": (7, [7.0, 8.0, 9.0, 10.0, 11.0], True),
    # Only what the file holds already: left alone.
    "nothing-new": (7, [7.0, 8.0, 9.0], True),
    # A revised reading in the file's last rows.
    "revision": (8, [8.5, 9.0, 10.0], False),
    # A time between the file's rows (05:00:05.500).
    "between": (5.5, [5.5], False),
}


@pytest.mark.parametrize("case", list(POLLS))
def test_a_poll_grows_the_file_as_a_rewrite_of_everything_would_write_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    at, values, in_place = POLLS[case]
    csv_writer, path = grown_file(tmp_path, 10)
    reads = counting_reads(monkeypatch)
    w = csv_writer.open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    t = times(DAY + 5 * HOUR + timedelta(seconds=at), len(values))
    w.add_scalar(TEMP, t, values, [1] * len(values))
    published = w.publish()
    assert published is not None
    assert published.replaced is not in_place
    assert reads["whole"] == ([] if in_place else [path])
    # The same file a single window over every reading writes.
    whole = writer().open_window(tmp_path / "whole", "onc_bacax_ctd", WINDOW)
    first = times(DAY + 5 * HOUR, 10)
    whole.add_scalar(TEMP, first, [float(i) for i in range(10)], [1] * 10)
    whole.add_scalar(COND, first[::2], [float(i) for i in range(0, 10, 2)], [1] * 5)
    whole.add_scalar(TEMP, t, values, [1] * len(values))
    assert path.read_bytes() == whole.publish().path.read_bytes()  # type: ignore[union-attr]
    assert w.record_count == whole.record_count
    assert published.size == len(path.read_bytes())


def test_rows_are_rendered_in_blocks_with_the_same_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(csv_module, "BLOCK_ROWS", 2)
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    t = times(DAY + 5 * HOUR, 5)
    w.add_scalar(TEMP, t, [1.0, math.nan, 3.0, 4.0, 5.0], [1, 9, 1, 1, 1])
    w.add_scalar(DEPTH, t[2:], [985.25, 985.5, 985.75], [1, 1, 1])
    published = w.publish()
    assert published is not None
    blocks = list(w.render_blocks(w._merger.merged()))  # type: ignore[attr-defined]
    assert len(blocks) == 4  # the header rows, then 2 + 2 + 1 data rows
    assert published.path.read_bytes() == b"".join(blocks)
    assert published.path.read_text().splitlines()[2:] == [
        "2026-11-20T05:00:00.000Z,BACAX,48.3,-126.0,982.0,1.0,1,,",
        "2026-11-20T05:00:01.000Z,BACAX,48.3,-126.0,982.0,NaN,9,,",
        "2026-11-20T05:00:02.000Z,BACAX,48.3,-126.0,982.0,3.0,1,985.25,1",
        "2026-11-20T05:00:03.000Z,BACAX,48.3,-126.0,982.0,4.0,1,985.5,1",
        "2026-11-20T05:00:04.000Z,BACAX,48.3,-126.0,982.0,5.0,1,985.75,1",
    ]


def test_a_file_without_the_station_column_is_rewritten_even_with_no_new_record(
    tmp_path: Path,
) -> None:
    path = tmp_path / "onc_bacax_ctd/2026/onc_bacax_ctd_20261120.csv"
    path.parent.mkdir(parents=True)
    path.write_text(
        "time,latitude,longitude,depth,Temperature,Temperature_qc\n"
        "UTC,degrees_north,degrees_east,m,degree_Celsius,\n"
        "2026-11-20T05:00:00.000Z,48.316585,-126.050798,985.0,3.9,1\n"
    )
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    w.add_scalar(TEMP, times(DAY + 5 * HOUR, 1), [3.9], [1])
    w.publish()
    assert path.read_text().splitlines()[0].startswith("time,station,latitude")


# The per-value renderer the column-at-a-time one replaced: rows must come out byte for byte
# as it wrote them (files already published are appended to by the new one).
def _reference_rows(table: WideTable, station: str) -> list[str]:
    rows = []
    for i, time in enumerate(format_times(table.times)):
        cells = [time, station]
        for s in range(len(table.sensors)):
            flag = int(table.flags[s, i])
            value = float(table.values[s, i])
            if flag == ABSENT_FLAG:
                cells += ["", ""]
            else:
                cells += ["NaN" if math.isnan(value) else repr(value), str(flag)]
        rows.append(",".join(cells))
    return rows


EDGE_VALUES = [
    math.nan,
    -0.0,
    0.0,
    1e-300,
    5e-324,
    1e16,
    0.1 + 0.2,
    3.0,
    -42.0,
    1e-5,
    123456789012345.6,
    math.inf,
    -math.inf,
    985.25,
]


def test_edge_values_render_as_the_per_value_renderer_wrote_them(tmp_path: Path) -> None:
    w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    t = times(DAY + 5 * HOUR, len(EDGE_VALUES))
    # Flags beyond ONC's 0-9 and negative ones, a sensor on other times (absent cells), a
    # sensor whose every reading is absent in this block but one.
    w.add_scalar(TEMP, t, EDGE_VALUES, [9, 0, 1, 2, 3, 4, 127, -128, -5, 1, 1, 1, 1, 1])
    w.add_scalar(COND, t[::3], [1.5, math.nan, 7.0, 1e-7, 2.0], [1, 9, 1, 1, 1])
    w.add_scalar(DEPTH, t[5:6], [985.0], [1])
    published = w.publish()
    assert published is not None
    table = read_csv_table(published.path)
    lines = published.path.read_text().splitlines()
    assert lines[2:] == _reference_rows(table, "BACAX,48.3,-126.0,982.0")
    assert lines[2].split(",")[5:7] == ["NaN", "9"]
    assert lines[3].split(",")[5:9] == ["-0.0", "0", "", ""]
    # Read back, every value is the double written, NaN and -0.0 included.
    values = table.values[0]
    assert np.array_equal(values, np.array(EDGE_VALUES), equal_nan=True)
    assert math.copysign(1.0, values[1]) == -1.0


def test_edge_values_appended_give_the_file_a_rewrite_gives(tmp_path: Path) -> None:
    t = times(DAY + 5 * HOUR, len(EDGE_VALUES))
    flags = [1] * len(EDGE_VALUES)
    grown = writer(now=DAY + 5 * HOUR)
    for first in range(0, len(EDGE_VALUES), 4):
        w = grown.open_window(tmp_path / "grown", "onc_bacax_ctd", WINDOW)
        chunk = EDGE_VALUES[first : first + 4]
        w.add_scalar(TEMP, t[first : first + 4], chunk, flags[: len(chunk)])
        w.add_scalar(COND, t[first : first + 1], [0.1 + 0.2], [1])
        published = w.publish()
        assert published is not None
        assert not published.replaced
    w = writer().open_window(tmp_path / "whole", "onc_bacax_ctd", WINDOW)
    w.add_scalar(TEMP, t, EDGE_VALUES, flags)
    w.add_scalar(COND, t[::4], [0.1 + 0.2] * len(t[::4]), [1] * len(t[::4]))
    whole = w.publish()
    assert whole is not None
    assert published.path.read_bytes() == whole.path.read_bytes()


def test_a_station_moved_since_the_facts_were_learnt_rewrites_every_row(tmp_path: Path) -> None:
    # Discovery answers again with the location at another position (a process reloaded):
    # what was known of the file was learnt under the old metadata, so it is learnt again,
    # and every row gets the station cells the metadata now gives them.
    meta = ctd_meta()
    metas = {meta.dataset_id: meta}
    csv_writer = CsvWriter(metas, partition="daily")
    w = csv_writer.open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    w.add_scalar(TEMP, times(DAY + 5 * HOUR, 2), [1.0, 2.0], [1, 1])
    path = w.publish().path  # type: ignore[union-attr]
    moved = Station("BACAX", "Barkley Canyon Axis", 48.25, -126.0, 982.0)
    metas[meta.dataset_id] = dataclasses.replace(meta, stations={"BACAX": moved})
    later = csv_writer.open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    later.add_scalar(TEMP, times(DAY + 5 * HOUR + 2 * SECOND, 1), [3.0], [1])
    published = later.publish()
    assert published is not None
    assert published.replaced
    assert [line.split(",")[1:3] for line in path.read_text().splitlines()[2:]] == [
        ["BACAX", "48.25"]
    ] * 3


def test_a_poll_that_brings_nothing_leaves_the_file_unread_and_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv_writer, path = grown_file(tmp_path, 10)
    before = path.stat()
    reads = counting_reads(monkeypatch)
    w = csv_writer.open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    w.add_scalar(TEMP, times(DAY + 7 * HOUR, 2), [1.0, 2.0], [1, 1])  # outside the window
    assert not w.changed
    published = w.publish()
    assert published is not None
    assert not published.replaced
    assert (published.size, w.record_count) == (before.st_size, 15)
    assert path.stat().st_mtime_ns == before.st_mtime_ns
    assert reads == {"whole": [], "since": [], "scan": []}


SCANNED = {
    # Absent cells, NaN, flags outside 0-9, a sensor on every third row.
    "edge-values": lambda w, t: (
        w.add_scalar(TEMP, t, EDGE_VALUES, [9, 0, 1, 2, 3, 4, 127, -128, -5, 1, 1, 1, 1, 1]),
        w.add_scalar(COND, t[::3], [1.5, math.nan, 7.0, 1e-7, 2.0], [1, 9, 1, 1, 1]),
    ),
    "one-row": lambda w, t: w.add_scalar(DEPTH, t[:1], [985.0], [1]),
}


@pytest.mark.parametrize("case", [*SCANNED, "old-layout", "header-only", "two-stations"])
def test_a_scan_learns_what_reading_the_table_gives(tmp_path: Path, case: str) -> None:
    path = tmp_path / "onc_bacax_ctd/2026/onc_bacax_ctd_20261120.csv"
    path.parent.mkdir(parents=True)
    if case in SCANNED:
        w = writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
        SCANNED[case](w, times(DAY + 5 * HOUR, len(EDGE_VALUES)))
        w.publish()
    else:
        rows = {
            "old-layout": "2026-11-20T05:00:00.000Z,48.316585,-126.050798,985.0,3.9,1\n",
            "header-only": "",
            "two-stations": "2026-11-20T05:00:00.000Z,BACAX,48.3,-126.0,982.0,3.9,1\n"
            "2026-11-20T05:00:01.000Z,BACAX,48.3,-126.0,982.0,,\n"
            "2026-11-20T05:00:02.000Z,BACND,48.4,-126.1,500.0,4.1,2\n",
        }[case]
        fixed = "time,latitude,longitude,depth" if case == "old-layout" else "time,station,l,l,d"
        fixed = fixed.replace("l,l,d", "latitude,longitude,depth")
        path.write_text(f"{fixed},Temperature,Temperature_qc\nUTC,,,,,degree_Celsius,\n{rows}")
    read = growth.open_partition(path)
    assert read is not None
    records, stations, scanned = csv_module._scan_csv(path, read)
    table, expected = csv_module._read_csv(path)
    assert records == table.record_count
    assert stations == expected
    assert scanned.tolist() == table.times.tolist()


def test_readings_added_after_the_count_was_asked_are_published(tmp_path: Path) -> None:
    csv_writer, path = grown_file(tmp_path, 3)
    w = csv_writer.open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    w.add_scalar(TEMP, times(DAY + 5 * HOUR, 1), [9.0], [1])  # a revision: the rewrite path
    assert w.record_count == 5  # the file read whole, the window merged over it
    w.add_scalar(TEMP, times(DAY + 5 * HOUR + 10 * SECOND, 2), [4.0, 5.0], [1, 1])
    assert w.record_count == 7
    published = w.publish()
    assert published is not None
    assert read_csv_table(path).record_count == 7


def test_rows_after_a_deployment_inside_another_get_the_outer_station(tmp_path: Path) -> None:
    # A short deployment at another location (00:00:20-00:00:40) inside an open-ended one:
    # rows after it are the open-ended one's again, whether appended or written whole.
    meta = ctd_meta()
    p0, p1 = meta.positions
    p2 = dataclasses.replace(
        p1, begin=DAY + 20 * SECOND, end=DAY + 40 * SECOND, location_code="BACND"
    )
    inner = Station("BACND", "Barkley Canyon Node", 48.4, -126.1, 500.0)
    meta = dataclasses.replace(
        meta, positions=(p0, p1, p2), stations={**meta.stations, "BACND": inner}
    )
    metas = {meta.dataset_id: meta}
    day = Window(DAY, DAY + timedelta(days=1))
    first, then = times(DAY, 30), times(DAY + 50 * SECOND, 5)
    grower = CsvWriter(metas)
    for t in (first, then):
        w = grower.open_window(tmp_path / "grown", meta.dataset_id, day)
        w.add_scalar(TEMP, t, [1.0] * len(t), [1] * len(t))
        grown = w.publish()
        assert grown is not None
        assert not grown.replaced
    whole = CsvWriter(metas).open_window(tmp_path / "whole", meta.dataset_id, day)
    whole.add_scalar(TEMP, first + then, [1.0] * 35, [1] * 35)
    assert grown.path.read_bytes() == whole.publish().path.read_bytes()  # type: ignore[union-attr]
    stations = [line.split(",")[1] for line in grown.path.read_text().splitlines()[2:]]
    assert stations == ["BACAX"] * 20 + ["BACND"] * 10 + ["BACAX"] * 5


@pytest.mark.parametrize(
    ("row", "message"),
    [
        (",BACAX,48.3,-126.0,982.0,3.9,1\n", "a row without a time"),
        ("2026-11-20T05:00:00.000Z,BACAX,,-126.0,982.0,3.9,1\n", None),
    ],
    ids=["no-time", "empty-station-cell"],
)
def test_a_scan_of_a_damaged_file_says_so_or_reads_what_a_full_read_reads(
    tmp_path: Path, row: str, message: str | None
) -> None:
    path = tmp_path / "onc_bacax_ctd/2026/onc_bacax_ctd_20261120.csv"
    path.parent.mkdir(parents=True)
    header = "time,station,latitude,longitude,depth,Temperature,Temperature_qc\n"
    path.write_text(header + "UTC,,degrees_north,degrees_east,m,degree_Celsius,\n" + row)
    read = growth.open_partition(path)
    assert read is not None
    if message is not None:
        with pytest.raises(OutputError, match=f"unreadable: {message}"):
            csv_module._scan_csv(path, read)
        return
    records, stations, scanned = csv_module._scan_csv(path, read)
    table, expected = csv_module._read_csv(path)
    assert (records, stations, scanned.tolist()) == (1, expected, table.times.tolist())
