"""Gathered windows in a pass, on an in-memory rawdata twin and the in-memory state store:
one fetch and one commit per group, counts per window, and poison handled window by window."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from pipeline.engine.context import HarvestContext
from pipeline.engine.ledger import POISON_ATTEMPTS
from pipeline.engine.runner import Runner, harvest_pass, pages_per_pass
from pipeline.engine.streams import timeseries
from pipeline.exceptions import OncRequestError, OutputError
from pipeline.onc import RawPage, RawQuery
from pipeline.onc.errors import OncSchemaError
from pipeline.onc.models.common import NextPage
from pipeline.outputs.pool import InlineWindowBuilder, WindowBuild
from pipeline.outputs.writers import LazyWriters
from pipeline.records import NewDataEvent
from pipeline.settings import TimeSeriesStream
from pipeline.state.base import Commit
from pipeline.state.memory import InMemoryStateStore
from pipeline.times import format_onc_time
from tests.clocks import FakeClock

T0 = datetime(2026, 11, 18, tzinfo=UTC)
HOUR = timedelta(hours=1)
MINUTE = timedelta(minutes=1)
STREAM = TimeSeriesStream(
    name="bpr",
    kind="rawdata",
    device_code="BPR1",
    start=T0,
    window=HOUR,
    safety_lag=timedelta(seconds=30),
    formats=["jsonl", "rawtext"],
)


@dataclass
class RawTwin:
    """rawdata answered with a line every 10 minutes; a range holding a `bad` hour fails to
    parse, as a schema-drifted page would."""

    bad: set[datetime] = field(default_factory=set)
    queries: list[tuple[datetime, datetime]] = field(default_factory=list)

    async def raw_pages(
        self, query: RawQuery, *, row_limit: int | None = None
    ) -> AsyncIterator[RawPage]:
        span = (query.date_from, query.date_to)
        assert isinstance(span[0], datetime)
        assert isinstance(span[1], datetime)
        self.queries.append((span[0], span[1]))
        if any(span[0] <= hour < span[1] for hour in self.bad):
            raise OncSchemaError("rawdata page has no `data`", where="data")
        stamps = []
        at = span[0]
        while at < span[1]:
            stamps.append(format_onc_time(at))
            at += timedelta(minutes=10)
        yield RawPage(stamps, [f"$BPR,{t}" for t in stamps], [" "] * len(stamps))


class Events:
    def __init__(self) -> None:
        self.seen: list[NewDataEvent] = []

    async def publish(self, event: NewDataEvent) -> None:
        self.seen.append(event)


@dataclass
class Setup:
    ctx: HarvestContext
    onc: RawTwin
    store: InMemoryStateStore
    events: Events
    progress: list[tuple[int, int]]


@pytest.fixture
async def setup(tmp_path: Path) -> Setup:
    clock = FakeClock(T0 + 6 * HOUR + timedelta(seconds=30))  # six hours complete
    store = InMemoryStateStore(clock=clock)
    await store.open()
    onc, events, progress = RawTwin(), Events(), []
    ctx = HarvestContext(
        client=onc,  # type: ignore[arg-type]
        store=store,
        output_root=tmp_path,
        inline=InlineWindowBuilder(LazyWriters({}, "daily"), tmp_path),
        events=events,
        clock=clock,
        progress=lambda _, done, total: progress.append((done, total)),
    )
    return Setup(ctx, onc, store, events, progress)


async def cursor(setup: Setup) -> datetime | None:
    record = await setup.store.get_stream("bpr")
    assert record is not None
    return record.cursor_time


def file_lines(root: Path, pattern: str) -> dict[str, list[str]]:
    """The lines of every file matching `pattern` under `root`, by file name, sorted."""
    return {p.name: p.read_text().splitlines() for p in sorted(root.rglob(pattern))}


def hours(*indexes: int) -> list[tuple[datetime, datetime]]:
    return [(T0 + h * HOUR, T0 + (h + 1) * HOUR) for h in indexes]


async def test_a_backlog_of_one_day_is_one_fetch_one_commit_and_counts_every_window(
    setup: Setup, tmp_path: Path
) -> None:
    outcome = await harvest_pass(setup.ctx, STREAM)

    assert setup.onc.queries == [(T0, T0 + 6 * HOUR)]
    assert (outcome.units, outcome.records, outcome.files) == (6, 36, 7)  # 6 JSON Lines + 1 txt
    assert setup.progress == [(0, 6), (6, 6)]  # counted in windows, not groups
    assert await cursor(setup) == T0 + 6 * HOUR
    manifest = await setup.store.list_manifest("bpr")
    ranges = sorted((e.time_start, e.time_end) for e in manifest if e.path.endswith(".jsonl"))
    assert ranges == hours(0, 1, 2, 3, 4, 5)
    [daily] = [e for e in manifest if e.path.endswith(".txt")]
    assert (daily.time_start, daily.time_end, daily.records) == (T0, T0 + 24 * HOUR, 36)
    [event] = setup.events.seen  # one announcement for the group
    assert (event.time_start, event.time_end, len(event.files)) == (T0, T0 + 6 * HOUR, 7)
    # Each hour's file holds its own lines only.
    assert [len(lines) for lines in file_lines(tmp_path, "*.jsonl").values()] == [6] * 6


async def test_one_bad_hour_is_quarantined_alone_and_the_day_around_it_lands(
    setup: Setup, tmp_path: Path
) -> None:
    setup.onc.bad = {T0 + 3 * HOUR}
    for attempt in range(1, POISON_ATTEMPTS):
        setup.onc.queries.clear()
        with pytest.raises(OncSchemaError):
            await harvest_pass(setup.ctx, STREAM)
        # The group fails, then its windows are tried alone up to the bad one.
        first = 0 if attempt == 1 else 3
        assert setup.onc.queries == [(T0 + first * HOUR, T0 + 6 * HOUR), *hours(*range(first, 4))]
        assert await cursor(setup) == T0 + 3 * HOUR
    assert not await setup.store.list_quarantine("bpr")

    setup.onc.queries.clear()
    outcome = await harvest_pass(setup.ctx, STREAM)
    assert setup.onc.queries == [(T0 + 3 * HOUR, T0 + 6 * HOUR), *hours(3, 4, 5)]
    assert (outcome.units, outcome.quarantined) == (2, 1)
    [item] = await setup.store.list_quarantine("bpr")
    assert item.item_key == "window:20261118T030000Z_20261118T040000Z"
    assert await cursor(setup) == T0 + 6 * HOUR
    jsonl = file_lines(tmp_path, "*.jsonl")
    assert [name.split("_")[-2][:11] for name in jsonl] == [f"20261118T0{h}" for h in "01245"]
    [daily] = file_lines(tmp_path, "*.txt").values()
    assert len(daily) == 30  # every hour but the quarantined one


async def test_small_windows_take_a_day_of_them_a_pass_not_the_pass_limit(setup: Setup) -> None:
    # 36 ten-minute windows, fewer than a day's: one fetch, one pass, the day's file built once.
    stream = STREAM.model_copy(update={"window": timedelta(minutes=10)})
    outcome = await harvest_pass(setup.ctx, stream)
    assert setup.onc.queries == [(T0, T0 + 6 * HOUR)]
    assert outcome.units == 36
    assert outcome.caught_up


class _SlowOpening(InlineWindowBuilder):
    """Opens windows after a few turns of the loop (a busy worker), noting how many
    requests had gone out by then; `fail` makes the open raise."""

    def __init__(self, inner: InlineWindowBuilder, onc: RawTwin, *, fail: bool = False) -> None:
        self.__dict__.update(inner.__dict__)
        self.onc = onc
        self.fail = fail
        self.requests_at_open: list[int] = []

    async def open(self, *args: Any, **kwargs: Any) -> WindowBuild:
        for _ in range(5):
            await asyncio.sleep(0)
        self.requests_at_open.append(len(self.onc.queries))
        if self.fail:
            raise OutputError("disk full", path="/out")
        return await super().open(*args, **kwargs)


async def test_the_first_request_goes_out_while_the_window_opens(setup: Setup) -> None:
    slow = _SlowOpening(setup.ctx.inline, setup.onc)
    outcome = await harvest_pass(dataclasses.replace(setup.ctx, inline=slow), STREAM)
    assert slow.requests_at_open == [1]  # the group's fetch did not wait for the open
    assert (outcome.units, outcome.records) == (6, 36)
    assert await cursor(setup) == T0 + 6 * HOUR


async def test_a_window_that_cannot_open_fails_and_keeps_the_cursor(setup: Setup) -> None:
    failing = _SlowOpening(setup.ctx.inline, setup.onc, fail=True)
    with pytest.raises(OutputError, match="disk full"):
        await harvest_pass(dataclasses.replace(setup.ctx, inline=failing), STREAM)
    record = await setup.store.get_stream("bpr")
    assert record is None or record.cursor_time is None
    assert not await setup.store.list_manifest("bpr")


async def test_a_backlog_up_to_the_hour_in_progress_is_one_fetch(
    setup: Setup, tmp_path: Path
) -> None:
    later = dataclasses.replace(setup.ctx, clock=FakeClock(T0 + 6 * HOUR + timedelta(minutes=30)))
    outcome = await harvest_pass(later, STREAM)
    # Six complete hours and the half hour in progress: one request series, one commit.
    assert setup.onc.queries == [(T0, T0 + 6 * HOUR + timedelta(minutes=29, seconds=30))]
    assert outcome.units == 7
    assert await cursor(setup) == T0 + 6 * HOUR + timedelta(minutes=29, seconds=30)
    jsonl = file_lines(tmp_path, "*.jsonl")
    assert [len(lines) for lines in jsonl.values()] == [6] * 6 + [3]  # 06:00, 06:10, 06:20
    # The next pass completes the hour from the cursor, as it would have alone.
    setup.onc.queries.clear()
    done = dataclasses.replace(setup.ctx, clock=FakeClock(T0 + 7 * HOUR + timedelta(seconds=30)))
    await harvest_pass(done, STREAM)
    assert setup.onc.queries == [(T0 + 6 * HOUR + timedelta(minutes=29, seconds=30), T0 + 7 * HOUR)]
    # The twin stamps lines from the request's start: 06:29:30, 06:39:30, ... join the three.
    assert [len(lines) for lines in file_lines(tmp_path, "*.jsonl").values()] == [6] * 6 + [7]
    [daily] = file_lines(tmp_path, "*.txt").values()
    assert len(daily) == 43


async def test_a_poll_across_an_hour_is_one_fetch_and_one_commit(
    setup: Setup, tmp_path: Path
) -> None:
    clock = setup.ctx.clock
    assert isinstance(clock, FakeClock)
    at_0550, at_0620 = T0 + 5 * HOUR + 50 * MINUTE, T0 + 6 * HOUR + 20 * MINUTE
    clock.advance(-10 * MINUTE)  # the first pass ends at 05:50, inside an hour
    await harvest_pass(setup.ctx, STREAM)
    assert setup.onc.queries == [(T0, at_0550)]

    setup.onc.queries.clear()
    setup.events.seen.clear()
    clock.advance(30 * MINUTE)  # the next poll: 05:50 to 06:20, across 06:00
    outcome = await harvest_pass(setup.ctx, STREAM)
    assert setup.onc.queries == [(at_0550, at_0620)]
    assert outcome.units == 2  # both windows counted
    assert await cursor(setup) == at_0620
    [event] = setup.events.seen  # one commit, one announcement
    assert (event.time_start, event.time_end) == (at_0550, at_0620)
    # Each hour's file holds its own lines: 05:00..05:50, then 06:00 and 06:10.
    jsonl = file_lines(tmp_path, "*.jsonl")
    assert [len(lines) for lines in jsonl.values()][-2:] == [6, 2]
    [daily] = file_lines(tmp_path, "*.txt").values()
    assert len(daily) == 38


class CountingStore(InMemoryStateStore):
    """Counts `record_success` calls."""

    successes = 0

    async def record_success(self, name: str, at: datetime) -> None:
        self.successes += 1
        await super().record_success(name, at)


async def test_a_pass_that_moved_the_cursor_has_its_success_recorded_by_the_commit(
    setup: Setup,
) -> None:
    """One state write less per near-real-time poll: the runner writes no second row for a
    pass whose commit recorded its success; a pass that committed nothing still records it."""
    store = CountingStore(clock=setup.ctx.clock)
    await store.open()
    ctx = replace(setup.ctx, store=store)
    runner = Runner(ctx, [STREAM], bulk_slots=1)

    outcome = await harvest_pass(ctx, STREAM)
    assert outcome.ok
    assert outcome.success_recorded
    await runner._record(STREAM, outcome)
    record = await store.get_stream("bpr")
    assert record is not None
    assert record.cursor_time == T0 + 6 * HOUR
    assert record.last_success == ctx.clock()  # stamped by the commit
    assert store.successes == 0

    idle = await harvest_pass(ctx, STREAM)  # nothing new is due: no commit
    assert idle.ok
    assert not idle.success_recorded
    await runner._record(STREAM, idle)
    assert store.successes == 1


class CountingBuilder(InlineWindowBuilder):
    """The worker pool's stand-in: builds in process, counting the windows it is given."""

    opened = 0

    async def open(self, *args: Any, **kwargs: Any) -> Any:
        self.opened += 1
        return await super().open(*args, **kwargs)


