"""`scalardata` and `rawdata` streams: aligned windows from the cursor to now - safety lag.

Per window: pages are fetched into a bounded queue and merged into one writer per output
format (which also holds the records the file already has), every file is published
atomically, and only then does the cursor move, in the same transaction that records the files
in the manifest. A crash anywhere re-fetches the window and rewrites the same files: records are
keyed by time (and sensor), so nothing is lost and nothing is doubled.
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
from pipeline.engine.context import POISON_ATTEMPTS, HarvestContext
from pipeline.engine.streams.base import PassOutcome
from pipeline.engine.windows import WindowPlan, plan_windows
from pipeline.exceptions import OncRequestError
from pipeline.onc import DataSource, RawPage, RawQuery, ScalarPage, ScalarQuery
from pipeline.onc.errors import OncMalformedReply, OncSchemaError
from pipeline.records import NewDataEvent
from pipeline.settings import TimeSeriesStream
from pipeline.state.base import ManifestEntry

log = structlog.get_logger(__name__)

_DONE = object()
# A fetch spanning at least this much time (or a whole window) is bulk work, built on the
# window workers; a shorter one is a near-real-time poll, built in the daemon's process.
BULK_SPAN = timedelta(minutes=15)


def source_of(stream: TimeSeriesStream) -> DataSource:
    """The Oceans API addressing of a stream."""
    return DataSource(
        location_code=stream.location_code,
        device_category_code=stream.device_category_code,
        device_code=stream.device_code,
    )


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
    stream: TimeSeriesStream,
    plan: WindowPlan,
    *,
    move_cursor: bool = True,
    cursor_before: datetime | None = None,
) -> tuple[int, int, int]:
    """Fetch, merge, publish and commit one window. Returns (new records, files, bytes).

    `cursor_before` tells whether this fetch re-reads published data (lookback, a re-run
    after a crash): only then may existing records have changed (ERDDAP's hardFlag case).
    """
    started = time.monotonic()
    if ctx.prepare is not None:
        await ctx.prepare(stream)
    # Windows held in memory at once are bounded process-wide, whatever the stream count.
    async with ctx.window_slots:
        return await _harvest_window(ctx, stream, plan, move_cursor, cursor_before, started)


async def _harvest_window(
    ctx: HarvestContext,
    stream: TimeSeriesStream,
    plan: WindowPlan,
    move_cursor: bool,
    cursor_before: datetime | None,
    started: float,
) -> tuple[int, int, int]:
    dataset = stream.resolved_dataset_id
    bulk = plan.complete or plan.fetch_to - plan.fetch_from >= BULK_SPAN
    build = await ctx.window_builder(bulk=bulk).open(stream.formats, dataset, plan.window)
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=ctx.page_queue_size)

    async def fetch() -> None:
        async for page in _pages(ctx, stream, plan.fetch_from, plan.fetch_to):
            # Packed right away: the batch shares one time axis between sensors, so a page
            # waiting in the queue holds one copy of its times instead of one per sensor.
            await queue.put(batch_of(page))
            del page
        await queue.put(_DONE)

    pages = 0
    try:
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(fetch(), name=f"fetch:{stream.name}")
                while (batch := await queue.get()) is not _DONE:
                    pages += 1
                    await build.add(batch)
                    del batch
        except* Exception as group_error:
            # The fetch task's failure (an OncError) is what callers classify, not the group.
            raise group_error.exceptions[0] from None
        # One format failing to publish (a full disk) closes the others' temporaries too.
        built = await build.publish()
    except BaseException:
        # On cancellation a worker may still be busy with this window; the discard is queued
        # behind it (a worker runs its calls in order), and shielded so it is sent at all.
        with contextlib.suppress(Exception):
            await asyncio.shield(build.discard())
        raise

    new_records = built.records - build.records_before
    rereads = cursor_before is not None and plan.fetch_from < cursor_before
    published = [item.file for item in built.files if item is not None]
    now = ctx.clock()
    entries = [
        ManifestEntry(
            path=str(item.file.path.relative_to(ctx.output_root)),
            stream=stream.name,
            dataset_id=dataset,
            size=item.file.size,
            sha256=item.file.sha256,
            # A partitioned file (NetCDF, CSV, raw text) covers its whole partition.
            time_start=item.time_start or plan.window.start,
            time_end=item.time_end or plan.window.end,
            records=item.records,
            source=stream.kind,
            published_at=now,
        )
        for item in built.files
        if item is not None
    ]
    if built.error is not None:
        # Some formats were published before another failed: record what is on disk, keep
        # the cursor, and fail the window (its retry rewrites every format).
        await ctx.commit(stream.name, entries, cursor_time=None)
        raise built.error
    await ctx.commit(stream.name, entries, cursor_time=plan.fetch_to if move_cursor else None)
    size = sum(entry.size for entry in entries)
    log.info(
        "window_harvested",
        stream=stream.name,
        window=plan.window.label(),
        fetch_from=plan.fetch_from.isoformat(),
        fetch_to=plan.fetch_to.isoformat(),
        pages=pages,
        new_records=new_records,
        records=built.records,
        files=len(entries),
        bytes=size,
        complete=plan.complete,
        elapsed_ms=round((time.monotonic() - started) * 1000),
    )
    if new_records > 0 and entries:
        await ctx.events.publish(
            NewDataEvent(
                stream=stream.name,
                dataset_id=dataset,
                time_start=plan.fetch_from,
                time_end=plan.fetch_to,
                files=tuple(file.path for file in published),
                records=new_records,
                replaced=rereads and any(file.replaced for file in published),
            )
        )
    return new_records, len(entries), size


async def harvest_timeseries(
    ctx: HarvestContext,
    stream: TimeSeriesStream,
    *,
    max_windows: int | None = None,
    date_from: datetime | None = None,
    date_to: datetime | None = None,
) -> PassOutcome:
    """One pass: every due window from the cursor (or a backfill range) to the horizon.

    With `date_from`/`date_to` (backfill) the cursor is neither read nor moved.
    """
    outcome = PassOutcome(stream=stream.name)
    now = ctx.clock()
    horizon = now - stream.safety_lag
    backfill = date_from is not None
    if backfill:
        assert date_from is not None
        cursor, start = None, date_from
        horizon = min(horizon, date_to) if date_to is not None else horizon
        lookback = timedelta(0)
    else:
        record = await ctx.store.get_stream(stream.name)
        cursor = record.cursor_time if record else None
        start = stream.start or (now - stream.initial_backfill)
        lookback = stream.lookback
    plans = plan_windows(
        cursor=cursor,
        start=start,
        horizon=horizon,
        size=stream.window,
        lookback=lookback,
        limit=None if max_windows is None else max_windows + 1,
    )
    if max_windows is not None and len(plans) > max_windows:
        plans = plans[:max_windows]
        outcome.caught_up = False
    for done, plan in enumerate(plans):
        ctx.report(stream.name, done, len(plans))
        if ctx.stop.is_set():
            outcome.caught_up = False
            break
        key = f"window:{plan.window.label()}"
        try:
            records, files, size = await harvest_window(
                ctx, stream, plan, move_cursor=not backfill, cursor_before=cursor
            )
        except (OncMalformedReply, OncSchemaError, OncRequestError) as exc:
            # A page that cannot be parsed (even after the client's retries) or a request the
            # server refuses: poison candidates. Outages and auth errors are not the window's
            # fault and are raised as they are.
            if await _poisoned(ctx, stream, key, plan, exc, move_cursor=not backfill):
                outcome.quarantined += 1
                continue
            raise
        await ctx.store.clear_attempts(stream.name, key)
        outcome.units += 1
        outcome.records += records
        outcome.files += files
        outcome.bytes += size
    ctx.report(stream.name, len(plans), len(plans))
    return outcome


async def _poisoned(
    ctx: HarvestContext,
    stream: TimeSeriesStream,
    key: str,
    plan: WindowPlan,
    exc: Exception,
    *,
    move_cursor: bool,
) -> bool:
    """Count a failed attempt; past the limit, quarantine the window and move past it."""
    reason = type(exc).__name__
    attempts = await ctx.store.note_attempt(stream.name, key, reason)
    if attempts < POISON_ATTEMPTS:
        return False
    await ctx.store.quarantine(stream.name, key, reason, str(exc))
    await ctx.commit(stream.name, [], cursor_time=plan.fetch_to if move_cursor else None)
    log.warning(
        "window_quarantined", stream=stream.name, item=key, reason=reason, attempts=attempts
    )
    return True
