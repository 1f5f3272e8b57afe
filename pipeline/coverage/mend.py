"""Mending: the daemon's coverage loop. Each round checks every stream, publishes the coverage
metrics, and re-harvests `missing` ranges (a stream's, and those of a scalardata stream's
sensors: a re-harvested window merges into its file) through the same client and limiter as
every pass.

Bounded: a range is cut into chunks of the stream's window (a product stream's period, on
its grid; an hour for archive files), at most `per_round` chunks start a round and
`in_flight` run at once. A chunk is re-harvested with the backfill machinery (`harvest_pass`
over the range, the cursor untouched). Each attempt is counted like a failing window; a chunk
that fails (or, for files, publishes none) `POISON_ATTEMPTS` times is quarantined under
`mend:<range>`, and the coverage shows it as quarantined. A time series' re-harvest that adds
no record is ONC's answer that it has nothing there: remembered as an upstream gap. A stop cancels
the round in progress (its availability questions can take minutes at ONC's pace).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from pipeline.coverage.check import StreamCoverage, check_streams
from pipeline.coverage.model import Span, chunks
from pipeline.coverage.sources import UpstreamMemory
from pipeline.engine.context import HarvestContext
from pipeline.engine.ledger import POISON_ATTEMPTS
from pipeline.engine.runner import leased_pass
from pipeline.engine.streams.base import PassOutcome
from pipeline.ops.metrics import CoverageMetrics
from pipeline.records import align_down, format_instant
from pipeline.settings import DataProductStream, StreamSettings, TimeSeriesStream

log = structlog.get_logger(__name__)

MEND_CHUNK = timedelta(hours=1)
PER_ROUND = 8
IN_FLIGHT = 2
MIN_INTERVAL = 1.0


def chunk_size(stream: StreamSettings) -> timedelta:
    """How much one re-harvest covers: a time series' window, a product's period, else an
    hour."""
    if isinstance(stream, TimeSeriesStream):
        return stream.window
    if isinstance(stream, DataProductStream):
        return stream.period
    return MEND_CHUNK


def mend_chunks(stream: StreamSettings, missing: Span) -> list[Span]:
    """The re-harvests that cover `missing`: widened to whole seconds (the mend key's
    resolution, so a key read back names the same span) or, for a product stream, to whole
    periods on its grid (a pass orders complete periods only), then cut by `chunk_size`."""
    if isinstance(stream, DataProductStream):
        start, end = (
            align_down(missing.start, stream.period),
            align_down(missing.end, stream.period),
        )
        step = stream.period
    else:
        start, end = missing.start.replace(microsecond=0), missing.end.replace(microsecond=0)
        step = timedelta(seconds=1)
    if end < missing.end:
        end += step
    return chunks(Span(start, end), chunk_size(stream))


def mend_key(span: Span) -> str:
    """The attempt/quarantine key of a mended chunk (the span is read back from it)."""
    return f"mend:{format_instant(span.start)}_{format_instant(span.end)}"


@dataclass
class Mender:
    """Runs `round()` every `interval` seconds until `ctx.stop`; keeps the last check."""

    ctx: HarvestContext
    streams: Callable[[], Mapping[str, StreamSettings]]
    metrics: CoverageMetrics | None = None
    # Streams with a live pass in flight: not mended this round (a partition file is
    # rewritten whole, so a mend and a pass must not build the same one at once).
    busy: Callable[[], Collection[str]] = lambda: ()
    interval: float | None = None
    # Seconds mends in flight at stop get to end at their next unit (they see `ctx.stop`)
    # before they are cancelled: a mend cancelled while claiming the stream's lease could
    # leave the lease held until it expires, and the next start would find the stream held.
    grace: float = 10.0
    per_round: int = PER_ROUND
    in_flight: int = IN_FLIGHT
    last: list[StreamCoverage] = field(default_factory=list)
    mending: set[tuple[str, Span]] = field(default_factory=set)
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)
    _memory: UpstreamMemory = field(default_factory=UpstreamMemory)
    _slots: asyncio.Semaphore | None = None

    def period(self) -> float:
        """Seconds between rounds: the shortest cadence (at least a second)."""
        if self.interval is not None:
            return self.interval
        cadences = [s.cadence.total_seconds() for s in self.streams().values()]
        return max(MIN_INTERVAL, min(cadences, default=60.0))

    async def run(self) -> None:
        """Rounds until stop; a failing round is logged and the next one tried."""
        self._slots = asyncio.Semaphore(self.in_flight)
        try:
            while not self.ctx.stop.is_set():
                try:
                    await self._round_until_stop()
                except Exception as exc:  # a round must never end the daemon
                    log.warning("coverage_round_failed", error=f"{type(exc).__name__}: {exc}")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.ctx.stop.wait(), self.period())
        finally:
            if self._tasks:
                _, pending = await asyncio.wait(set(self._tasks), timeout=self.grace)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)

    async def _round_until_stop(self) -> None:
        """One round, cancelled when the daemon stops before it ends."""
        round_task = asyncio.create_task(self.round(), name="coverage-round")
        stopped = asyncio.create_task(self.ctx.stop.wait(), name="coverage-stop")
        try:
            await asyncio.wait({round_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopped.cancel()
            if not round_task.done():
                round_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await round_task
                log.info("coverage_round_cancelled", reason="stopping")
        if not round_task.cancelled():
            round_task.result()  # a failed round is raised for `run` to log

    async def round(self) -> list[StreamCoverage]:
        """One check of every stream; start mending up to `per_round` missing chunks."""
        streams = self.streams()
        started = time.monotonic()
        report = await check_streams(
            list(streams.values()),
            self.ctx.store,
            self.ctx.output_root,
            self.ctx.clock(),
            client=self.ctx.client,
            memory=self._memory,
        )
        self.last = report
        for row in report:
            if self.metrics is not None:
                self.metrics.report(
                    row.stream,
                    ratio=row.coverage.ratio,
                    gaps=row.coverage.seconds_by_class,
                    checked_at=row.coverage.checked_at,
                )
        started_now = 0
        busy = set(self.busy())
        for row in report:
            if row.stream in busy or self.ctx.stop.is_set():
                continue
            stream = streams[row.stream]
            for missing in row.missing():
                for chunk in mend_chunks(stream, missing):
                    if started_now >= self.per_round:
                        break
                    if (row.stream, chunk) in self.mending:
                        continue
                    self._start(stream, chunk)
                    started_now += 1
        log.info(
            "coverage_checked",
            streams=len(report),
            missing=sum(len(r.missing()) for r in report),
            mends_started=started_now,
            mends_in_flight=len(self.mending),
            elapsed_ms=round((time.monotonic() - started) * 1000),
        )
        return report

    def _start(self, stream: StreamSettings, span: Span) -> None:
        self.mending.add((stream.name, span))
        task = asyncio.create_task(self._mend(stream, span), name=f"mend:{stream.name}")
        self._tasks.add(task)
        task.add_done_callback(self._mend_done)

    def _mend_done(self, task: asyncio.Task[None]) -> None:
        """Forget a finished mend; one that failed outside its own handling (the state
        store refused to record the attempt) is logged here, not left to asyncio."""
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("mend_crashed", task=task.get_name(), error=f"{type(exc).__name__}: {exc}")

    async def _mend(self, stream: StreamSettings, span: Span) -> None:
        assert self._slots is not None
        key = mend_key(span)
        try:
            async with self._slots:
                if self.ctx.stop.is_set():
                    return  # stopping: the next start's first check finds the range again
                log.info(
                    "mend_started",
                    stream=stream.name,
                    start=span.start.isoformat(),
                    end=span.end.isoformat(),
                )
                try:
                    # Under the stream's lease, like a live pass: never beside one (here or
                    # in another instance), which would rebuild the same partition file.
                    outcome = await leased_pass(
                        self.ctx,
                        stream,
                        date_from=span.start,
                        date_to=span.end,
                        max_pages=None,
                    )
                    if outcome.held_elsewhere:
                        log.info("mend_deferred", stream=stream.name, item=key)
                        return
                    error = _mend_error(stream, outcome)
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc}"
            if error is None:
                await self.ctx.store.clear_attempts(stream.name, key)
                if _found_nothing_upstream(stream, outcome):
                    # ONC's own answer for the range: nothing (an instrument outage). Kept
                    # like an availability answer, so the range shows as an upstream gap and
                    # is asked again only when that answer expires.
                    self._memory.remember(stream.name, [span], self.ctx.clock())
                log.info(
                    "mend_finished",
                    stream=stream.name,
                    start=span.start.isoformat(),
                    end=span.end.isoformat(),
                    files=outcome.files,
                    records=outcome.records,
                )
            else:
                await self._failed(stream, key, error)
            if self.metrics is not None:
                self.metrics.mend_finished(stream.name, span.seconds, ok=error is None)
        finally:
            self.mending.discard((stream.name, span))

    async def _failed(self, stream: StreamSettings, key: str, error: str) -> None:
        attempts = await self.ctx.store.note_attempt(stream.name, key, "mend_failed")
        log.warning("mend_failed", stream=stream.name, item=key, attempts=attempts, error=error)
        if attempts >= POISON_ATTEMPTS:
            await self.ctx.store.quarantine(stream.name, key, "mend_failed", error)
            log.warning("mend_quarantined", stream=stream.name, item=key)


def _mend_error(stream: StreamSettings, outcome: PassOutcome) -> str | None:
    """Why a mend failed, or None. A time series' re-harvest that ran is ONC's answer for the
    range, records or none (`_found_nothing_upstream`); other kinds must publish a file."""
    if not outcome.ok:
        return "; ".join(outcome.errors) or "the pass failed"
    if isinstance(stream, TimeSeriesStream):
        return None
    return None if outcome.files > 0 else "nothing published"


def _found_nothing_upstream(stream: StreamSettings, outcome: PassOutcome) -> bool:
    """A time series' re-harvest that added no record: ONC has nothing there. (It republishes
    the unchanged files, so `files` says nothing; only new records mend a gap.)"""
    return (
        isinstance(stream, TimeSeriesStream)
        and outcome.ok
        and outcome.caught_up  # the whole range was asked (not stopped early)
        and outcome.quarantined == 0  # and answered (not given up on)
        and outcome.records == 0
    )