async def test_a_short_fetch_that_ends_a_window_is_built_in_process(
    setup: Setup, tmp_path: Path
) -> None:
    """The first poll past a window's end fetches seconds, not the window: no worker."""
    workers = CountingBuilder(LazyWriters({}, "daily"), tmp_path)
    ctx = replace(setup.ctx, builder=workers)
    await harvest_pass(ctx, STREAM)  # six hours of backlog: bulk work
    assert workers.opened == 1

    setup.ctx.clock.advance(HOUR)  # type: ignore[attr-defined]
    await harvest_pass(ctx, STREAM)  # hour 6 ends a window, but is one window of an hour
    assert workers.opened == 2
    record = await setup.store.get_stream("bpr")
    assert record is not None
    assert record.cursor_time == T0 + 7 * HOUR

    # 59 min 40 s of hour 7: still bulk. Then polls 20 s apart: the first ends hour 7 with
    # 20 s of data, in process, as is the next, in hour 8.
    setup.ctx.clock.advance(HOUR - timedelta(seconds=20))  # type: ignore[attr-defined]
    await harvest_pass(ctx, STREAM)
    assert workers.opened == 3
    for _ in range(2):
        setup.ctx.clock.advance(timedelta(seconds=20))  # type: ignore[attr-defined]
        await harvest_pass(ctx, STREAM)
    assert workers.opened == 3
    record = await setup.store.get_stream("bpr")
    assert record is not None
    assert record.cursor_time == T0 + 8 * HOUR + timedelta(seconds=20)


