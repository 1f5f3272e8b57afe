"""One stream's bookkeeping over the state store, written once for every stream kind.

A stream kind knows how to fetch and publish its units (windows, archive files, product
periods); the ledger knows what every kind does around a unit: where a pass starts (the cursor,
or a backfill range that neither reads nor moves it), counting failed attempts and quarantining
an item past the limit, manifest entries, the fenced commit, the new-data event, and the counts
of the pass. It is the stream kinds' only way to the state store, as procrastinate's JobManager
is its workers' way to the connector.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from pipeline.engine.streams.base import PassOutcome
from pipeline.outputs.manifest import note_committed, refresh_manifest
from pipeline.records import NewDataEvent
from pipeline.settings import StreamSettings
from pipeline.state.base import Commit, ManifestEntry

if TYPE_CHECKING:
    from pipeline.engine.context import HarvestContext

log = structlog.get_logger(__name__)

T = TypeVar("T")

# Attempts at one item (window, file, product period) that fails in a way retrying cannot fix,
# before it is quarantined and the stream moves past it.
POISON_ATTEMPTS = 3


@dataclass(frozen=True)
class Span:
    """Where one pass starts and stops.

    `cursor` is None on a backfill (and before a stream's first pass); `backfill` passes
    neither read nor move the cursor.
    """

    now: datetime
    start: datetime
    horizon: datetime
    cursor: datetime | None
    backfill: bool


class StreamLedger:
    """The state of one stream during one pass, and the counts the pass reports."""

    def __init__(self, ctx: HarvestContext, stream: StreamSettings) -> None:
        self._ctx = ctx
        self.stream = stream.name
        self.dataset = stream.resolved_dataset_id
        self.output_root = ctx.output_root
        self.outcome = PassOutcome(stream=stream.name)
        self.backfill = False

    async def span(
        self, stream: StreamSettings, date_from: datetime | None, date_to: datetime | None
    ) -> Span:
        """The pass's range: a backfill's `date_from` up to `date_to` (never past the safety
        lag), or from the cursor; a stream without one starts at `start` or `initial_backfill`
        before now."""
        now = self._ctx.clock()
        horizon = now - stream.safety_lag
        if date_from is not None:
            self.backfill = True
            horizon = min(horizon, date_to) if date_to is not None else horizon
            return Span(now=now, start=date_from, horizon=horizon, cursor=None, backfill=True)
        record = await self._ctx.store.get_stream(self.stream)
        return Span(
            now=now,
            start=stream.start or (now - stream.initial_backfill),
            horizon=horizon,
            cursor=record.cursor_time if record else None,
            backfill=False,
        )

    def cursor_to(self, when: datetime) -> datetime | None:
        """Where a finished unit moves the cursor: `when`, or nowhere on a backfill."""
        return None if self.backfill else when

    @property
    def stopping(self) -> bool:
        """True once a stop was asked for: what is not started is left for the next pass."""
        return self._ctx.stop.is_set()

    def each(self, units: Sequence[T], weight: Callable[[T], int] | None = None) -> Iterator[T]:
        """The pass's units in order, telling the progress observer before each; ends early,
        not caught up, once a stop is asked for. With `weight`, a unit counts for that many
        in the progress (a group of windows, for each window)."""
        weigh = weight or (lambda _: 1)
        total = sum(map(weigh, units))
        done = 0
        for unit in units:
            self.report(done, total)
            if self.stopping:
                self.outcome.caught_up = False
                return
            yield unit
            done += weigh(unit)

    def report(self, done: int, total: int) -> None:
        """Tell the progress observer, if any, how far the pass got."""
        self._ctx.report(self.stream, done, total)

    def entry(
        self,
        path: Path,
        *,
        size: int,
        sha256: str,
        time_start: datetime | None,
        time_end: datetime | None,
        records: int | None,
        source: str,
    ) -> ManifestEntry:
        """The manifest entry of a file published under the output root."""
        return ManifestEntry(
            path=str(path.relative_to(self.output_root)),
            stream=self.stream,
            dataset_id=self.dataset,
            size=size,
            sha256=sha256,
            time_start=time_start,
            time_end=time_end,
            records=records,
            source=source,
            published_at=self._ctx.clock(),
        )

    async def commit(
        self,
        entries: Sequence[ManifestEntry],
        *,
        cursor_time: datetime | None = None,
        clear_inflight: Sequence[str] = (),
    ) -> None:
        """The exactly-once commit point (fenced by the pass's lease when it holds one)."""
        commit = Commit(
            self.stream,
            entries,
            cursor_time=cursor_time,
            clear_inflight=clear_inflight,
            succeeded_at=self._ctx.clock(),
        )
        try:
            await self._ctx.commit(commit)
        finally:
            # After the commit, so a manifest refresh that read the store before it landed
            # keeps no tail; also after a failure, as the commit may have landed all the same.
            note_committed(self.output_root, self.dataset, [e.path for e in entries])
        if cursor_time is not None:
            self.outcome.success_recorded = True

    async def announce(
        self,
        *,
        time_start: datetime,
        time_end: datetime,
        files: Sequence[Path],
        records: int = 0,
        replaced: bool = False,
    ) -> None:
        """Tell the subscribers (registry notifier, ERDDAP flags) that new data is durable."""
        await self._ctx.events.publish(
            NewDataEvent(
                stream=self.stream,
                dataset_id=self.dataset,
                time_start=time_start,
                time_end=time_end,
                files=tuple(files),
                records=records,
                replaced=replaced,
            )
        )

    async def done(self, *keys: str, files: int, size: int, records: int = 0) -> None:
        """Units succeeded: forget their failed attempts (in one transaction) and count them;
        `files`, `size` and `records` are what they published together."""
        await self._ctx.store.clear_attempts(self.stream, *keys)
        self.outcome.units += len(keys)
        self.outcome.records += records
        self.outcome.files += files
        self.outcome.bytes += size

    def tally(self, *, records: int, files: int, size: int) -> None:
        """Count what a unit spanning several counted ones published (a group of windows,
        each `done` on its own)."""
        self.outcome.records += records
        self.outcome.files += files
        self.outcome.bytes += size

    async def is_quarantined(self, key: str) -> bool:
        """True when `key` was set aside earlier."""
        return await self._ctx.store.is_quarantined(self.stream, key)

    async def quarantine(
        self,
        key: str,
        reason: str,
        detail: str,
        *,
        move_past: bool = False,
        cursor_time: datetime | None = None,
    ) -> None:
        """Set `key` aside for an operator; with `move_past`, commit the cursor past it."""
        await self._ctx.store.quarantine(self.stream, key, reason, detail)
        if move_past:
            await self.commit([], cursor_time=cursor_time)
        self.outcome.quarantined += 1

    async def failed(
        self,
        key: str,
        exc: Exception,
        *,
        move_past: bool = False,
        cursor_time: datetime | None = None,
    ) -> int:
        """Count a failed attempt at `key` and return the count; at POISON_ATTEMPTS the item
        is quarantined (and, with `move_past`, the cursor committed past it)."""
        reason = type(exc).__name__
        attempts = await self._ctx.store.note_attempt(self.stream, key, reason)
        if attempts >= POISON_ATTEMPTS:
            await self.quarantine(
                key, reason, str(exc), move_past=move_past, cursor_time=cursor_time
            )
        return attempts

    async def published(self, path: str) -> ManifestEntry | None:
        """The manifest entry of `path` (relative to the output root), or None."""
        return await self._ctx.store.get_manifest(path)

    async def inflight(self, key: str) -> dict[str, Any] | None:
        """What a restart needs to resume `key` (a product period's ids and files), or None."""
        return (await self._ctx.store.get_inflight(self.stream)).get(key)

    async def keep_inflight(self, key: str, state: dict[str, Any]) -> None:
        """Persist the resume state of `key` at once."""
        await self._ctx.store.put_inflight(self.stream, key, state)

    async def drop_inflight(self, key: str) -> None:
        """Forget the resume state of `key` (it is ordered afresh next time)."""
        await self._ctx.store.delete_inflight(self.stream, key)

    async def refresh_manifest(self) -> None:
        """When the pass published files: bring `<root>/<dataset>/manifest.tsv` (size,
        sha256, source, time range of every file) up to the state store, for ERDDAP's
        EDDTableFromFileNames and for people: the entries after its last line read and
        appended while the file is as this process left it, else every entry read and the
        file rewritten (`pipeline/outputs/manifest.py`)."""
        if not self.outcome.files:
            return
        store = self._ctx.store
        await refresh_manifest(
            self.output_root,
            self.dataset,
            lambda after: store.list_dataset_manifest(self.dataset, after),
        )
