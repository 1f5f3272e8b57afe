"""The one writer contract: each format takes the batch kinds it declares, the assembly
refuses any other kind loudly (records are never dropped), and an empty one passes."""

from __future__ import annotations

import errno
from datetime import datetime, timedelta
from pathlib import Path

import netCDF4
import pytest

from pipeline import durable
from pipeline.exceptions import OutputError
from pipeline.outputs.assembly import WindowAssembly, _OutOfOrderError, _scalar_parts
from pipeline.outputs.base import iso_bounds
from pipeline.outputs.writers import LazyWriters
from pipeline.records import RawBatch, ScalarBatch, Window, scalar_batch
from pipeline.settings import FORMATS_BY_KIND
from pipeline.times import format_onc_time
from tests.unit.outputs.helpers import COND, DAY, TEMP, ctd_meta, times

HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)
WINDOW = Window(DAY + 5 * HOUR, DAY + 6 * HOUR)
RAW = RawBatch(["2026-11-20T05:00:00.000Z"], ["x"], [" "])
SCALAR = scalar_batch([(TEMP, times(DAY + 5 * HOUR, 1), [1.0], [1])], {})


def assembly(tmp_path: Path, fmt: str) -> WindowAssembly:
    meta = ctd_meta()
    built = WindowAssembly(
        LazyWriters({meta.dataset_id: meta}, "daily"), [fmt], tmp_path, "onc_bacax_ctd"
    )
    built.open(WINDOW)
    return built