@dataclass
class PagedTwin:
    """rawdata with a line every 10 minutes, `per_page` lines a page, `next.dateFrom` at the
    first line left out (as ONC's scalardata pages); a page holding a line of a `bad` hour
    fails to parse."""

    per_page: int = 36
    bad: set[datetime] = field(default_factory=set)
    requests: list[tuple[datetime, datetime]] = field(default_factory=list)

    async def raw_pages(
        self, query: RawQuery, *, row_limit: int | None = None
    ) -> AsyncIterator[RawPage]:
        assert isinstance(query.date_from, datetime)
        assert isinstance(query.date_to, datetime)
        at, end = query.date_from, query.date_to
        while True:
            self.requests.append((at, end))
            stamps: list[datetime] = []
            while at < end and len(stamps) <= self.per_page:
                stamps.append(at)
                at += timedelta(minutes=10)
            more = len(stamps) > self.per_page
            stamps = stamps[: self.per_page]
            if any(s.replace(minute=0) in self.bad for s in stamps):
                raise OncSchemaError("rawdata page has no `data`", where="data")
            texts = [format_onc_time(s) for s in stamps]
            following = None
            if more:
                at = stamps[-1] + timedelta(minutes=10)
                following = NextPage({"dateFrom": format_onc_time(at)})
            yield RawPage(texts, [f"$BPR,{t}" for t in texts], [" "] * len(texts), next=following)
            if following is None:
                return


