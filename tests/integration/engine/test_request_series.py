"""One request series per pass, against the emulator over a socket: a pass pages across its
partitions at the row limit, splits pages at partition bounds, stops after its page budget
and resumes exactly there, and survives a crash between two partitions' commits."""

from __future__ import annotations

import asyncio
import itertools
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import structlog

from pipeline.daemon import components, run_backfill, run_once
from pipeline.emulator import Emulator
from pipeline.engine.ledger import StreamLedger
from pipeline.engine.runner import harvest_pass
from pipeline.engine.streams import timeseries
from pipeline.engine.streams.base import PassOutcome
from pipeline.outputs import parquet
from pipeline.outputs.cf_names import variable_name
from pipeline.outputs.csv import read_csv_table
from pipeline.outputs.pool import InlineWindowBuilder, ProcessWindowBuilder
from pipeline.settings import Settings
from pipeline.state import open_state_store
from pipeline.times import format_onc_time, from_epoch_ms
from tests.integration.engine.conftest import T0, SettingsFactory
from tests.integration.engine.test_gather import netcdf_content

ROW_LIMIT = 100_000  # ONC's page: rows a sensor


def stream(**extra: Any) -> dict[str, Any]:
    return {
        "name": "ctd",
        "kind": "scalardata",
        "location_code": "BACAX",
        "device_category_code": "CTD",
        "safety_lag": "30s",
        "formats": ["netcdf", "csv"],
        **extra,
    }


def settings_in(
    make_settings: SettingsFactory, root: Path, streams: list[dict[str, Any]], **sections: Any
) -> Settings:
    output = {"root": str(root / "out"), **sections.pop("output", {})}
    return make_settings(
        streams,
        output=output,
        daemon={"window_workers": 0, **sections.pop("daemon", {})},
        state={"url": f"sqlite:///{root / 'state.db'}"},
        **sections,
    )


def csv_files(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(root.rglob("*.csv"))}


def csv_times(root: Path) -> list[str]:
    """Every record's time in the CSV partitions, in file order (one line a time)."""
    times = []
    for path in sorted(root.rglob("*.csv")):
        for line in path.read_text().splitlines():
            if line[:4].isdigit():
                times.append(line.split(",", 1)[0])
    return times


def same_netcdf(a: Path, b: Path) -> None:
    names = sorted(p.name for p in a.rglob("*.nc"))
    assert names == sorted(p.name for p in b.rglob("*.nc"))
    assert names
    for name in names:
        [left] = a.rglob(name)
        [right] = b.rglob(name)
        assert netcdf_content(left) == netcdf_content(right), name


def assert_same_outputs(expected: Path, got: Path) -> None:
    """`got` holds every record once, in the same CSV bytes and NetCDF content as `expected`."""
    times = csv_times(got)
    assert len(times) == len(set(times))  # nothing doubled
    assert csv_files(got) == csv_files(expected)
    same_netcdf(expected, got)


def data_requests(emu: Emulator) -> list[str]:
    """The dateFrom of each scalardata request, in order."""
    return [dict(r.query)["dateFrom"] for r in emu.requests.of("scalardata.location")]


