"""What every stream pass needs, built once by the daemon and handed down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

from pipeline.engine.events import NewDataEvent
from pipeline.onc import OncClient
from pipeline.outputs.base import Writer
from pipeline.state.base import StateStore, utc_now

# Attempts at one item (window, file, product period) that fails in a way retrying cannot fix,
# before it is quarantined and the stream moves past it.
POISON_ATTEMPTS = 3


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


@dataclass
class HarvestContext:
    """The components a stream pass uses; owned and closed by the daemon."""

    client: OncClient
    store: StateStore
    output_root: Path
    writers: Mapping[str, Writer]
    events: EventSink
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    clock: Callable[[], datetime] = utc_now
    # Pages buffered between fetching and writing, per stream: the back-pressure bound.
    page_queue_size: int = 2
    # Called as (stream, units done, units planned) after each window, file or period.
    progress: Callable[[str, int, int], None] | None = None

    def report(self, stream: str, done: int, total: int) -> None:
        """Tell the progress observer, if any, how far a pass got."""
        if self.progress is not None:
            self.progress(stream, done, total)