@pytest.fixture
async def paged(setup: Setup) -> tuple[HarvestContext, PagedTwin]:
    twin = PagedTwin()
    clock = FakeClock(T0 + 30 * HOUR + timedelta(seconds=30))  # a day and six hours complete
    return replace(setup.ctx, client=twin, clock=clock), twin  # type: ignore[arg-type]


async def test_a_poison_page_mid_series_keeps_the_days_before_and_quarantines_one_hour(
    setup: Setup, paged: tuple[HarvestContext, PagedTwin], tmp_path: Path
) -> None:
    ctx, twin = paged
    twin.bad = {T0 + 27 * HOUR}
    day2 = T0 + 24 * HOUR
    for attempt in range(1, POISON_ATTEMPTS):
        twin.requests.clear()
        with pytest.raises(OncSchemaError):
            await harvest_pass(ctx, STREAM, max_pages=None)
        if attempt == 1:
            # One series over both days, six hours a page: the fifth page fails.
            assert twin.requests[:5] == [
                (T0 + h * HOUR, T0 + 30 * HOUR) for h in (0, 6, 12, 18, 24)
            ]
            # Then the day it fell in, hour by hour, up to the bad hour.
            assert twin.requests[5:] == hours(24, 25, 26, 27)
        else:
            assert twin.requests == [(T0 + 27 * HOUR, T0 + 30 * HOUR), *hours(27)]
        assert await cursor(setup) == T0 + 27 * HOUR
    [day1] = [lines for name, lines in file_lines(tmp_path, "*.txt").items() if "20261118" in name]
    assert len(day1) == 144  # the first day stayed committed

    outcome = await harvest_pass(ctx, STREAM, max_pages=None)
    assert (outcome.units, outcome.quarantined) == (2, 1)
    [item] = await setup.store.list_quarantine("bpr")
    assert item.item_key == "window:20261119T030000Z_20261119T040000Z"
    assert await cursor(setup) == T0 + 30 * HOUR
    [day2_lines] = [
        lines for name, lines in file_lines(tmp_path, "*.txt").items() if "20261119" in name
    ]
    assert len(day2_lines) == 30  # six hours but the quarantined one
    assert not any(line.startswith("2026-11-19T03") for line in day2_lines)
    assert day2 < T0 + 27 * HOUR


