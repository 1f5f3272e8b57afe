"""`scalardata` and `rawdata` streams: aligned windows from the cursor to now - safety lag.

Per window: pages are fetched into a bounded queue and merged into one writer per output
format (which also holds the records the file already has); a file is either grown in place
(only later records: NetCDF past `numrecs`, text formats by whole lines, then fdatasync) or
published atomically (temporary file, fsync, rename), and only then does the cursor move, in
the same transaction that records the files in the manifest. A crash anywhere re-fetches the
window: records are keyed by time (and sensor), so records already appended are found in the
file and nothing is lost or doubled (docs/dev/netcdf-appends.md, docs/dev/text-appends.md).

Consecutive windows of one output partition (a backfill's hours of a day, a catch-up after
downtime, a poll that crosses a window boundary; the complete ones and the window in progress
that ends a plan) are gathered: fetched as one range and built as one unit (at most a day), so
a daily or hourly partition file is written once per pass (a monthly one once per day of data)
and the fetch pages at the API's row limit instead of once per window. The group commits as
a window does, once; a group that fails in a way that could be one window's fault is retried
window by window, so one bad hour is quarantined alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import structlog

from pipeline.engine.batches import batch_of
from pipeline.engine.context import HarvestContext
from pipeline.engine.ledger import POISON_ATTEMPTS, Span, StreamLedger
from pipeline.engine.streams.base import source_of
from pipeline.engine.windows import (
    GATHER_MAX_WINDOWS,
    WindowGroup,
    gather_span,
    group_plans,
    plan_windows,
    within_limit,
)
from pipeline.exceptions import OncRequestError
from pipeline.onc import RawPage, RawQuery, ScalarPage, ScalarQuery
from pipeline.onc.errors import OncMalformedReply, OncSchemaError
from pipeline.outputs.pool import WindowBuild
from pipeline.records import Window
from pipeline.settings import TimeSeriesStream

log = structlog.get_logger(__name__)

_DONE = object()
# A fetch spanning at least this much time is bulk work, built on the window workers; a
# shorter one is a near-real-time poll, built in the daemon's process, even when it ends a
# window (the first poll past an hour of `window: 1h`): its few seconds of data would only
# cross a pipe to a worker and back (issue 21).
BULK_SPAN = timedelta(minutes=15)


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


async def harvest_window(
    ctx: HarvestContext,
    ledger: StreamLedger,
    stream: TimeSeriesStream,
    group: WindowGroup,
    cursor_before: datetime | None,
) -> tuple[int, int, int]:
    """Fetch, merge, publish and commit one window, or one group of windows as a unit.
    Returns (new records, files, bytes).

    `cursor_before` tells whether this fetch re-reads published data (lookback, a re-run
    after a crash): only then may existing records have changed (ERDDAP's hardFlag case).
    """
    started = time.monotonic()
    if ctx.prepare is not None:
        await ctx.prepare(stream)
    # Windows held in memory at once are bounded process-wide, whatever the stream count.
    async with ctx.window_slots:
        return await _harvest_window(ctx, ledger, stream, group, cursor_before, started)


async def _harvest_window(
    ctx: HarvestContext,
    ledger: StreamLedger,
    stream: TimeSeriesStream,
    group: WindowGroup,
    cursor_before: datetime | None,
    started: float,
) -> tuple[int, int, int]:
    dataset = stream.resolved_dataset_id
    bulk = group.fetch_to - group.fetch_from >= BULK_SPAN
    builder = ctx.window_builder(bulk=bulk)
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=ctx.page_queue_size)

    async def fetch() -> None:
        async for page in _pages(ctx, stream, group.fetch_from, group.fetch_to):
            # Packed right away: the batch shares one time axis between sensors, so a page
            # waiting in the queue holds one copy of its times instead of one per sensor.
            await queue.put(batch_of(page))
            del page
        await queue.put(_DONE)

    pages = 0
    build: WindowBuild | None = None
    try:
        try:
            async with asyncio.TaskGroup() as tasks:
                # The first request goes out while the window opens: opening waits for the
                # worker (its first start, or the publish of another window queued before it)
                # and reads what the files hold, none of which the request needs. A fetch that
                # fails first cancels the open; an inline open then still finishes in its
                # thread, and what it built is dropped unpublished (writers open no files
                # before their first batch).
                tasks.create_task(fetch(), name=f"fetch:{stream.name}")
                build = await builder.open(stream.formats, dataset, group.covering, group.windows)
                while (batch := await queue.get()) is not _DONE:
                    pages += 1
                    await build.add(batch)
                    del batch
        except* Exception as group_error:
            # The first failure (an OncError of the fetch, an OutputError of the open) is what
            # callers classify, not the task group.
            raise group_error.exceptions[0] from None
        # One format failing to publish (a full disk) closes the others' temporaries too.
        built = await build.publish()
    except BaseException:
        # On cancellation a worker may still be busy with this window; the discard is queued
        # behind it (a worker runs its calls in order), and shielded so it is sent at all.
        if build is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(build.discard())
        raise

    new_records = built.records - build.records_before
    rereads = cursor_before is not None and group.fetch_from < cursor_before
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
        # the cursor, and fail the window (its retry rewrites every format).
        await ledger.commit(entries)
        raise built.error
    await ledger.commit(entries, cursor_time=ledger.cursor_to(group.fetch_to))
    size = sum(entry.size for entry in entries)
    log.info(
        "window_harvested",
        stream=stream.name,
        window=group.label(),
        windows=len(group.members),
        fetch_from=group.fetch_from.isoformat(),
        fetch_to=group.fetch_to.isoformat(),
        pages=pages,
        new_records=new_records,
        records=built.records,
        files=len(entries),
        bytes=size,
        complete=group.complete,
        elapsed_ms=round((time.monotonic() - started) * 1000),
    )
    if new_records > 0 and entries:
        await ledger.announce(
            time_start=group.fetch_from,
            time_end=group.fetch_to,
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
    max_windows: int | None = None,
) -> None:
    """One pass: every due window from the cursor (or a backfill range) to the horizon.

    `max_windows` bounds the pass, but never below the windows of one gather span (a day's,
    as one `window: 1d` window would take): smaller windows do not cut a day into passes that
    each rebuild its partition.
    """
    outcome = ledger.outcome
    gather = gather_span(ctx.partition)
    whole_group = min(gather // stream.window, GATHER_MAX_WINDOWS)
    limit = None if max_windows is None else max(max_windows, whole_group)
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
    for group in ledger.each(groups, weight=lambda group: len(group.members)):
        if len(group.members) == 1:
            await _harvest_single(ctx, ledger, stream, group, span.cursor)
            continue
        try:
            records, files, size = await harvest_window(ctx, ledger, stream, group, span.cursor)
        except _POISON as exc:
            # Perhaps one window's fault: each is tried alone, with its own attempts counted,
            # so a bad hour is quarantined by itself, not with the day around it.
            log.warning(
                "window_group_split",
                stream=stream.name,
                windows=group.label(),
                reason=type(exc).__name__,
            )
            for single in group.singles():
                if ledger.stopping:
                    outcome.caught_up = False
                    return
                await _harvest_single(ctx, ledger, stream, single, span.cursor)
            continue
        # Every window counts as one unit done; the group's files, bytes and records go to
        # its last one.
        for plan in group.members[:-1]:
            await ledger.done(_key(plan.window), files=0, size=0)
        last = group.members[-1].window
        await ledger.done(_key(last), files=files, size=size, records=records)
    ledger.report(planned, planned)


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
    key = _key(plan.window)
    try:
        records, files, size = await harvest_window(ctx, ledger, stream, single, cursor_before)
    except _POISON as exc:
        cursor_time = ledger.cursor_to(plan.fetch_to)
        attempts = await ledger.failed(key, exc, move_past=True, cursor_time=cursor_time)
        if attempts < POISON_ATTEMPTS:
            raise
        log.warning(
            "window_quarantined",
            stream=stream.name,
            item=key,
            reason=type(exc).__name__,
            attempts=attempts,
        )
        return
    await ledger.done(key, files=files, size=size, records=records)
