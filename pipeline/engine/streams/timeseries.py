"""`scalardata` and `rawdata` streams: aligned windows from the cursor to now - safety lag.

Windows are gathered into groups (pipeline.engine.windows): the consecutive windows of one
output partition (at most a day), built as one unit, so a daily or hourly partition file is
written once per pass (a monthly one once per day of data). A pass fetches all its groups as
ONE paged request series, [first group's start, last group's end), following `next`: ONC pages
at the row limit (100,000 rows a sensor), so two days of a 1 Hz instrument are two requests,
and a day of a sensor sampling once a minute shares a request with the days around it. Each
page is split by sample time at the groups' bounds (`batches.split_batch`) and each part goes
to its group's build; a group's build is opened when the series reaches it, published when the
series passes its end (or ends), and only then does the cursor move to the group's end, in the
same transaction that records the files in the manifest. A page that ends (where its `next`
says) inside a group whose build holds `PUBLISH_HELD_BYTES` publishes it up to the page's end
instead (cursor there), when every format grows its file in place; the next page's rows are
appended to it. A series runs in one of the process-wide `window_slots`, with one build open
at a time.

A file is either grown in place (only later records: NetCDF past `numrecs`, text formats by
whole lines, then fdatasync) or published atomically (temporary file, fsync, rename). A crash
anywhere re-fetches from the committed cursor: records are keyed by time (and sensor), so
records already appended are found in the file and nothing is lost or doubled
(docs/dev/netcdf-appends.md, docs/dev/text-appends.md, docs/dev/request-series.md).

A bulk pass is bounded by a page budget (pages a lookback re-reads below the cursor spend
none of it): after the page that spends it, the group in progress is published as it stands
(like a poll's window in progress: later passes append to it) and the cursor committed at that
page's `next.dateFrom`, where the next pass resumes. A failure that could be one window's fault
(`_POISON`) leaves the groups committed before it as they are; the group it fell in is retried
window by window (unless it is one window the failing request lay wholly in: then the failure
is counted against it at once), so one bad hour is quarantined alone, and the series goes on
after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog

from pipeline.engine.batches import batch_of, continuation, split_batch
from pipeline.engine.context import HarvestContext
from pipeline.engine.ledger import POISON_ATTEMPTS, Span, StreamLedger
from pipeline.engine.readahead import PageReservation
from pipeline.engine.streams.base import source_of
from pipeline.engine.windows import (
    GATHER_MAX_WINDOWS,
    WindowGroup,
    WindowPlan,
    gather_span,
    group_plans,
    plan_windows,
    within_limit,
)
from pipeline.exceptions import OncRequestError
from pipeline.onc import RawPage, RawQuery, ScalarPage, ScalarQuery
from pipeline.onc.errors import OncMalformedReply, OncSchemaError
from pipeline.outputs.pool import WindowBuild
from pipeline.outputs.writers import GROWN_IN_PLACE
from pipeline.records import PageBatch, Window, batch_bytes
from pipeline.settings import TimeSeriesStream

log = structlog.get_logger(__name__)

# A fetch spanning at least this much time is bulk work, built on the window workers; a
# shorter one is a near-real-time poll, built in the daemon's process, even when it ends a
# window (the first poll past an hour of `window: 1h`): its few seconds of data would only
# cross a pipe to a worker and back (issue 21).
BULK_SPAN = timedelta(minutes=15)

# The most time one bounded pass plans: its windows are planned (and its groups opened) ahead
# of the pages, so a backlog of years in small windows must not become millions of plans. A
# month is far more than the page budget covers at 1 Hz (a page is about 28 hours of it) and
# still one request of a sensor sampling once a minute (44,640 rows), whose month of daily
# partitions is then one pass.
PASS_MAX_SPAN = timedelta(days=31)

# A group a page ends inside is published up to the page's end, and continued in place by the
# next page, once its build holds at least this much (packed, `batch_bytes`), when every
# format of the stream grows its file in place (`GROWN_IN_PLACE`). Without it each series
# held the part of a day its pages had brought until the day was done: eight series in a
# backfill kept up to eight partial days' columns on the window workers. Small pages gather
# to this size first (35 pages of a 1,200-row limit): committing after every four such pages
# tripled the scale-out benchmark's CPU (docs/dev/request-series.md); this size is not
# measured beyond the backfill at ONC's row limit.
PUBLISH_HELD_BYTES = 4 << 20

# A page that cannot be parsed (even after the client's retries) or a request the server
# refuses: poison candidates. Outages and auth errors are not the window's fault and are
# raised as they are.
_POISON = (OncMalformedReply, OncSchemaError, OncRequestError)


def _key(window: Window) -> str:
    return f"window:{window.label()}"


def _pages(
    ctx: HarvestContext, stream: TimeSeriesStream, date_from: datetime, date_to: datetime
) -> AsyncIterator[ScalarPage] | AsyncIterator[RawPage]:
    source = source_of(stream)
    if stream.kind == "scalardata":
        query = ScalarQuery(
            source=source,
            date_from=date_from,
            date_to=date_to,
            property_codes=tuple(stream.property_codes),
            quality_control=stream.quality_control,
        )
        return ctx.client.scalar_pages(query, row_limit=stream.row_limit)
    return ctx.client.raw_pages(
        RawQuery(source=source, date_from=date_from, date_to=date_to), row_limit=stream.row_limit
    )


# What the fetch hands the builds, in order, through the page queue.
@dataclass(slots=True)
class _Parts:
    """One page's rows by group index; `reached`: the series has fetched everything before
    this instant (the page's `next.dateFrom`, or the series' end after its last page), and
    nothing at or after it (rows past `next.dateFrom` are left to the next page). `held`: its
    room in the read-ahead (`ctx.read_ahead`), released once its parts are merged."""

    parts: list[tuple[int, PageBatch]]
    reached: datetime
    held: PageReservation


@dataclass(slots=True)
class _Cut:
    """The page budget is spent: the series stops at `at` (the last page's `next.dateFrom`)."""

    at: datetime


@dataclass(slots=True)
class _Failed:
    """The request from `at` failed with `error`: the groups ending at or before `at` are
    whole, and commit before the error is raised."""

    at: datetime
    error: Exception


@dataclass
class _Series:
    """How far one request series got: groups committed (in order), pages fetched (those
    that spend a page budget), where the budget cut it, and whether a failure it raised is a
    request's (which started in `groups[committed]`) rather than the pages' disagreeing."""

    committed: int = 0
    pages: int = 0
    cut_at: datetime | None = None
    request_failed: bool = False
    # The group in progress (`groups[committed]`) is published up to here (and the stream's
    # cursor committed there, in a pass that keeps one): a page ended inside it
    # (`PUBLISH_HELD_BYTES`).
    published_to: datetime | None = None


@dataclass
class _Open:
    """The group whose build is open, the pages it was given and when it was opened; `since`:
    the build goes on where an earlier one published the group up to (None: its start)."""

    index: int
    build: WindowBuild
    started: float
    since: datetime | None = None
    pages: int = 0
    added_bytes: int = 0  # of the parts added (`batch_bytes`)


class _Stopping(Exception):  # noqa: N818 (control flow inside a series, never raised out)
    """A stop was asked for between two groups of a series: the rest is left for later."""


# Called after each group's commit with the group, where a budget cut it (None: whole) and its
# (new records, files, bytes): the records its last build added (those of the pages that
# published it part by part are tallied as they are published), its files and bytes.
Committed = Callable[[WindowGroup, datetime | None, tuple[int, int, int]], Awaitable[None]]


async def harvest_window(
    ctx: HarvestContext,
    ledger: StreamLedger,
    stream: TimeSeriesStream,
    group: WindowGroup,
    cursor_before: datetime | None,
) -> tuple[int, int, int]:
    """Fetch, merge, publish and commit one window, or one group of windows, as a request
    series of its own. Returns (new records, files, bytes)."""
    totals: list[tuple[int, int, int]] = []

    async def note(_: WindowGroup, __: datetime | None, counts: tuple[int, int, int]) -> None:
        totals.append(counts)

    await _harvest_series(ctx, ledger, stream, [group], cursor_before, _Series(), None, note)
    return totals[0]


async def _harvest_series(
    ctx: HarvestContext,
    ledger: StreamLedger,
    stream: TimeSeriesStream,
    groups: Sequence[WindowGroup],
    cursor_before: datetime | None,
    series: _Series,
    budget: int | None,
    committed: Committed,
) -> None:
    """Fetch `groups` (consecutive) as one paged request series and build each in turn.

    `cursor_before` tells whether this fetch re-reads published data (lookback, a re-run
    after a crash): only then may existing records have changed (ERDDAP's hardFlag case).
    `series` counts the groups committed, so a caller knows which group a raised failure
    fell in: `groups[series.committed]` (the failing request started in it when
    `series.request_failed`). At most `budget` pages past `cursor_before` are fetched (None:
    all).
    """
    series_from, series_to = groups[0].fetch_from, groups[-1].fetch_to
    bounds = [group.fetch_from for group in groups[1:]]
    grows_in_place = set(stream.formats) <= GROWN_IN_PLACE
    described = asyncio.Event()
    queue: asyncio.Queue[_Parts | _Cut | _Failed | None] = asyncio.Queue(
        maxsize=ctx.page_queue_size
    )

    async def fetch(early: bool) -> None:
        request_from = series_from
        reservation: PageReservation | None = None
        guess: int | None = None  # the read-ahead's last page until this series has one
        try:
            if not early:
                await described.wait()
            # Left at a cut, the iterator asks for nothing more: the next request is made only
            # when it is asked for the next page.
            pages: AsyncIterator[ScalarPage | RawPage] = _pages(ctx, stream, series_from, series_to)
            while True:
                # Room in the process-wide read-ahead before each request: when the builds
                # fall behind, the request waits, not a parsed page (nor its reply).
                reservation = await ctx.read_ahead.reserve(guess)
                try:
                    page = await anext(pages)
                except StopAsyncIteration:
                    break
                following = continuation(page)
                # The series ends at its last page, or at a `next` at or past its end (nothing
                # is left to ask for in it).
                last = page.next is None or (following is not None and following >= series_to)
                # A `next` without a readable dateFrom says nothing of where the page
                # ended: no group is known to be whole until the series ends.
                reached = series_to if last else max(following or series_from, series_from)
                # Pages re-read below the stream's cursor (a lookback) do not spend the
                # budget: a cut there would commit a cursor behind the stored one, which the
                # commit ignores, and every pass would re-read the same pages.
                if cursor_before is None or reached > cursor_before:
                    series.pages += 1
                # Packed right away: the batch shares one time axis between sensors, so a
                # page waiting in the queue holds one copy of its times, not one per sensor.
                batch = batch_of(page)
                del page
                guess = ctx.read_ahead.parsed(reservation, batch)
                if last or following is None:
                    parts = split_batch(batch, bounds)
                else:
                    # ONC's rowLimit counts rows per sensor: a slow sensor's rows can run
                    # past `next.dateFrom`, where a faster sensor's stopped. They are dropped
                    # here (the next request, from dateFrom inclusive, sends them again), so
                    # the page holds every row before `reached` and none after it.
                    ahead = [bound for bound in bounds if bound < following]
                    parts = split_batch(batch, [*ahead, following])
                    parts = [(index, part) for index, part in parts if index <= len(ahead)]
                del batch
                await queue.put(_Parts(parts, min(reached, series_to), reservation))
                reservation = None  # the builds release it
                del parts
                if last:
                    break
                # One request goes out before the dataset is described, not a run of them:
                # describing's requests share the same request slots (its follow-up questions
                # would wait for the pages in flight), and every page waits for it before
                # reaching a writer anyway.
                await described.wait()
                if following is not None:
                    request_from = max(request_from, following)
                # A `next` without a usable dateFrom cannot be resumed from: go on.
                spent = budget is not None and series.pages >= budget
                if spent and following is not None and series_from < following < series_to:
                    await queue.put(_Cut(following))
                    return
        except Exception as exc:
            # Handed to the builds in order: the groups the pages before it completed are
            # committed first, and the caller learns which group the failure fell in.
            await queue.put(_Failed(request_from, exc))
            return
        finally:
            if reservation is not None:
                reservation.release()
        await queue.put(None)

    current: _Open | None = None
    item: _Parts | _Cut | _Failed | None = None
    # The files and bytes of the group in progress as its last part-publish left them.
    published_files = (0, 0)

    async def open_next() -> _Open:
        index = series.committed
        group = groups[index]
        bulk = group.fetch_to - group.fetch_from >= BULK_SPAN
        started = time.monotonic()
        since = series.published_to
        build = await ctx.window_builder(bulk=bulk).open(
            stream.formats,
            stream.resolved_dataset_id,
            group.covering,
            group.windows,
            continued=since is not None,
        )
        return _Open(index, build, started, since)

    async def finish(until: datetime | None) -> None:
        """Publish and commit the group in progress: whole, or (a cut) up to `until`."""
        nonlocal current
        group = groups[series.committed]
        if current is None and until is not None and until == series.published_to:
            # The page that spent the budget ended inside the group and published it up to
            # there: nothing is left to publish or commit.
            counts = (0, *published_files)
        else:
            if current is None:
                current = await open_next()
            counts = await _publish(ctx, ledger, stream, group, current, cursor_before, until)
        current = None
        series.published_to = None
        series.committed += 1
        await committed(group, until, counts)

    async def publish_part(until: datetime) -> None:
        """Publish and commit the group in progress up to `until` (the page just merged ended
        inside it) and leave the rest to a build opened over its files by the next part. Its
        windows are counted done when the group is; the records published, now."""
        nonlocal current, published_files
        assert current is not None
        group = groups[current.index]
        records, files, size = await _publish(
            ctx, ledger, stream, group, current, cursor_before, until
        )
        current = None
        series.published_to = until
        published_files = (files, size)
        ledger.tally(records=records, files=0, size=0)

    async def reach(instant: datetime) -> None:
        """Publish every group that ends at or before `instant`: the series is past it."""
        while series.committed < len(groups) and groups[series.committed].fetch_to <= instant:
            await finish(None)
            if ledger.stopping and series.committed < len(groups):
                raise _Stopping

    # Series held in memory at once are bounded process-wide, whatever the stream count (one
    # build open in each).
    await ctx.window_slots.acquire()
    early = False
    try:
        try:
            async with asyncio.TaskGroup() as tasks:
                if ctx.prepare is None:
                    described.set()
                elif not ctx.early_fetches.locked():
                    await ctx.early_fetches.acquire()  # free: taken at once
                    early = True
                fetching = tasks.create_task(fetch(early), name=f"fetch:{stream.name}")
                try:
                    # The first request goes out while the dataset is described (when no
                    # other stream's request is out early: `early_fetches`) and while the
                    # first group opens: describing takes requests of its own, and opening
                    # waits for the worker (its first start, or the publish of another window
                    # queued before it) and reads what the files hold, none of which the
                    # first request needs. Both finish before a page reaches a writer. A
                    # failure of the fetch meanwhile is raised after them; an open that fails
                    # cancels the fetch (an inline open still finishes in its thread, and what
                    # it built is dropped unpublished: writers open no files before their
                    # first batch).
                    if ctx.prepare is not None:
                        await ctx.prepare(stream)
                    described.set()
                    if early:
                        early = False
                        ctx.early_fetches.release()
                    current = await open_next()
                    while (item := await queue.get()) is not None:
                        if isinstance(item, _Failed):
                            # A stop asked for meanwhile does not hide the failure.
                            with contextlib.suppress(_Stopping):
                                await reach(item.at)
                            series.request_failed = True
                            raise item.error
                        if isinstance(item, _Cut):
                            series.cut_at = item.at
                            if groups[series.committed].fetch_from < item.at:
                                await finish(item.at)
                            break
                        for index, batch in item.parts:
                            if index < series.committed:
                                # A row of a group already published: the pages are out of
                                # order (and the row must not go to another partition). The
                                # fault is the series', not the open group's: no request of
                                # it failed (`request_failed` stays False).
                                raise OncSchemaError(
                                    "a page holds rows before those of the pages before it",
                                    where="sampleTimes",
                                )
                            await reach(groups[index].fetch_from)
                            if current is None:
                                current = await open_next()
                            current.pages += 1
                            current.added_bytes += batch_bytes(batch)
                            await current.build.add(batch)
                            del batch
                        item.held.release()
                        reached = item.reached
                        item = None
                        await reach(reached)
                        if (
                            grows_in_place
                            and current is not None
                            and current.added_bytes >= PUBLISH_HELD_BYTES
                            # Where the page ended is known (its `next` has a dateFrom), past
                            # what the build goes on from: the cursor can be committed there.
                            and reached > (current.since or groups[current.index].fetch_from)
                        ):
                            await publish_part(reached)
                    else:
                        await reach(series_to)
                except _Stopping:
                    ledger.outcome.caught_up = False
                fetching.cancel()
        except* Exception as group_error:
            # The first failure (an OncError of the fetch, an OutputError of an open) is what
            # callers classify, not the task group.
            raise group_error.exceptions[0] from None
    finally:
        # A build still open was not published: a failure, a cancellation, or a cut at the
        # start of the open group. On cancellation a worker may still be busy with this group;
        # the discard is queued behind it (a worker runs its calls in order), and shielded so
        # it is sent at all.
        if current is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(current.build.discard())
        # Pages taken or left in the queue by a failure give their room back (releasing is
        # idempotent: the page being merged may have released it already).
        if isinstance(item, _Parts):
            item.held.release()
        while not queue.empty():
            if isinstance(left := queue.get_nowait(), _Parts):
                left.held.release()
        if early:
            ctx.early_fetches.release()
        ctx.window_slots.release()


async def _publish(
    ctx: HarvestContext,
    ledger: StreamLedger,
    stream: TimeSeriesStream,
    group: WindowGroup,
    opened: _Open,
    cursor_before: datetime | None,
    until: datetime | None,
) -> tuple[int, int, int]:
    """Publish a group's build, commit its files and (to its end, or to `until` when a page
    budget cut it) the cursor, log it and announce its new data."""
    build = opened.build
    # One format failing to publish (a full disk) closes the others' temporaries too.
    built = await build.publish()
    # A build that goes on where an earlier one published the group up to adds from there.
    fetch_from = opened.since or group.fetch_from
    fetch_to = group.fetch_to if until is None else until
    new_records = built.records - build.records_before
    rereads = cursor_before is not None and fetch_from < cursor_before
    published = [item.file for item in built.files]
    entries = [
        ledger.entry(
            item.file.path,
            size=item.file.size,
            sha256=item.file.sha256,
            # A partitioned file (NetCDF, CSV, raw text) covers its whole partition.
            time_start=item.time_start,
            time_end=item.time_end,
            records=item.records,
            source=stream.kind,
        )
        for item in built.files
    ]
    if built.error is not None:
        # Some formats were published before another failed: record what is on disk, keep
        # the cursor, and fail the group (its retry rewrites every format).
        await ledger.commit(entries)
        raise built.error
    await ledger.commit(entries, cursor_time=ledger.cursor_to(fetch_to))
    size = sum(entry.size for entry in entries)
    log.info(
        "window_harvested",
        stream=stream.name,
        window=group.label(),
        windows=len(group.members),
        fetch_from=fetch_from.isoformat(),
        fetch_to=fetch_to.isoformat(),
        pages=opened.pages,
        new_records=new_records,
        records=built.records,
        files=len(entries),
        bytes=size,
        complete=group.complete and until is None,
        elapsed_ms=round((time.monotonic() - opened.started) * 1000),
    )
    if new_records > 0 and entries:
        await ledger.announce(
            time_start=fetch_from,
            time_end=fetch_to,
            files=[file.path for file in published],
            records=new_records,
            replaced=rereads and any(file.replaced for file in published),
        )
    return new_records, len(entries), size


async def harvest_timeseries(
    ctx: HarvestContext,
    ledger: StreamLedger,
    stream: TimeSeriesStream,
    span: Span,
    *,
    max_pages: int | None = None,
) -> None:
    """One pass: every due window from the cursor (or a backfill range) to the horizon, as
    one request series.

    With `max_pages` the pass is bounded: it stops after the page that spends that budget
    (committing the group in progress up to that page's `next.dateFrom`), and plans at most
    PASS_MAX_SPAN of windows, but never less than the windows of one gather span (a day's).
    """
    outcome = ledger.outcome
    gather = gather_span(ctx.partition)
    limit = None
    if max_pages is not None:
        whole_group = min(gather // stream.window, GATHER_MAX_WINDOWS)
        limit = max(PASS_MAX_SPAN // stream.window, whole_group)
    plans = plan_windows(
        cursor=span.cursor,
        start=span.start,
        horizon=span.horizon,
        size=stream.window,
        lookback=timedelta(0) if span.backfill else stream.lookback,
        limit=None if limit is None else limit + 1,
    )
    groups = group_plans(plans, gather)
    if limit is not None and len(plans) > limit:
        # The window past the limit tells whether the limit cuts a group: if so, the group is
        # left whole to the next pass.
        groups = within_limit(groups, limit)
        outcome.caught_up = False
    planned = sum(len(group.members) for group in groups)
    done = 0

    async def count(
        group: WindowGroup, until: datetime | None, totals: tuple[int, int, int]
    ) -> None:
        # Every window counts as one unit done; the group's files and bytes are added once,
        # and its records (those a part-publish tallied are not in `totals`). A window a
        # budget cut is not done: the next pass goes on in it.
        nonlocal done
        records, files, size = totals
        keys = [
            _key(plan.window) for plan in group.members if until is None or plan.window.end <= until
        ]
        await ledger.done(*keys, files=0, size=0)
        done += len(keys)
        ledger.tally(records=records, files=files, size=size)
        if done < planned:  # the end of the pass is reported once, below
            ledger.report(done, planned)

    ledger.report(0, planned)
    pages = 0
    position = 0
    while position < len(groups):
        if ledger.stopping or (max_pages is not None and pages >= max_pages):
            outcome.caught_up = False
            break
        series = _Series()
        budget = None if max_pages is None else max_pages - pages
        try:
            await _harvest_series(
                ctx, ledger, stream, groups[position:], span.cursor, series, budget, count
            )
        except _POISON as exc:
            # Perhaps one window's fault: the group it fell in is tried window by window,
            # each window with its own attempts counted, so a bad hour is quarantined by
            # itself, not with the day around it; the groups before it stay committed.
            pages += series.pages
            if position + series.committed >= len(groups):
                raise  # every group was committed: the failure is no window's
            failing = groups[position + series.committed]
            alone = len(failing.members) == 1 and position + series.committed == len(groups) - 1
            if series.request_failed and alone:
                # The failing request started in this one window and the series ended with
                # it: that request was the window's attempt, and asking the window alone would
                # send the same request again (every near-real-time poll). A request that
                # went on past the window is not the window's fault: it is tried alone below.
                await _count_failure(ledger, stream, failing.members[0], exc)
                done += 1
                if done < planned:
                    ledger.report(done, planned)
                position += series.committed + 1
                continue
            if len(failing.members) > 1:
                log.warning(
                    "window_group_split",
                    stream=stream.name,
                    windows=failing.label(),
                    reason=type(exc).__name__,
                )
            published_to = series.published_to  # a page ended inside the group: up to there
            for single in failing.singles():
                if ledger.stopping:
                    outcome.caught_up = False
                    return
                if published_to is not None and single.fetch_to <= published_to:
                    await ledger.done(_key(single.members[0].window), files=0, size=0)
                else:
                    await _harvest_single(
                        ctx, ledger, stream, single, _later(span.cursor, published_to)
                    )
                done += 1
                if done < planned:
                    ledger.report(done, planned)
            position += series.committed + 1
            continue
        pages += series.pages
        position += series.committed
        if series.cut_at is not None:
            outcome.caught_up = False
            break
    ledger.report(planned, planned)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    """The later of two instants, either of which may be unknown."""
    return max(a, b) if a is not None and b is not None else a or b


async def _harvest_single(
    ctx: HarvestContext,
    ledger: StreamLedger,
    stream: TimeSeriesStream,
    single: WindowGroup,
    cursor_before: datetime | None,
) -> None:
    """One window, counting a poison-candidate failure against it and quarantining it (the
    cursor moved past) at the limit."""
    plan = single.members[0]
    try:
        records, files, size = await harvest_window(ctx, ledger, stream, single, cursor_before)
    except _POISON as exc:
        await _count_failure(ledger, stream, plan, exc)
        return
    await ledger.done(_key(plan.window), files=files, size=size, records=records)


async def _count_failure(
    ledger: StreamLedger, stream: TimeSeriesStream, plan: WindowPlan, exc: Exception
) -> None:
    """Count a poison-candidate failure against one window: raise it again below the limit,
    quarantine the window (the cursor moved past what was fetched of it) at it."""
    key = _key(plan.window)
    cursor_time = ledger.cursor_to(plan.fetch_to)
    attempts = await ledger.failed(key, exc, move_past=True, cursor_time=cursor_time)
    if attempts < POISON_ATTEMPTS:
        raise exc
    log.warning(
        "window_quarantined",
        stream=stream.name,
        item=key,
        reason=type(exc).__name__,
        attempts=attempts,
    )