async def test_a_poison_page_after_its_day_was_published_inside_asks_only_the_hours_after(
    setup: Setup,
    paged: tuple[HarvestContext, PagedTwin],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ctx, twin = paged
    # Raw text as a format published page by page, at any size: a page that ends inside a day
    # publishes it up to there (`PUBLISH_HELD_BYTES`).
    monkeypatch.setattr(timeseries, "GROWN_IN_PLACE", frozenset({"rawtext"}))
    monkeypatch.setattr(timeseries, "PUBLISH_HELD_BYTES", 1)
    stream = STREAM.model_copy(update={"formats": ["rawtext"]})
    twin.per_page = 18  # three hours a page
    twin.bad = {T0 + 28 * HOUR}
    with pytest.raises(OncSchemaError):
        await harvest_pass(ctx, stream, max_pages=None)
    # One series, three hours a page: the page from 27:00 fails. The page before it had
    # published the second day up to 27:00: its hours before that are done, not asked again.
    assert twin.requests[:10] == [(T0 + h * HOUR, T0 + 30 * HOUR) for h in range(0, 30, 3)]
    assert twin.requests[10:] == hours(27, 28)
    assert await cursor(setup) == T0 + 28 * HOUR
    [day2] = [lines for name, lines in file_lines(tmp_path, "*.txt").items() if "20261119" in name]
    assert len(day2) == 24  # 24:00 to 28:00, once each


class _NoDateFrom(PagedTwin):
    """Pages whose `next` has no dateFrom: where a page ended is not known."""

    async def raw_pages(
        self, query: RawQuery, *, row_limit: int | None = None
    ) -> AsyncIterator[RawPage]:
        async for page in super().raw_pages(query, row_limit=row_limit):
            if page.next is not None:
                page = replace(page, next=NextPage({"deviceCode": "BPR"}))
            yield page


async def test_a_page_whose_end_is_unknown_publishes_nothing_inside_its_day(
    setup: Setup, paged: tuple[HarvestContext, PagedTwin], monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, _ = paged
    twin = _NoDateFrom()
    monkeypatch.setattr(timeseries, "GROWN_IN_PLACE", frozenset({"rawtext"}))
    monkeypatch.setattr(timeseries, "PUBLISH_HELD_BYTES", 1)
    commits: list[datetime | None] = []
    commit = setup.store.commit_publish

    async def noting(record: Commit) -> None:
        commits.append(record.cursor_time)
        await commit(record)

    monkeypatch.setattr(setup.store, "commit_publish", noting)
    stream = STREAM.model_copy(update={"formats": ["rawtext"]})
    outcome = await harvest_pass(replace(ctx, client=twin), stream, max_pages=None)  # type: ignore[arg-type]
    assert outcome.ok
    # No cursor could be committed where a page ended: each day at its end, once.
    assert commits == [T0 + 24 * HOUR, T0 + 30 * HOUR]


async def test_a_stop_between_two_days_ends_the_series_after_the_first(
    setup: Setup, paged: tuple[HarvestContext, PagedTwin]
) -> None:
    ctx, _ = paged

    class StopOnFirst(Events):
        async def publish(self, event: NewDataEvent) -> None:
            await super().publish(event)
            ctx.stop.set()

    events = StopOnFirst()
    outcome = await harvest_pass(replace(ctx, events=events), STREAM, max_pages=None)
    assert not outcome.caught_up
    assert outcome.units == 24
    assert len(events.seen) == 1
    assert await cursor(setup) == T0 + 24 * HOUR


async def test_the_dataset_is_described_while_the_first_request_is_out(
    setup: Setup, paged: tuple[HarvestContext, PagedTwin]
) -> None:
    ctx, twin = paged
    at_described: list[int] = []

    async def describe(_: Any) -> None:
        for _ in range(5):  # the discovery requests take a few turns of the loop
            await asyncio.sleep(0)
        at_described.append(len(twin.requests))

    outcome = await harvest_pass(replace(ctx, prepare=describe), STREAM, max_pages=None)
    [requested] = at_described
    assert requested >= 1  # the first data request did not wait for the description
    assert outcome.units == 30

    async def broken(_: Any) -> None:
        raise OutputError("describing the dataset failed", path="/out")

    setup.ctx.clock.advance(HOUR)  # type: ignore[attr-defined]
    later = replace(ctx, prepare=broken, clock=setup.ctx.clock)
    later.clock.advance(24 * HOUR)  # type: ignore[attr-defined]
    with pytest.raises(OutputError, match="describing"):
        await harvest_pass(later, STREAM)
    assert await cursor(setup) == T0 + 30 * HOUR  # nothing committed past the description


async def test_a_poll_that_fails_to_parse_is_one_request_and_one_attempt(setup: Setup) -> None:
    # The poll of the hour in progress is a one-window group: its failing request is the
    # window's attempt, not a reason to ask the same again window by window.
    at_0550 = T0 + 5 * HOUR + 50 * MINUTE
    await setup.store.commit_publish(Commit("bpr", [], cursor_time=at_0550))
    setup.onc.bad = {T0 + 5 * HOUR + 55 * MINUTE}
    for attempt in range(1, POISON_ATTEMPTS + 1):
        setup.onc.queries.clear()
        if attempt < POISON_ATTEMPTS:
            with pytest.raises(OncSchemaError):
                await harvest_pass(setup.ctx, STREAM)
            assert not await setup.store.list_quarantine("bpr")
        else:
            outcome = await harvest_pass(setup.ctx, STREAM)
            assert outcome.quarantined == 1
        assert setup.onc.queries == [(at_0550, T0 + 6 * HOUR)]
    [item] = await setup.store.list_quarantine("bpr")
    assert item.item_key == "window:20261118T050000Z_20261118T060000Z"
    assert await cursor(setup) == T0 + 6 * HOUR


@dataclass
class OverrunTwin:
    """rawdata answered in one page whose `next.dateFrom` is at or past the request's end (a
    last row at the range's last millisecond, + 1 ms, or a server's quirk); the request that
    `next` names is refused."""

    beyond: timedelta
    queries: list[tuple[datetime, datetime]] = field(default_factory=list)

    async def raw_pages(
        self, query: RawQuery, *, row_limit: int | None = None
    ) -> AsyncIterator[RawPage]:
        assert isinstance(query.date_from, datetime)
        assert isinstance(query.date_to, datetime)
        self.queries.append((query.date_from, query.date_to))
        stamps, at = [], query.date_from
        while at < query.date_to:
            stamps.append(format_onc_time(at))
            at += timedelta(minutes=10)
        following = NextPage({"dateFrom": format_onc_time(query.date_to + self.beyond)})
        yield RawPage(stamps, [f"$BPR,{t}" for t in stamps], [" "] * len(stamps), next=following)
        raise OncRequestError("dateFrom must be before dateTo")


@pytest.mark.parametrize("beyond", [timedelta(0), MINUTE])
async def test_a_next_at_or_past_the_series_end_ends_the_series(
    setup: Setup, beyond: timedelta
) -> None:
    twin = OverrunTwin(beyond)
    outcome = await harvest_pass(replace(setup.ctx, client=twin), STREAM)  # type: ignore[arg-type]
    assert twin.queries == [(T0, T0 + 6 * HOUR)]  # the `next` is not followed
    assert (outcome.units, outcome.records) == (6, 36)
    assert await cursor(setup) == T0 + 6 * HOUR


async def test_a_failing_page_across_one_window_groups_is_not_counted_against_the_first(
    setup: Setup, tmp_path: Path
) -> None:
    # Hourly partitions: every group is one window. A page of two hours fails to parse for a
    # bad row in its second hour; the hour its request started in is innocent, so it is tried
    # alone (and lands), and only the bad hour is counted and, at the limit, quarantined.
    twin = PagedTwin(per_page=12, bad={T0 + 3 * HOUR})
    ctx = replace(
        setup.ctx,
        client=twin,  # type: ignore[arg-type]
        inline=InlineWindowBuilder(LazyWriters({}, "hourly"), tmp_path),
        partition="hourly",
    )
    for _ in range(1, POISON_ATTEMPTS):
        with pytest.raises(OncSchemaError):
            await harvest_pass(ctx, STREAM, max_pages=None)
        assert await cursor(setup) == T0 + 3 * HOUR
    outcome = await harvest_pass(ctx, STREAM, max_pages=None)
    assert outcome.quarantined == 1
    [item] = await setup.store.list_quarantine("bpr")
    assert item.item_key == "window:20261118T030000Z_20261118T040000Z"
    assert await cursor(setup) == T0 + 6 * HOUR


def test_a_pass_is_bounded_by_rows_whatever_the_page_size() -> None:
    # Four pages at ONC's row limit; a stream with small pages gets as many rows in more
    # pages, not a pass (a partial publish and a commit) every few thousand rows.
    assert pages_per_pass(STREAM) == 4
    assert pages_per_pass(STREAM.model_copy(update={"row_limit": 1_200})) == 334
    assert pages_per_pass(STREAM.model_copy(update={"row_limit": 100})) == 4_000
