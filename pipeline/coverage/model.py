"""The coverage model: half-open time spans, and expected vs held classified into gaps.

Pure: no I/O, no clock (`now` is an argument), so every rule is unit-tested directly.
A difference between what should exist and what is held is, in this order of precedence:

- `not_yet`: at or after the cursor, the harvester has not reached it;
- `quarantined`: a window or file set aside after repeated failures (with its reason);
- `upstream_gap`: ONC has nothing there (an outage: NaN/flag 9 fill, no archive file);
- `missing`: ONC has it and we do not (deleted files, a late archive file): to be mended.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum


class GapClass(StrEnum):
    """Why a span that should be held is not."""

    NOT_YET = "not_yet"
    QUARANTINED = "quarantined"
    UPSTREAM_GAP = "upstream_gap"
    MISSING = "missing"


@dataclass(frozen=True, slots=True, order=True)
class Span:
    """[start, end) in UTC; empty when start >= end."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        """Its length in seconds (0 when empty)."""
        return max(0.0, (self.end - self.start).total_seconds())

    def clip(self, other: Span) -> Span | None:
        """The part inside `other`, or None."""
        start, end = max(self.start, other.start), min(self.end, other.end)
        return Span(start, end) if start < end else None


def merge(spans: Iterable[Span]) -> list[Span]:
    """Sorted, non-overlapping spans; touching spans are joined."""
    out: list[Span] = []
    for span in sorted(s for s in spans if s.start < s.end):
        if out and span.start <= out[-1].end:
            if span.end > out[-1].end:
                out[-1] = Span(out[-1].start, span.end)
        else:
            out.append(span)
    return out


def subtract(spans: Sequence[Span], holes: Sequence[Span]) -> list[Span]:
    """`spans` minus `holes`; both must be merged (sorted, disjoint). Linear time."""
    out: list[Span] = []
    j = 0
    for span in spans:
        start = span.start
        while j < len(holes) and holes[j].end <= start:
            j += 1
        k = j
        while k < len(holes) and holes[k].start < span.end:
            if holes[k].start > start:
                out.append(Span(start, holes[k].start))
            start = max(start, holes[k].end)
            k += 1
        if start < span.end:
            out.append(Span(start, span.end))
    return out


def intersect(spans: Sequence[Span], others: Sequence[Span]) -> list[Span]:
    """The parts of merged `spans` inside merged `others`."""
    out: list[Span] = []
    i = j = 0
    while i < len(spans) and j < len(others):
        start = max(spans[i].start, others[j].start)
        end = min(spans[i].end, others[j].end)
        if start < end:
            out.append(Span(start, end))
        if spans[i].end < others[j].end:
            i += 1
        else:
            j += 1
    return out


def total_seconds(spans: Iterable[Span]) -> float:
    """Summed length of spans (assumed disjoint)."""
    return sum(s.seconds for s in spans)


@dataclass(frozen=True, slots=True)
class Gap:
    """A span that should be held and is not, with its class and (for quarantine) reason."""

    span: Span
    gap_class: GapClass
    reason: str | None = None

    def as_json(self) -> dict[str, object]:
        """ISO instants, class, reason and length."""
        return {
            "from": self.span.start.isoformat(),
            "to": self.span.end.isoformat(),
            "class": self.gap_class.value,
            "reason": self.reason,
            "seconds": self.span.seconds,
        }


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A quarantined window or file and the span it covers."""

    span: Span
    reason: str


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the classification needs about one stream (or sensor) over `window`.

    `expected`: spans ONC says exist (deployments, file periods) - None means the whole window.
    `held`: spans we hold (files on disk). `upstream`: spans ONC has nothing for, when known.
    `cursor`: the harvester's progress; None means nothing harvested yet.
    """

    window: Span
    held: Sequence[Span]
    cursor: datetime | None
    quarantined: Sequence[Quarantined] = ()
    upstream: Sequence[Span] = ()
    expected: Sequence[Span] | None = None


@dataclass(frozen=True, slots=True)
class Coverage:
    """The result: the window, the held spans, and the gaps in time order."""

    window: Span
    held: list[Span]
    gaps: list[Gap]
    checked_at: datetime
    seconds_by_class: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """Held over held plus owed (quarantined and missing, which lie behind the cursor);
        upstream gaps and not-yet spans are not counted against it. 1.0 when nothing is
        due yet."""
        held = total_seconds(self.held)
        owed = sum(
            self.seconds_by_class.get(c.value, 0.0)
            for c in (GapClass.QUARANTINED, GapClass.MISSING)
        )
        return 1.0 if held + owed <= 0 else held / (held + owed)

    def of_class(self, gap_class: GapClass) -> list[Gap]:
        """The gaps of one class."""
        return [g for g in self.gaps if g.gap_class is gap_class]


def classify(facts: Facts, now: datetime) -> Coverage:
    """Compare expected with held over `facts.window` (clipped to `now`) and class each gap."""
    window = facts.window.clip(Span(facts.window.start, now)) or Span(now, now)
    expected = merge(
        [window]
        if facts.expected is None
        else [c for c in (s.clip(window) for s in facts.expected) if c is not None]
    )
    upstream = merge(facts.upstream)
    held = intersect(expected, merge(facts.held))
    holes = subtract(expected, held)
    gaps: list[Gap] = []
    # Precedence: not_yet, quarantined (per record, keeping its reason), upstream, missing.
    behind = [Span(facts.cursor, window.end)] if facts.cursor is not None else [window]
    behind = merge(c for c in (s.clip(window) for s in behind) if c is not None)
    gaps += [Gap(s, GapClass.NOT_YET) for s in intersect(holes, behind)]
    holes = subtract(holes, behind)
    for record in sorted(facts.quarantined, key=lambda q: q.span):
        inside = intersect(holes, [record.span])
        gaps += [Gap(s, GapClass.QUARANTINED, record.reason) for s in inside]
        holes = subtract(holes, merge(inside))
    gaps += [Gap(s, GapClass.UPSTREAM_GAP) for s in intersect(holes, upstream)]
    holes = subtract(holes, upstream)
    gaps += [Gap(s, GapClass.MISSING) for s in holes]
    gaps.sort(key=lambda g: g.span)
    by_class = {c.value: total_seconds(g.span for g in gaps if g.gap_class is c) for c in GapClass}
    return Coverage(window, held, gaps, now, by_class)


def chunks(span: Span, size: timedelta) -> list[Span]:
    """`span` cut into pieces of at most `size`, for bounded re-harvests."""
    out: list[Span] = []
    start = span.start
    while start < span.end:
        end = min(span.end, start + size)
        out.append(Span(start, end))
        start = end
    return out
