"""The CSV writer: ERDDAP's header layout, NaN versus absent cells, merging round trips."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from pipeline.exceptions import OutputError
from pipeline.outputs import csv as csv_module
from pipeline.outputs.csv import CsvWriter, read_csv_table
from pipeline.outputs.table import ABSENT_FLAG, WideTable, format_times
from pipeline.records import Window
from tests.unit.outputs.helpers import COND, DAY, DEPTH, TEMP, ctd_meta, times

HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
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
    with pytest.raises(OutputError, match="unreadable"):
        writer().open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    # Raw lines refused: tests/unit/outputs/test_assembly.py


def test_cached_table_is_used_only_while_the_file_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    csv_writer = writer(now=DAY + 7 * HOUR)  # the partition is still filling up
    t = times(DAY + 5 * HOUR, 3)
    first = csv_writer.open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    first.add_scalar(TEMP, t, [1.0, 2.0, 3.0], [1, 1, 1])
    path = first.publish().path  # type: ignore[union-attr]
    reads: list[Path] = []
    real = csv_module._read_csv
    monkeypatch.setattr(csv_module, "_read_csv", lambda p: reads.append(p) or real(p))
    assert csv_writer.open_window(tmp_path, "onc_bacax_ctd", WINDOW).record_count == 3
    assert reads == []  # served from what the writer wrote
    # Someone edits the file: the writer must merge with what is on disk now.
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:3]) + "\n")
    reopened = csv_writer.open_window(tmp_path, "onc_bacax_ctd", WINDOW)
    assert reopened.record_count == 1
    assert reads == [path]


# (partition, the window each step merges, the clock, whether the process polls again,
# whether the next window reuses the table instead of reading the file back)
KEEP_CASES = {
    # A backfill's gathered day: built whole, never merged with again, in `once` or not.
    "whole-day-ended": ("daily", timedelta(days=1), DAY + 30 * HOUR, False, False),
    "whole-day-ended-daemon": ("daily", timedelta(days=1), DAY + 30 * HOUR, True, False),
    # `once` reaching today: nothing polls the day again (7 MB a dataset until exit).
    "whole-day-today-once": ("daily", timedelta(days=1), DAY + 7 * HOUR, False, False),
    # The daemon's next poll grows today's partition.
    "whole-day-today-daemon": ("daily", timedelta(days=1), DAY + 7 * HOUR, True, True),
    # A monthly partition is built a day at a time, even in `once` and long after it ended:
    # reading it back for each day would make a month's backfill quadratic.
    "month-by-day-once": ("monthly", timedelta(days=1), DAY + 90 * 24 * HOUR, False, True),
    # Hourly windows of an ended day (a window per step, e.g. mending): the next hour merges.
    "day-by-hour-ended": ("daily", HOUR, DAY + 30 * HOUR, True, True),
}


@pytest.mark.parametrize("case", list(KEEP_CASES))
def test_the_table_is_kept_only_while_a_next_window_merges_with_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    partition, step, now, polled, reused = KEEP_CASES[case]
    meta = ctd_meta()
    csv_writer = CsvWriter(
        {meta.dataset_id: meta}, partition=partition, clock=lambda: now, polled=polled
    )
    first = Window(DAY, DAY + step)
    t = times(DAY + 10 * MINUTE, 3)
    w = csv_writer.open_window(tmp_path, "onc_bacax_ctd", first)
    w.add_scalar(TEMP, t, [1.0, 2.0, 3.0], [1, 1, 1])
    path = w.publish().path  # type: ignore[union-attr]
    reads: list[Path] = []
    read = csv_module._read_csv
    monkeypatch.setattr(csv_module, "_read_csv", lambda p: reads.append(p) or read(p))
    # The next window (the same one again for a whole day: the daemon's next poll of it).
    second = first if step == timedelta(days=1) else Window(first.end, first.end + step)
    later = csv_writer.open_window(tmp_path, "onc_bacax_ctd", second)
    assert reads == ([] if reused else [path])
    assert later.record_count == 3
    # Either way the rows that follow are appended in place, as a rewrite would write them.
    t2 = times(second.start + 30 * MINUTE, 2)
    later.add_scalar(TEMP, t2, [4.0, 5.0], [1, 1])
    grown = later.publish()
    assert grown is not None
    assert not grown.replaced
    whole = CsvWriter({meta.dataset_id: meta}, partition=partition).open_window(
        tmp_path / "whole", "onc_bacax_ctd", Window(DAY, max(second.end, DAY + timedelta(days=1)))
    )
    whole.add_scalar(TEMP, t + t2, [1.0, 2.0, 3.0, 4.0, 5.0], [1] * 5)
    assert path.read_bytes() == whole.publish().path.read_bytes()  # type: ignore[union-attr]


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
