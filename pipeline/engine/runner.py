"""The harvest loop: asks the scheduler what is due, runs stream passes in two lanes, drains.

Lanes keep near-real-time polls from starving behind bulk work: caught-up time-series streams
run in the realtime lane whenever due; backlogs, archive downloads and data products share the
bulk lane, which may hold at most `bulk_slots` passes at once. The cap counts passes, not
requests: an archive pass with `parallel_downloads` and the coverage mender's re-harvests take
more request slots of the shared politeness budget, so a realtime poll can still wait for a
slot behind them (for at most one request's time: slots are taken per request).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Coroutine, Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any, TypedDict, Unpack

import structlog

from pipeline.coordination.leases import hold_lease, stream_resource
from pipeline.engine.context import HarvestContext
from pipeline.engine.ledger import StreamLedger
from pipeline.engine.scheduler import Lane, Scheduler
from pipeline.engine.streams.archive import harvest_archive
from pipeline.engine.streams.base import PassOutcome
from pipeline.engine.streams.products import harvest_products
from pipeline.engine.streams.timeseries import harvest_timeseries
from pipeline.exceptions import LeaseLostError, OncAuthError, PipelineError
from pipeline.logs import bind, unbind
from pipeline.redaction import redact_text
from pipeline.settings import (
    ArchiveFileStream,
    StreamSettings,
    TimeSeriesStream,
)

log = structlog.get_logger(__name__)

# Rows one time-series pass may fetch before yielding, so a long backlog interleaves with
# other streams, reloads and shutdown instead of holding a task for hours. Counted in pages of
# the stream's row limit (`pages_per_pass`), not in windows: what a pass costs is its requests
# and the rows they bring, whatever the window or the sampling rate. 400,000 rows are four
# pages at ONC's limit of 100,000 rows a sensor: a few seconds of work at ONC's latency and
# about 4.6 days of a 1 Hz instrument, so a backfill of a few days is one pass, paged at the
# row limit without a cut. A stream with a smaller `row_limit` gets more pages, not fewer rows:
# with 1,200-row pages a budget of four pages made every pass publish its partition in progress
# and commit after 4,800 rows, and the scale-out benchmark's CPU tripled. A sensor sampling
# once a minute is bounded by the span a pass plans instead (PASS_MAX_SPAN, in
# streams/timeseries).
ROWS_PER_PASS = 400_000


def pages_per_pass(stream: TimeSeriesStream) -> int:
    """The page budget of one bounded pass of `stream`: ROWS_PER_PASS in its pages."""
    return max(1, -(-ROWS_PER_PASS // stream.row_limit))


class PassRange(TypedDict, total=False):
    """How far one pass goes: a backfill's [date_from, date_to) (absent: from the cursor),
    and at most `max_pages` pages of time-series data (absent: `pages_per_pass`; None: all)."""

    date_from: datetime | None
    date_to: datetime | None
    max_pages: int | None


async def leased_pass(
    ctx: HarvestContext, stream: StreamSettings, **limits: Unpack[PassRange]
) -> PassOutcome:
    """A pass under the stream's lease: skipped when the stream is held (by another
    instance, or in this one by a live pass or a mend: a partition file is rebuilt whole, so
    two passes over one stream must never build it at once), cancelled (LeaseLostError) if
    the lease is lost midway, commits fenced by the lease. With a date range it is a
    backfill of that range, as in `harvest_pass`."""

    def run(context: HarvestContext) -> Coroutine[Any, Any, PassOutcome]:
        return harvest_pass(context, stream, **limits)

    if ctx.coordination is None:
        return await run(ctx)
    resource = stream_resource(stream.name)
    async with hold_lease(ctx.coordination, resource, ctx.owner, ctx.lease_ttl) as held:
        if held is None:
            log.info("stream_held_elsewhere", stream=stream.name)
            return PassOutcome(stream=stream.name, held_elsewhere=True)
        work = asyncio.create_task(
            run(replace(ctx, lease=held)),
            name=f"leased:{stream.name}",
        )
        lost = asyncio.create_task(held.lost.wait(), name=f"lease-watch:{stream.name}")
        try:
            await asyncio.wait({work, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            lost.cancel()
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await work
        if not work.cancelled():
            return work.result()
        held.check()  # the lease was lost: raises LeaseLostError
        raise asyncio.CancelledError


async def harvest_pass(
    ctx: HarvestContext, stream: StreamSettings, **limits: Unpack[PassRange]
) -> PassOutcome:
    """One pass over any kind of stream: from the cursor, or over [date_from, date_to) with
    the cursor neither read nor moved (a backfill)."""
    ledger = StreamLedger(ctx, stream)
    span = await ledger.span(stream, limits.get("date_from"), limits.get("date_to"))
    if isinstance(stream, TimeSeriesStream):
        max_pages = limits.get("max_pages", pages_per_pass(stream))
        await harvest_timeseries(ctx, ledger, stream, span, max_pages=max_pages)
    elif isinstance(stream, ArchiveFileStream):
        await harvest_archive(ctx, ledger, stream, span)
    else:
        await harvest_products(ctx, ledger, stream, span)
    return ledger.outcome


def _lane(stream: StreamSettings, caught_up: bool) -> Lane:
    """Time-series streams are realtime until a pass shows a backlog (its first pass is
    bounded by `pages_per_pass`, so optimism costs little); the rest is bulk work."""
    if isinstance(stream, TimeSeriesStream) and caught_up:
        return Lane.REALTIME
    return Lane.BACKFILL


class Runner:
    """Runs every enabled stream at its cadence until `ctx.stop` is set.

    With `burst` (`once`, as arq's `Worker(burst=True)`) the same loop starts every stream at
    once, runs pass after pass while a stream has a backlog, and returns when every stream is
    caught up or has failed; `results` then holds each stream's totals or its error.
    """

    def __init__(
        self,
        ctx: HarvestContext,
        streams: Iterable[StreamSettings],
        *,
        bulk_slots: int,
        max_passes: int = 0,
        burst: bool = False,
    ) -> None:
        self._ctx = ctx
        self._scheduler = Scheduler()
        self._streams: dict[str, StreamSettings] = {}
        self._caught_up: dict[str, bool] = {}
        self._running: dict[str, asyncio.Task[PassOutcome | None]] = {}
        self._running_lanes: dict[str, Lane] = {}
        self._bulk_slots = max(1, bulk_slots)
        self._max_passes = max_passes
        self._wake = asyncio.Event()
        self._burst = burst
        self._totals: dict[str, PassOutcome] = {}
        self.last_outcomes: dict[str, PassOutcome] = {}
        self.results: dict[str, PassOutcome | Exception] = {}
        self.reload(streams)

    @property
    def streams(self) -> dict[str, StreamSettings]:
        """The streams currently scheduled, by name."""
        return dict(self._streams)

    @property
    def running(self) -> list[str]:
        """Names of streams with a pass in flight."""
        return sorted(self._running)

    def reload(self, streams: Iterable[StreamSettings]) -> None:
        """Apply a new stream list: add, change and remove streams without a restart.

        A changed stream's running pass finishes under its old settings; the next uses the new.
        """
        wanted = {s.name: s for s in streams if s.enabled}
        for name in list(self._streams):
            if name not in wanted:
                self._scheduler.remove(name)
                del self._streams[name]
                log.info("stream_removed", stream=name)
        for name, stream in wanted.items():
            lane = _lane(stream, self._caught_up.get(name, True))
            if name in self._streams:
                if self._streams[name] != stream:
                    self._scheduler.update(name, cadence=stream.cadence, lane=lane)
                    log.info("stream_changed", stream=name)
            elif self._burst:
                self._scheduler.add(name, cadence=stream.cadence, lane=lane)  # due at once
            else:
                now = self._ctx.clock()
                self._scheduler.add(name, cadence=stream.cadence, lane=lane, now=now)
                # First passes are spread over the cadence; say when, or a wait looks like a hang.
                first = self._scheduler.due_at(name, now)
                log.info(
                    "stream_added",
                    stream=name,
                    kind=stream.kind,
                    first_pass_in_s=round(max(0.0, (first - now).total_seconds())),
                    first_pass_at=first.strftime("%H:%M:%SZ"),
                )
            self._streams[name] = stream
        self._wake.set()

    async def run(self) -> None:
        """Schedule passes until stop (or, in burst, until every stream is done); then let
        running passes finish their current unit."""
        ctx = self._ctx
        while not ctx.stop.is_set():
            if self._burst and not self._running and not self._scheduler.names():
                return
            self._wake.clear()
            now = ctx.clock()
            blocked = self._start_due(now)
            # Streams waiting for a bulk slot are woken by a finishing pass (_wake), not by
            # the clock: leaving them out keeps their past due time from spinning the loop.
            upcoming = [
                self._scheduler.due_at(name, now)
                for name in self._scheduler.names()
                if name not in self._running and name not in blocked
            ]
            delay = (min(upcoming) - ctx.clock()).total_seconds() if upcoming else 60.0
            await _wait_any(ctx.stop, self._wake, seconds=max(0.05, min(delay, 60.0)))
        if self._burst:
            # Stopped early: a burst has no drain deadline, its passes stop at their next unit.
            await asyncio.gather(*self._running.values(), return_exceptions=True)
            for name in self._streams:
                self.results.setdefault(name, PassOutcome(stream=name, caught_up=False))

    async def drain(self, grace: float) -> None:
        """Wait for in-flight passes up to `grace` seconds, then cancel what is left."""
        tasks = list(self._running.values())
        if not tasks:
            return
        log.info("drain_started", passes=len(tasks), grace_s=grace)
        _, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            log.warning("drain_cancelled", passes=sorted(t.get_name() for t in pending))

    def _start_due(self, now: datetime) -> set[str]:
        """Start every due pass the lanes allow; return the due ones that had to wait."""
        # Lanes of running passes as they started: a stream removed by a reload may still run.
        bulk = sum(1 for lane in self._running_lanes.values() if lane is Lane.BACKFILL)
        blocked: set[str] = set()
        for name in self._scheduler.due(now):
            if name in self._running or name not in self._streams:
                continue
            if self._max_passes and len(self._running) >= self._max_passes:
                blocked.add(name)
                continue
            stream = self._streams[name]
            lane = _lane(stream, self._caught_up.get(name, True))
            if lane is Lane.BACKFILL:
                if bulk >= self._bulk_slots:
                    blocked.add(name)
                    continue
                bulk += 1
            self._scheduler.started(name, now)
            task = asyncio.create_task(self._pass(stream), name=f"pass:{name}")
            self._running[name] = task
            self._running_lanes[name] = lane
        return blocked

    async def _pass(self, stream: StreamSettings) -> PassOutcome | None:
        ctx = self._ctx
        started = time.monotonic()
        bind(stream=stream.name, run_id=uuid.uuid4().hex[:12])
        outcome: PassOutcome | None = None
        try:
            outcome = await leased_pass(ctx, stream)
            if self._burst:
                await self._add_up(stream, outcome)
            elif not outcome.held_elsewhere:
                await self._record(stream, outcome)
            return outcome
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._failed(stream, exc)
            return None
        finally:
            self._finish(stream, outcome, started)
            unbind("stream", "run_id")

    async def _record(self, stream: StreamSettings, outcome: PassOutcome) -> None:
        """Store the result of a pass (a burst's: of all its passes) for `status`. A pass
        whose commit carried a cursor time recorded its success with it: not written twice."""
        if outcome.ok:
            if not outcome.success_recorded:
                await self._ctx.store.record_success(stream.name, self._ctx.clock())
        else:
            await self._ctx.store.record_failure(
                stream.name, self._ctx.clock(), redact_text("; ".join(outcome.errors))[:2000]
            )

    async def _add_up(self, stream: StreamSettings, outcome: PassOutcome) -> None:
        """Burst: add a pass to the stream's totals; once it is caught up, failed, held by
        another instance or stopped, record the totals as the stream's result."""
        total = self._totals.setdefault(stream.name, PassOutcome(stream=stream.name))
        if outcome.held_elsewhere:
            total.errors.append("held by another instance")
        else:
            total.units += outcome.units
            total.records += outcome.records
            total.files += outcome.files
            total.bytes += outcome.bytes
            total.quarantined += outcome.quarantined
            total.errors += outcome.errors
            total.warnings += [w for w in outcome.warnings if w not in total.warnings]
            total.caught_up = outcome.caught_up
        backlog = not outcome.held_elsewhere and not total.caught_up and total.ok
        if backlog and not self._ctx.stop.is_set():
            return  # another pass: `_finish` makes the stream due again at once
        await self._record(stream, total)
        self.results[stream.name] = total

    async def _failed(self, stream: StreamSettings, exc: Exception) -> None:
        message = redact_text(f"{type(exc).__name__}: {exc}")[:2000]
        if self._burst:
            self.results[stream.name] = exc
        if isinstance(exc, LeaseLostError):
            # Another instance took the stream over; it is its work now, not a failure (but
            # the end of a burst, which has no next pass to take it back).
            log.warning("stream_lease_lost", stream=stream.name, error=message)
            if not self._burst:
                return
        if isinstance(exc, PipelineError):
            level = "error" if isinstance(exc, OncAuthError) else "warning"
            getattr(log, level)("stream_pass_failed", stream=stream.name, error=message)
        else:
            log.exception("stream_pass_crashed", stream=stream.name, error=message)
        with contextlib.suppress(PipelineError):
            await self._ctx.store.record_failure(stream.name, self._ctx.clock(), message)

    def _finish(self, stream: StreamSettings, outcome: PassOutcome | None, started: float) -> None:
        self._running.pop(stream.name, None)
        self._running_lanes.pop(stream.name, None)
        ok = outcome is not None and outcome.ok
        caught_up = (
            outcome.caught_up if outcome is not None else self._caught_up.get(stream.name, True)
        )
        if outcome is not None:
            self.last_outcomes[stream.name] = outcome
        previous = self._caught_up.get(stream.name)
        self._caught_up[stream.name] = caught_up
        if stream.name in self._streams:
            if previous != caught_up:
                self._scheduler.update(
                    stream.name, cadence=stream.cadence, lane=_lane(stream, caught_up)
                )
            # A backlog goes on at once; a caught-up stream waits for its cadence.
            self._scheduler.finished(
                stream.name, self._ctx.clock(), ok=ok, again=not caught_up and ok
            )
            if self._burst and stream.name in self.results:
                self._scheduler.remove(stream.name)  # done: a burst runs it no more
        log.info(
            "stream_pass_finished",
            stream=stream.name,
            ok=ok,
            caught_up=ok and caught_up,  # a failed pass caught up with nothing
            units=outcome.units if outcome else 0,
            records=outcome.records if outcome else 0,
            files=outcome.files if outcome else 0,
            bytes=outcome.bytes if outcome else 0,
            elapsed_ms=round((time.monotonic() - started) * 1000),
        )
        self._wake.set()


async def _wait_any(*events: asyncio.Event, seconds: float) -> None:
    """Return when any event is set or after `seconds`."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