async def test_a_two_day_backlog_at_the_defaults_is_paged_at_the_row_limit(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    start = T0 - timedelta(days=2)  # 06:30 two days back: three daily partitions
    settings = settings_in(make_settings, tmp_path / "series", [stream(start=start.isoformat())])
    emu.requests.clear()
    results = await run_once(settings, asyncio.Event(), clock=emu.clock.now)
    outcome = results["ctd"]
    assert isinstance(outcome, PassOutcome)
    assert outcome.ok
    assert outcome.caught_up
    out = tmp_path / "series" / "out"
    times = csv_times(out)
    assert len(times) == len(set(times)) > 170_000
    # One series across the three partitions: ceil(rows / row limit) requests, not one or more
    # per partition (which made three).
    assert len(data_requests(emu)) == math.ceil(len(times) / ROW_LIMIT) == 2
    assert len(csv_files(out)) == 3

    # The same records as each partition fetched as a series of its own (the old path).
    old = tmp_path / "per-partition"
    old_settings = settings_in(make_settings, old, [stream()])
    horizon = T0 - timedelta(seconds=30)
    day = datetime(2026, 11, 19, tzinfo=UTC)
    emu.requests.clear()
    for low, high in (
        (start, day),
        (day, day + timedelta(days=1)),
        (day + timedelta(days=1), horizon),
    ):
        done = await run_backfill(
            old_settings, asyncio.Event(), "ctd", low, high, clock=emu.clock.now
        )
        assert done.ok
    assert len(data_requests(emu)) == 3
    assert csv_files(old / "out") == csv_files(out)
    same_netcdf(old / "out", out)


async def test_a_low_rate_backlog_takes_one_request_for_several_partitions(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    # The emulator's instruments all sample at 1 Hz; hourly partitions give the shape of a
    # sensor sampling once a minute in daily ones: far fewer rows a partition than a page.
    start, end = T0 - timedelta(hours=6, minutes=30), T0 - timedelta(minutes=30)
    settings = settings_in(
        make_settings, tmp_path / "series", [stream()], output={"partition": "hourly"}
    )
    emu.requests.clear()
    outcome = await run_backfill(settings, asyncio.Event(), "ctd", start, end, clock=emu.clock.now)
    assert outcome.ok
    assert len(data_requests(emu)) == 1  # 21,600 rows: one page for six partitions
    out = tmp_path / "series" / "out"
    assert len(csv_files(out)) == 6

    old = tmp_path / "per-partition"
    old_settings = settings_in(make_settings, old, [stream()], output={"partition": "hourly"})
    for hour in range(6):
        low = start + timedelta(hours=hour)
        done = await run_backfill(
            old_settings, asyncio.Event(), "ctd", low, low + timedelta(hours=1), clock=emu.clock.now
        )
        assert done.ok
    assert csv_files(old / "out") == csv_files(out)
    same_netcdf(old / "out", out)


async def passes(settings: Settings, emu: Emulator, max_pages: int | None) -> list[PassOutcome]:
    """Passes over the stream from its cursor until one is caught up."""
    outcomes = []
    async with components(settings, stop=asyncio.Event(), clock=emu.clock.now) as parts:
        while True:
            outcome = await harvest_pass(parts.ctx, settings.streams[0], max_pages=max_pages)
            assert outcome.ok
            outcomes.append(outcome)
            if outcome.caught_up:
                return outcomes
            assert len(outcomes) < 20


async def test_a_page_budget_cut_resumes_where_the_page_ended(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    # 5,000 rows a page at 1 Hz: about 83 minutes a page, so pages end inside hours and the
    # cuts fall inside windows and across the day's end.
    ctd = stream(start=(T0 - timedelta(hours=10)).isoformat(), row_limit=5_000)
    whole = settings_in(make_settings, tmp_path / "whole", [ctd])
    emu.requests.clear()
    [single] = await passes(whole, emu, max_pages=None)
    uncut = data_requests(emu)
    assert len(uncut) == math.ceil(len(csv_times(tmp_path / "whole" / "out")) / 5_000) > 4

    cut = settings_in(make_settings, tmp_path / "cut", [ctd])
    emu.requests.clear()
    outcomes = await passes(cut, emu, max_pages=2)
    assert len(outcomes) == math.ceil(len(uncut) / 2)
    # Each pass went on from the last page's `next.dateFrom`: the very requests of one series.
    assert data_requests(emu) == uncut
    assert sum(o.records for o in outcomes) == single.records
    assert_same_outputs(tmp_path / "whole" / "out", tmp_path / "cut" / "out")
    async with open_state_store(cut.state.url) as store:
        record = await store.get_stream("ctd")
        assert record is not None
        assert record.cursor_time == T0 - timedelta(seconds=30)


async def test_a_lookback_longer_than_the_page_budget_still_moves_the_cursor(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    # 1,000 rows a page at 1 Hz: about 17 minutes a page, so a 2 h lookback re-reads seven
    # pages, more than the budget of four. Those pages spend none of it: each pass re-reads
    # its lookback and then fetches four new pages, and the passes catch up.
    ctd = stream(start=(T0 - timedelta(hours=10)).isoformat(), row_limit=1_000)
    whole = settings_in(make_settings, tmp_path / "whole", [ctd])
    await passes(whole, emu, max_pages=None)

    looking = settings_in(make_settings, tmp_path / "lookback", [{**ctd, "lookback": "2h"}])
    cursors = []
    async with components(looking, stop=asyncio.Event(), clock=emu.clock.now) as parts:
        for _ in range(20):
            emu.requests.clear()
            outcome = await harvest_pass(parts.ctx, looking.streams[0], max_pages=4)
            assert outcome.ok
            record = await parts.ctx.store.get_stream("ctd")
            assert record is not None
            assert record.cursor_time is not None
            if cursors:
                assert record.cursor_time > cursors[-1]  # the pass moved the cursor
                if not outcome.caught_up:
                    # Re-read from two hours (or the start) before the cursor, then four
                    # pages on.
                    assert len(data_requests(emu)) > 4
            cursors.append(record.cursor_time)
            if outcome.caught_up:
                break
    assert cursors[-1] == T0 - timedelta(seconds=30)
    times = csv_times(tmp_path / "lookback" / "out")
    assert len(times) == len(set(times))  # nothing doubled
    assert csv_files(tmp_path / "lookback" / "out") == csv_files(tmp_path / "whole" / "out")


async def test_a_crash_between_two_partitions_resumes_from_the_committed_cursor(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctd = stream(start=(T0 - timedelta(days=1)).isoformat(), formats=["netcdf", "csv", "jsonl"])
    whole = settings_in(make_settings, tmp_path / "whole", [ctd])
    await passes(whole, emu, max_pages=None)

    crashing = settings_in(make_settings, tmp_path / "crash", [ctd])
    original = StreamLedger.commit
    commits: list[datetime | None] = []

    async def commit_then_crash(self: StreamLedger, *args: Any, **kwargs: Any) -> None:
        if commits:
            raise RuntimeError("killed after the first partition's commit")
        await original(self, *args, **kwargs)
        commits.append(kwargs.get("cursor_time"))

    monkeypatch.setattr(StreamLedger, "commit", commit_then_crash)
    with pytest.raises(RuntimeError, match="killed"):
        await passes(crashing, emu, max_pages=None)
    assert commits == [datetime(2026, 11, 20, tzinfo=UTC)]  # the first day, then the crash
    monkeypatch.setattr(StreamLedger, "commit", original)

    await passes(crashing, emu, max_pages=None)
    assert_same_outputs(tmp_path / "whole" / "out", tmp_path / "crash" / "out")
    jsonl = {p.name: p.read_bytes() for p in sorted((tmp_path / "crash" / "out").rglob("*.jsonl"))}
    assert jsonl == {
        p.name: p.read_bytes() for p in sorted((tmp_path / "whole" / "out").rglob("*.jsonl"))
    }


def cursor_commits(
    monkeypatch: pytest.MonkeyPatch, inodes: tuple[Path, dict[str, set[int]]] | None = None
) -> list[datetime]:
    """The cursor times the ledger commits from now on, in order; with `inodes` (an output
    root and a dict to fill), the inodes each committed CSV file had at its commits."""
    original = StreamLedger.commit
    commits: list[datetime] = []

    async def recording(self: StreamLedger, *args: Any, **kwargs: Any) -> None:
        await original(self, *args, **kwargs)
        if kwargs.get("cursor_time") is not None:
            commits.append(kwargs["cursor_time"])
        if inodes is not None:
            root, seen = inodes
            for entry in args[0]:
                if entry.path.endswith(".csv"):
                    seen.setdefault(entry.path, set()).add((root / entry.path).stat().st_ino)

    monkeypatch.setattr(StreamLedger, "commit", recording)
    return commits


def inside_days(instants: list[datetime]) -> list[datetime]:
    """The instants that are neither a day's start (a daily partition's end) nor the horizon
    (where the engine fixtures' passes end)."""
    horizon = T0 - timedelta(seconds=30)
    return [
        t
        for t in instants
        if t != horizon and t != t.replace(hour=0, minute=0, second=0, microsecond=0)
    ]


@pytest.mark.parametrize("workers", [0, 2])
async def test_a_page_ending_inside_a_partition_publishes_it_there_and_appends_the_rest(
    emu: Emulator,
    make_settings: SettingsFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    workers: int,
) -> None:
    # 20,000 rows a page at 1 Hz: about 5.6 hours a page, so pages end inside the day. Once a
    # build holds PUBLISH_HELD_BYTES (here: any part), the day is published up to the page's
    # end and the next page's rows are appended to it: the same files, committed page by page.
    ctd = stream(start=(T0 - timedelta(hours=30)).isoformat(), row_limit=20_000)
    monkeypatch.setattr(timeseries, "PUBLISH_HELD_BYTES", 1 << 40)
    whole = settings_in(make_settings, tmp_path / "whole", [ctd])
    commits = cursor_commits(monkeypatch)
    emu.requests.clear()
    [held] = await passes(whole, emu, max_pages=None)
    assert inside_days(commits) == []  # each day published once, at its end
    starts = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in data_requests(emu)]
    assert len(starts) == 6

    monkeypatch.setattr(timeseries, "PUBLISH_HELD_BYTES", 1)
    paged = settings_in(
        make_settings, tmp_path / "paged", [ctd], daemon={"window_workers": workers}
    )
    inodes: dict[str, set[int]] = {}
    commits = cursor_commits(monkeypatch, (tmp_path / "paged" / "out", inodes))
    continued: list[bool] = []
    for builder in (InlineWindowBuilder, ProcessWindowBuilder):
        opening = builder.open

        async def spy(self: Any, *args: Any, opening: Any = opening, **kwargs: Any) -> Any:
            continued.append(kwargs.get("continued", False))
            return await opening(self, *args, **kwargs)

        monkeypatch.setattr(builder, "open", spy)
    with structlog.testing.capture_logs() as logs:
        [flushed] = await passes(paged, emu, max_pages=None)
    # A commit where each page ended inside a day: the next request's dateFrom.
    assert inside_days(commits) == inside_days(starts[1:])
    # Each went on with a build over the files just published (on the same worker).
    assert sum(continued) == len(inside_days(commits))
    # The publishes of a day cover consecutive ranges: each adds from where the last ended.
    ranges: dict[str, list[tuple[str, str]]] = {}
    for line in logs:
        if line["event"] == "window_harvested":
            ranges.setdefault(line["window"], []).append((line["fetch_from"], line["fetch_to"]))
    for spans in ranges.values():
        assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert sum(len(spans) for spans in ranges.values()) == len(commits)
    # Counted once, not per publish.
    assert (flushed.records, flushed.units, flushed.files, flushed.bytes) == (
        held.records,
        held.units,
        held.files,
        held.bytes,
    )
    # Appended in place: the day's file published page by page is one file throughout.
    assert len(inodes) == 2
    assert all(len(seen) == 1 for seen in inodes.values())
    assert_same_outputs(tmp_path / "whole" / "out", tmp_path / "paged" / "out")


async def test_formats_that_do_not_grow_in_place_publish_each_partition_once(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # JSON Lines merges an existing file's records in memory and Parquet rewrites its file:
    # publishing their partitions page by page would read or write each day several times.
    monkeypatch.setattr(timeseries, "PUBLISH_HELD_BYTES", 1)
    commits = cursor_commits(monkeypatch)
    for fmt in ("jsonl", "parquet"):
        ctd = stream(
            start=(T0 - timedelta(hours=30)).isoformat(), row_limit=20_000, formats=["csv", fmt]
        )
        settings = settings_in(make_settings, tmp_path / fmt, [ctd])
        commits.clear()
        [outcome] = await passes(settings, emu, max_pages=None)
        assert outcome.records > 100_000
        assert inside_days(commits) == [], fmt
        assert commits[-1] == T0 - timedelta(seconds=30)


async def test_a_new_parquet_partition_is_written_as_its_pages_come(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path
) -> None:
    # 20,000 rows a page: four to five pages a day, each written to the day's Parquet file as
    # it comes instead of held until the day is complete. The same stream's CSV files, built
    # from the same pages by another writer, are the reference.
    ctd = stream(
        start=(T0 - timedelta(hours=30)).isoformat(), row_limit=20_000, formats=["parquet", "csv"]
    )
    settings = settings_in(make_settings, tmp_path, [ctd])
    [outcome] = await passes(settings, emu, max_pages=None)
    out = tmp_path / "out"
    parquet_files = sorted(out.rglob("*.parquet"))
    assert len(parquet_files) == 2
    total = 0
    for path in parquet_files:
        got, attrs = parquet.read_parquet_table(path)
        want = read_csv_table(path.with_suffix(".csv"))
        # CSV names its columns as Parquet does, by the sensor's code made a variable name.
        assert [variable_name(s.code) for s in got.sensors] == [s.code for s in want.sensors]
        assert np.array_equal(got.times, want.times)
        assert np.array_equal(got.values, want.values, equal_nan=True)
        assert np.array_equal(got.flags, want.flags)
        assert attrs["time_coverage_end"] == format_onc_time(from_epoch_ms(int(got.times[-1])))
        # A row group or more per page, where a day merged whole is cut in 32,768-row groups.
        groups = pq.ParquetFile(path).metadata.num_row_groups
        assert groups > math.ceil(len(got.times) / parquet.ROW_GROUP_ROWS)
        total += got.record_count
    # The records reported (Parquet is the first format) are the files' records.
    assert outcome.records == total > 100_000
    assert not any(p.suffix == ".tmp" for p in out.rglob("*"))


async def test_a_crash_after_a_page_published_inside_a_partition_resumes_from_there(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctd = stream(start=(T0 - timedelta(hours=30)).isoformat(), row_limit=20_000)
    whole = settings_in(make_settings, tmp_path / "whole", [ctd])
    await passes(whole, emu, max_pages=None)

    monkeypatch.setattr(timeseries, "PUBLISH_HELD_BYTES", 1)
    crashing = settings_in(make_settings, tmp_path / "crash", [ctd])
    original = StreamLedger.commit
    commits: list[datetime] = []

    async def commit_then_crash(self: StreamLedger, *args: Any, **kwargs: Any) -> None:
        if commits and inside_days(commits):
            raise RuntimeError("killed after a commit inside a day")
        await original(self, *args, **kwargs)
        commits.append(kwargs["cursor_time"])

    monkeypatch.setattr(StreamLedger, "commit", commit_then_crash)
    with pytest.raises(RuntimeError, match="killed"):
        await passes(crashing, emu, max_pages=None)
    [inside] = inside_days(commits)
    monkeypatch.setattr(StreamLedger, "commit", original)
    async with open_state_store(crashing.state.url) as store:
        record = await store.get_stream("ctd")
        assert record is not None
        assert record.cursor_time == inside

    emu.requests.clear()
    await passes(crashing, emu, max_pages=None)
    assert data_requests(emu)[0] == inside.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert_same_outputs(tmp_path / "whole" / "out", tmp_path / "crash" / "out")


async def test_a_day_is_published_once_its_pages_hold_the_threshold(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each part counts 1 byte and the threshold is 2: the first day (pages 1 - 4 and the
    # head of page 5) is published after pages 2 and 4, the second (the tail of page 5, page
    # 6) only at the series' end.
    ctd = stream(start=(T0 - timedelta(hours=30)).isoformat(), row_limit=20_000)
    monkeypatch.setattr(timeseries, "batch_bytes", lambda _: 1)
    monkeypatch.setattr(timeseries, "PUBLISH_HELD_BYTES", 2)
    settings = settings_in(make_settings, tmp_path / "paged", [ctd])
    commits = cursor_commits(monkeypatch)
    emu.requests.clear()
    await passes(settings, emu, max_pages=None)
    starts = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in data_requests(emu)]
    assert len(starts) == 6
    assert inside_days(commits) == [starts[2], starts[4]]


async def test_a_page_budget_spent_where_a_day_was_just_published_commits_nothing_more(
    emu: Emulator, make_settings: SettingsFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctd = stream(start=(T0 - timedelta(hours=30)).isoformat(), row_limit=20_000)
    whole = settings_in(make_settings, tmp_path / "whole", [ctd])
    emu.requests.clear()
    [single] = await passes(whole, emu, max_pages=None)
    uncut = data_requests(emu)

    monkeypatch.setattr(timeseries, "PUBLISH_HELD_BYTES", 1)
    cut = settings_in(make_settings, tmp_path / "cut", [ctd])
    commits = cursor_commits(monkeypatch)
    emu.requests.clear()
    outcomes = await passes(cut, emu, max_pages=2)
    assert data_requests(emu) == uncut
    # Every page ended inside a day or at the horizon, and each commit moved the cursor: the
    # cut after a page that had published its day up to its end published it no second time.
    assert commits == sorted(set(commits))
    # Each pass counts the files it published (NetCDF and CSV), the one whose cut fell where a
    # page had just published its day included.
    assert all(o.files >= 2 and o.bytes > 0 for o in outcomes)
    assert sum(o.records for o in outcomes) == single.records
    assert sum(o.units for o in outcomes) == single.units
    assert csv_files(tmp_path / "cut" / "out") == csv_files(tmp_path / "whole" / "out")
    same_netcdf(tmp_path / "whole" / "out", tmp_path / "cut" / "out")