@pytest.mark.parametrize("fmt", ["netcdf", "csv", "parquet"])
def test_scalar_formats_refuse_raw_lines(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(OutputError, match="rawtext") as refused:
        assembly(tmp_path, fmt).add(RAW)
    assert f"the {fmt} format holds scalardata" in str(refused.value)
    assert "onc_bacax_ctd" in str(refused.value.path)  # the file the format would write


@pytest.mark.parametrize("fmt", ["rawtext", "jsonlcsv"])
def test_raw_formats_refuse_scalar_readings(tmp_path: Path, fmt: str) -> None:
    with pytest.raises(OutputError, match="scalardata"):
        assembly(tmp_path, fmt).add(SCALAR)


def test_an_empty_batch_of_another_kind_is_no_error(tmp_path: Path) -> None:
    built = assembly(tmp_path, "netcdf")
    built.add(RawBatch([], [], []))
    built.add(SCALAR)
    published = built.publish().files[0]
    assert published is not None
    with netCDF4.Dataset(published.file.path) as ds:
        assert ds["Temperature"][:].size == 1


def test_page_flag_info_reaches_the_format_that_shows_it(tmp_path: Path) -> None:
    built = assembly(tmp_path, "netcdf")
    built.add(
        scalar_batch(
            [(TEMP, times(DAY + 5 * HOUR, 2), [1.0, 2.0], [1, 4])], {"1": "Good", "4": "Bad"}
        )
    )
    published = built.publish().files[0]
    assert published is not None
    with netCDF4.Dataset(published.file.path) as ds:
        assert ds["Temperature_qc"].flag_meanings == "good bad"


def test_every_format_declares_the_kinds_the_settings_allow() -> None:
    writers = LazyWriters({}, "daily")
    for name in writers:
        declared = {kind for kind, formats in FORMATS_BY_KIND.items() if name in formats}
        assert writers[name].kinds == declared, name


# --------------------------------------------------------------------------- gathered windows

HOURS = [Window(DAY + h * HOUR, DAY + (h + 1) * HOUR) for h in (5, 6, 7)]
COVERING = Window(DAY, DAY + 24 * HOUR)


def _writers() -> LazyWriters:
    meta = ctd_meta()
    return LazyWriters({meta.dataset_id: meta}, "daily")


def _pages(start: datetime, seconds: int, step: int) -> list[ScalarBatch]:
    """1 Hz temperature and conductivity from `start`, cut into pages of `step` rows."""
    pages = []
    for first in range(0, seconds, step):
        at = start + timedelta(seconds=first)
        n = min(step, seconds - first)
        stamps = times(at, n)
        pages.append(
            scalar_batch(
                [
                    (TEMP, stamps, [float(first + i) for i in range(n)], [1] * n),
                    (COND, stamps, [float("nan")] * n, [9] * n),
                ],
                {},
            )
        )
    return pages


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_gathered_windows_write_what_window_by_window_writes(tmp_path: Path) -> None:
    formats = ["jsonl", "csv"]
    # Window by window, each fed the whole 3 h of pages (a writer keeps its own range).
    for window in HOURS:
        single = WindowAssembly(_writers(), formats, tmp_path / "single", "onc_bacax_ctd")
        single.open(window)
        for page in _pages(DAY + 5 * HOUR, 3 * 3600, 5000):
            single.add(page)
        single.publish()
    gathered = WindowAssembly(_writers(), formats, tmp_path / "gathered", "onc_bacax_ctd")
    assert gathered.open(COVERING, HOURS) == 0
    for page in _pages(DAY + 5 * HOUR, 3 * 3600, 5000):
        gathered.add(page)
    built = gathered.publish()
    assert built.error is None
    assert built.records == 3 * 3600 * 2  # the first format's files, summed
    # One JSON Lines file per window, each with its window's range; one CSV for the day.
    assert [(f.file.path.suffix, f.time_start, f.time_end, f.records) for f in built.files] == [
        (".jsonl", w.start, w.end, 3600 * 2) for w in HOURS
    ] + [(".csv", DAY, DAY + 24 * HOUR, 3 * 3600 * 2)]
    assert _tree(tmp_path / "gathered") == _tree(tmp_path / "single")


def test_gathered_raw_lines_and_pages_out_of_order_reach_their_windows(tmp_path: Path) -> None:
    stamps = times(DAY + 5 * HOUR + 3590 * SECOND, 20)  # across the 05:00/06:00 edge
    shuffled = stamps[10:] + stamps[:10]  # not in time order: each writer filters itself
    raw = RawBatch(shuffled, [f"line {t}" for t in shuffled], [" "] * 20)
    built_by: dict[str, dict[str, bytes]] = {}
    for name, batch in (
        ("sorted", RawBatch(stamps, [f"line {t}" for t in stamps], [" "] * 20)),
        ("shuffled", raw),
    ):
        assembly = WindowAssembly(_writers(), ["jsonl"], tmp_path / name, "onc_bacax_ctd")
        assembly.open(COVERING, HOURS)
        assembly.add(batch)
        files = assembly.publish().files
        assert [f.records for f in files] == [10, 10]  # 05:59:50.. and 06:00:00..
        built_by[name] = _tree(tmp_path / name)
    assert built_by["sorted"] == built_by["shuffled"]


def test_a_covering_window_outside_the_partition_is_refused(tmp_path: Path) -> None:
    assembly = WindowAssembly(_writers(), ["csv"], tmp_path, "onc_bacax_ctd")
    with pytest.raises(ValueError, match="does not lie in the csv file"):
        assembly.open(Window(DAY - 24 * HOUR, DAY), HOURS)


def _edge(offset_s: int, n: int) -> list[str]:
    """`n` 1 Hz times from 05:59:50 + `offset_s`: across the 05:00/06:00 windows' edge."""
    return times(DAY + 5 * HOUR + (3590 + offset_s) * SECOND, n)


def _at(*clock: str) -> list[str]:
    """ONC times on DAY at `HH:MM[:SS]`."""
    return [f"{format_onc_time(DAY)[:10]}T{c}{':00' if len(c) == 5 else ''}.000Z" for c in clock]


# Pages whose times, bisected, would put a row in a part that does not hold it.
MISCUT = {"shuffled", "misplaced before", "misplaced after"}


@pytest.mark.parametrize(
    ("name", "temp", "cond"),
    [
        # ONC's fixed-width times, cut in the text as it is (pipeline/timeaxis.py).
        ("in order", _edge(0, 20), _edge(5, 20)),
        # Out of time order: each window's writer is fed the whole page and keeps its own.
        ("shuffled", _edge(10, 10) + _edge(0, 10), _edge(5, 20)),
        # Out of order inside one window only: bisecting still cuts it right, and it is cut.
        ("shuffled inside", _edge(0, 10) + _edge(10, 10)[::-1], _edge(5, 20)),
        # Rows before the first window: no window keeps them.
        ("before", times(DAY + 4 * HOUR + 3595 * SECOND, 10), _edge(5, 20)),
        # Bisected out of order, a 05:xx row lands before the first window, or after the last.
        ("misplaced before", _at("05:30", "04:59:59", "05:10"), _edge(5, 20)),
        ("misplaced after", _at("05:10", "08:30", "05:20"), _edge(5, 20)),
        # Not ONC's width (no milliseconds): the axis is split into strings and bisected.
        ("seconds", [t[:19] + "Z" for t in _edge(0, 20)], _edge(5, 20)),
        ("no rows", _edge(0, 20), []),
    ],
)
def test_a_gathered_page_reaches_each_window_as_window_by_window_writes(
    tmp_path: Path, name: str, temp: list[str], cond: list[str]
) -> None:
    page = scalar_batch(
        [
            (TEMP, temp, [float(i) for i in range(len(temp))], [1] * len(temp)),
            (COND, cond, [0.5 * i for i in range(len(cond))], [2] * len(cond)),
        ],
        {},
    )
    for window in HOURS:
        single = WindowAssembly(_writers(), ["jsonl"], tmp_path / "single", "onc_bacax_ctd")
        single.open(window)
        single.add(page)
        single.publish()
    # Each part's text is its split times (the formats reading the text see the same rows);
    # a page out of time order goes whole to each window.
    try:
        parts = list(_scalar_parts(page, [iso_bounds(window) for window in HOURS]))
    except _OutOfOrderError:
        assert name in MISCUT
    else:
        assert name not in MISCUT
        for part in parts:
            if part is not None:
                assert part.split_axes is not None
                assert part.axes == ["\n".join(times) for times in part.split_axes]
    gathered = WindowAssembly(_writers(), ["jsonl"], tmp_path / "gathered", "onc_bacax_ctd")
    gathered.open(COVERING, HOURS)
    gathered.add(page)
    files = gathered.publish().files
    low, high = iso_bounds(HOURS[0])[0], iso_bounds(HOURS[-1])[1]
    assert sum(f.records for f in files) == sum(low <= t < high for t in temp + cond)
    assert len(files) == 2  # 05:00 and 06:00; nothing for 07:00
    assert _tree(tmp_path / "gathered") == _tree(tmp_path / "single")


def test_a_failed_folder_flush_reports_no_file_and_names_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[Path] = []

    def failing(directory: Path) -> None:
        flushed.append(directory)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(durable, "fsync_dir", failing)
    gathered = WindowAssembly(_writers(), ["jsonl"], tmp_path, "onc_bacax_ctd")
    gathered.open(COVERING, HOURS)
    for page in _pages(DAY + 5 * HOUR, 3 * 3600, 5000):
        gathered.add(page)
    # The three files were renamed, but none is known to survive a power cut: none is
    # reported, so the cursor stays and the retry builds the windows again.
    with pytest.raises(OutputError, match=r"cannot flush .*Input/output error") as raised:
        gathered.publish()
    assert flushed == [tmp_path / "onc_bacax_ctd" / "2026"]  # once for the three files
    assert raised.value.path == str(flushed[0])


@pytest.mark.parametrize(
    ("windows", "temp"),
    [
        # Bisected, 05:20 lands between the windows (06:00 - 07:00 is not one of them).
        ([HOURS[0], HOURS[2]], _at("05:10", "06:30", "05:20")),
        # Bisected, the row on the 06:00 bound lands in 05:00's part.
        (HOURS[:2], _at("06:00", "05:10", "05:20", "05:30")),
    ],
)
def test_rows_bisected_into_a_gap_or_across_a_bound_reach_their_windows(
    tmp_path: Path, windows: list[Window], temp: list[str]
) -> None:
    page = scalar_batch([(TEMP, temp, [float(i) for i in range(len(temp))], [1] * len(temp))], {})
    with pytest.raises(_OutOfOrderError):
        list(_scalar_parts(page, [iso_bounds(window) for window in windows]))
    for window in windows:
        single = WindowAssembly(_writers(), ["jsonl"], tmp_path / "single", "onc_bacax_ctd")
        single.open(window)
        single.add(page)
        single.publish()
    gathered = WindowAssembly(_writers(), ["jsonl"], tmp_path / "gathered", "onc_bacax_ctd")
    gathered.open(COVERING, windows)
    gathered.add(page)
    files = gathered.publish().files
    kept = [t for t in temp if any(low <= t < high for low, high in map(iso_bounds, windows))]
    assert sum(f.records for f in files) == len(kept)
    assert _tree(tmp_path / "gathered") == _tree(tmp_path / "single")
