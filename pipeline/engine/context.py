"""What every stream pass needs, built once by the daemon and handed down."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from pipeline.coordination.leases import HeldLease
from pipeline.engine.readahead import FIRST_PAGE_GUESS, ReadAhead
from pipeline.onc.api import OncApi
from pipeline.outputs.partition import PartitionKind
from pipeline.outputs.pool import WindowBuilder
from pipeline.records import NewDataEvent
from pipeline.settings import StreamSettings
from pipeline.state.base import Commit, CoordinationStore, StateStore
from pipeline.times import utc_now


class EventSink(Protocol):
    """Receives "new data" events after data is durable (registry notifier, ERDDAP flags)."""

    async def publish(self, event: NewDataEvent) -> None:
        """Handle one event; must not raise into the harvest loop."""
        ...


class EventFanout:
    """Delivers each event to every subscriber; one failing subscriber does not stop others."""

    def __init__(self, *sinks: EventSink) -> None:
        self._sinks = list(sinks)

    def subscribe(self, sink: EventSink) -> None:
        """Add a subscriber."""
        self._sinks.append(sink)

    async def publish(self, event: NewDataEvent) -> None:
        """Hand the event to every subscriber in order."""
        import structlog

        for sink in self._sinks:
            try:
                await sink.publish(event)
            except Exception:
                structlog.get_logger(__name__).exception(
                    "event_subscriber_failed", subscriber=type(sink).__name__, stream=event.stream
                )


@dataclass(frozen=True)
class HarvestContext:
    """The components a stream pass uses, built whole by the composition root (daemon.py),
    which owns and closes them; never patched afterwards (a pass under a lease gets a copy
    with its lease)."""

    client: OncApi
    store: StateStore
    output_root: Path
    # Where windows are built in this process (near-real-time polls, or every window).
    inline: WindowBuilder
    events: EventSink
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    clock: Callable[[], datetime] = utc_now
    # Pages buffered between fetching and writing, per stream: the back-pressure bound.
    page_queue_size: int = 2
    # Windows being built at once, all streams together: bounds memory during backfills.
    window_slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(4))
    # Bytes of parsed pages fetched ahead of the builds, all streams together (and requests
    # for more wait while it is full): the daemon's memory bound during backfills.
    read_ahead: ReadAhead = field(default_factory=lambda: ReadAhead(4 * FIRST_PAGE_GUESS))
    # Called as (stream, units done, units planned) after each window, file or period.
    progress: Callable[[str, int, int], None] | None = None
    # Called before a stream's first window is opened (output formats describe datasets).
    prepare: Callable[[StreamSettings], Awaitable[None]] | None = None
    # Data requests out while their dataset is being described, all streams together: one
    # page's head start, leaving describing's requests the other request slots (urgent with
    # the local limiter, but waiting for the pages in flight like any other; first come,
    # first served with the PostgreSQL one).
    early_fetches: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))
    # Leases: the coordination store and, inside a pass, the lease on the stream being run.
    coordination: CoordinationStore | None = None
    lease: HeldLease | None = None
    owner: str = "local"
    lease_ttl: timedelta = timedelta(seconds=60)
    # Where complete windows are merged and published (worker processes); None: inline.
    builder: WindowBuilder | None = None
    # The output partitioning: consecutive windows of one partition (at most a day) are
    # built once (a pass fetches all its partitions as one request series).
    partition: PartitionKind = "daily"

    def window_builder(self, *, bulk: bool = True) -> WindowBuilder:
        """Where a window is built: bulk ones (backfills, catch-up) on the worker processes
        when there are any, others (a near-real-time poll's few seconds of data, which
        another process would only add copying and latency to) here."""
        if bulk and self.builder is not None:
            return self.builder
        return self.inline

    async def commit(self, commit: Commit) -> None:
        """The exactly-once commit point; fenced by the pass's lease when it holds one, so an
        instance that lost its stream to another can never move the cursor."""
        if self.lease is not None and self.coordination is not None:
            self.lease.check()
            await self.coordination.commit_publish_fenced(commit, self.lease.lease)
            return
        await self.store.commit_publish(commit)

    def report(self, stream: str, done: int, total: int) -> None:
        """Tell the progress observer, if any, how far a pass got."""
        if self.progress is not None:
            self.progress(stream, done, total)
