"""One coverage check: each stream's held spans, ONC's upstream gaps, classified at `now`."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog

from pipeline.coverage.held import Held, held_of, prune_sensors
from pipeline.coverage.model import (
    Coverage,
    Facts,
    GapClass,
    Span,
    classify,
    merge,
    subtract,
)
from pipeline.coverage.sources import UpstreamMemory, asks_upstream, upstream_gaps
from pipeline.exceptions import OncError
from pipeline.onc.api import OncApi
from pipeline.settings import StreamSettings
from pipeline.state.base import ManifestEntry, QuarantineRecord, StateStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class StreamCoverage:
    """One stream's coverage, with what the status page shows beside it."""

    stream: str
    kind: str
    held: Held
    coverage: Coverage
    upstream_asked: bool
    # Scalardata: each sensor whose coverage has a gap inside the stream's held spans.
    sensors: dict[str, Coverage] = field(default_factory=dict)

    @property
    def lag_seconds(self) -> float | None:
        """How far the cursor is behind the check's instant."""
        if self.held.cursor is None:
            return None
        return max(0.0, (self.coverage.checked_at - self.held.cursor).total_seconds())

    def as_json(self) -> dict[str, Any]:
        """The `/coverage` and `coverage --json` shape of one stream."""
        held, cov = self.held, self.coverage
        return {
            "stream": self.stream,
            "kind": self.kind,
            "from": cov.window.start.isoformat(),
            "to": cov.window.end.isoformat(),
            "cursor": _iso(held.cursor),
            "lag_seconds": self.lag_seconds,
            "last_success": _iso(held.last_success),
            "last_error": held.last_error,
            "last_error_at": _iso(held.last_error_at),
            "ratio": round(cov.ratio, 6),
            "seconds_by_class": cov.seconds_by_class,
            "files": held.files,
            "files_absent": held.files_absent,
            "upstream_asked": self.upstream_asked,
            "gaps": [g.as_json() for g in cov.gaps],
            "sensors": [
                {
                    "sensor": code,
                    "ratio": round(sensor.ratio, 6),
                    "seconds_by_class": sensor.seconds_by_class,
                    "gaps": [g.as_json() for g in sensor.gaps],
                }
                for code, sensor in self.sensors.items()
            ],
        }

    def missing(self) -> list[Span]:
        """What to mend: the stream's missing spans and its sensors', merged."""
        return merge(
            g.span
            for cov in (self.coverage, *self.sensors.values())
            for g in cov.of_class(GapClass.MISSING)
        )


def window_of(stream: StreamSettings, held: Held, now: datetime, span: Span | None) -> Span:
    """The range checked: the one asked for, else from the stream's start (or its oldest
    held file, or its cursor) to `now`."""
    if span is not None:
        return span
    starts = [s for s in (stream.start, *(h.start for h in held.held[:1]), held.cursor) if s]
    return Span(min(starts, default=now), now)


def facts_of(stream: StreamSettings, held: Held, window: Span, upstream: list[Span]) -> Facts:
    """What `classify` needs (a pure step, shared by the check and the benchmark)."""
    return Facts(
        window=window,
        held=held.held,
        cursor=held.cursor,
        quarantined=held.quarantined,
        upstream=upstream,
    )


def sensor_gaps(held: Held, facts: Facts, now: datetime) -> dict[str, Coverage]:
    """Each sensor seen in the stream's files, against the stream's held spans: where the
    stream holds a file and the file lacks the sensor is that sensor's gap. The sensors
    expected are the union of those seen in the stream's files (the check has no discovery
    at hand), so a sensor absent from every file is not reported. Only sensors with a gap."""
    out: dict[str, Coverage] = {}
    for code, spans in held.sensors.items():
        sensor = classify(replace(facts, held=spans, expected=held.held), now)
        if sensor.gaps:
            out[code] = sensor
    return out


async def check_streams(
    streams: Sequence[StreamSettings],
    store: StateStore,
    root: Path,
    now: datetime,
    *,
    client: OncApi | None = None,
    span: Span | None = None,
    memory: UpstreamMemory | None = None,
) -> list[StreamCoverage]:
    """Check every stream in `streams`. State only without `client`; with it, the
    unheld spans of archive-file streams are asked about (see `sources.py`), except those
    `memory` still trusts (the daemon keeps one between checks)."""
    memory = UpstreamMemory() if memory is None else memory
    records = {r.name: r for r in await store.list_streams()}
    manifest: dict[str, list[ManifestEntry]] = {}
    for entry in await store.list_manifest():
        manifest.setdefault(entry.stream, []).append(entry)
    quarantine: dict[str, list[QuarantineRecord]] = {}
    for q in await store.list_quarantine():
        quarantine.setdefault(q.stream, []).append(q)

    def hold_all() -> list[Held]:
        helds = [
            held_of(
                s, records.get(s.name), manifest.get(s.name, []), quarantine.get(s.name, []), root
            )
            for s in streams
        ]
        if span is None:  # every file of these streams was asked about: forget the rest
            prune_sensors()
        return helds

    # One stat per file: off the event loop, so the ops server stays responsive.
    helds = await asyncio.to_thread(hold_all)
    out: list[StreamCoverage] = []
    for stream, held in zip(streams, helds, strict=True):
        window = window_of(stream, held, now, span)
        asked = client is not None and asks_upstream(stream)
        upstream = memory.recall(stream.name, now)
        if client is not None and asked:
            first = classify(facts_of(stream, held, window, upstream), now)
            holes = subtract(
                [g.span for g in first.gaps if g.gap_class is GapClass.MISSING],
                memory.asked_recently(stream.name, now),
            )
            if holes:
                try:
                    answer = await upstream_gaps(client, stream, holes)
                except OncError as exc:
                    # One stream's failed question must not cost every stream its check:
                    # this one is classified from the state alone (its holes stay missing).
                    log.warning(
                        "coverage_upstream_failed",
                        stream=stream.name,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    asked = False
                else:
                    memory.remember(stream.name, answer.empty, now)
                    memory.note_asked(stream.name, answer.asked, now)
                    upstream = merge([*upstream, *answer.empty])
        facts = facts_of(stream, held, window, upstream)
        coverage = classify(facts, now)
        sensors = sensor_gaps(held, facts, now)
        out.append(StreamCoverage(stream.name, stream.kind, held, coverage, asked, sensors))
    return out


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()
