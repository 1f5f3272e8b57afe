"""Raw text: one line per reading with its time; escapes keep odd readings on one line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from pipeline.exceptions import OutputError
from pipeline.outputs.rawtext import JsonlCsvWriter, RawTextWriter, escape, parse_line, unescape
from pipeline.records import Window
from tests.unit.outputs.helpers import DAY, times

HOUR = timedelta(hours=1)
WINDOW = Window(DAY + 5 * HOUR, DAY + 6 * HOUR)
ODD = ["plain", "tab\there", "cr\rlf\n", "back\\slash\\t", "ünïcödé ✓", "", " lead space "]


@pytest.mark.parametrize("reading", ODD)
def test_escape_round_trips(reading: str) -> None:
    assert "\t" not in escape(reading)
    assert "\n" not in escape(reading)
    assert unescape(escape(reading)) == reading


def test_lines_round_trip_sorted_by_time(tmp_path: Path) -> None:
    w = RawTextWriter().open_window(tmp_path, "onc_nc89_bpr", WINDOW)
    t = times(DAY + 5 * HOUR, len(ODD))
    assert w.add_raw(t[::-1], ODD[::-1], [" "] * len(ODD)) == len(ODD)
    published = w.publish()
    assert published is not None
    assert published.path == tmp_path / "onc_nc89_bpr/2026/onc_nc89_bpr_20261120.txt"
    lines = published.path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) == len(ODD)
    assert [parse_line(line) for line in lines] == [
        (a, " ", b) for a, b in zip(t, ODD, strict=True)
    ]


def test_refetched_lines_replace_and_outside_lines_are_dropped(tmp_path: Path) -> None:
    t = times(DAY + 5 * HOUR - timedelta(seconds=1), 3)  # the first is before the window
    w = RawTextWriter().open_window(tmp_path, "onc_nc89_bpr", WINDOW)
    assert w.add_raw(t, ["a", "b", "c"], [" ", " ", " "]) == 2
    w.publish()
    again = RawTextWriter().open_window(tmp_path, "onc_nc89_bpr", WINDOW)
    assert again.record_count == 2
    again.add_raw(t[1:], ["b", "C"], [" ", ">"])
    assert again.changed
    again.publish()
    text = (tmp_path / "onc_nc89_bpr/2026/onc_nc89_bpr_20261120.txt").read_text()
    assert [parse_line(x)[1:] for x in text.splitlines()] == [(" ", "b"), (">", "C")]


def test_unchanged_file_is_not_rewritten(tmp_path: Path) -> None:
    t = times(DAY + 5 * HOUR, 2)
    first = RawTextWriter().open_window(tmp_path, "d", WINDOW)
    first.add_raw(t, ["a", "b"], [" ", " "])
    path = first.publish().path  # type: ignore[union-attr]
    inode = path.stat().st_ino
    again = RawTextWriter().open_window(tmp_path, "d", WINDOW)
    again.add_raw(t, ["a", "b"], [" ", " "])
    assert again.publish().replaced is False  # type: ignore[union-attr]
    assert path.stat().st_ino == inode


def test_hourly_partitions_and_refusals(tmp_path: Path) -> None:
    w = RawTextWriter(partition="hourly").open_window(tmp_path, "d", WINDOW)
    assert w.path.name == "d_2026112005.txt"
    # Scalar readings refused: tests/unit/outputs/test_assembly.py
    bad = tmp_path / "d/2026/d_20261120.txt"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_text("no tab here\n")
    with pytest.raises(OutputError, match="unreadable at line 1"):
        RawTextWriter().open_window(tmp_path, "d", WINDOW)


def test_jsonl_csv_is_a_header_then_one_array_per_reading_and_round_trips(
    tmp_path: Path,
) -> None:
    w = JsonlCsvWriter().open_window(tmp_path, "onc_nc89_bpr", WINDOW)
    t = times(DAY + 5 * HOUR, len(ODD))
    assert w.add_raw(t[::-1], ODD[::-1], ["0"] * len(ODD)) == len(ODD)
    published = w.publish()
    assert published is not None
    assert published.path == tmp_path / "onc_nc89_bpr/2026/onc_nc89_bpr_20261120.csv.jsonl"
    lines = published.path.read_text(encoding="utf-8").split("\n")
    assert lines[-1] == ""  # every line ends with a newline; readings never add one
    rows = [json.loads(line) for line in lines[:-1]]
    # ERDDAP's EDDTableFromJsonlCSVFiles: column names first, then one array per row.
    assert rows == [["time", "lineType", "reading"]] + [
        [a, "0", b] for a, b in zip(t, ODD, strict=True)
    ]
    # A second window merges by time: a re-fetched reading replaces, a new one is added.
    later = JsonlCsvWriter().open_window(tmp_path, "onc_nc89_bpr", WINDOW)
    extra = times(DAY + 5 * HOUR + timedelta(minutes=1), 1)
    later.add_raw([t[0], *extra], ["replaced", "new"], ["0", "0"])
    published = later.publish()
    assert published is not None
    rows = [json.loads(line) for line in published.path.read_text().splitlines()[1:]]
    assert len(rows) == len(ODD) + 1
    assert rows[0] == [t[0], "0", "replaced"]
    assert rows[-1] == [extra[0], "0", "new"]


def test_a_jsonl_csv_file_with_a_foreign_header_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "onc_nc89_bpr/2026/onc_nc89_bpr_20261120.csv.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('{"time": "x"}\n')
    with pytest.raises(OutputError, match="unexpected header"):
        JsonlCsvWriter().open_window(tmp_path, "onc_nc89_bpr", WINDOW)
