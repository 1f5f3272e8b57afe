"""Window plans: which aligned slices of time a time-series stream should harvest next.

Pure functions of their arguments (no clock, no I/O). Windows are half-open [start, end) and
aligned to multiples of their size since the Unix epoch in UTC, so the same instant always
falls in the same window, whatever the cursor, and an output file name derived from
(stream, window) is stable across restarts: a re-run after a crash rewrites the same file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.records import Window, align_down, format_instant, require_size
from pipeline.times import as_utc


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """One window to harvest: fetch [fetch_from, fetch_to) of it now.

    `fetch_from` is later than `window.start` only for the first window, when the cursor
    (minus lookback) falls inside it; `fetch_to` is earlier than `window.end` only for the
    last one, cut at the horizon. `complete` says the whole window is behind the horizon:
    its output is final; an incomplete one will be rewritten on a later pass.
    """

    window: Window
    fetch_from: datetime
    fetch_to: datetime
    complete: bool

    @property
    def resumes_mid_window(self) -> bool:
        """True when the window's earlier part was harvested before (cursor or lookback
        fell inside it): a writer that replaces the window's file whole must merge it with
        what is there or re-read from `window.start`."""
        return self.fetch_from > self.window.start


def plan_windows(
    *,
    cursor: datetime | None,
    start: datetime,
    horizon: datetime,
    size: timedelta,
    lookback: timedelta = timedelta(0),
    limit: int | None = None,
) -> list[WindowPlan]:
    """The aligned windows intersecting [fetch_from, horizon), oldest first.

    fetch_from = max(start, (cursor or start) - lookback): the lookback re-reads recent
    data for late arrivals but never reaches before the configured start. `horizon` is
    now minus the safety lag. At most `limit` windows are returned (the oldest ones);
    an empty list means nothing is due.
    """
    require_size(size)
    start = as_utc(start, "start")
    horizon = as_utc(horizon, "horizon")
    if lookback < timedelta(0):
        raise ValueError(f"lookback must not be negative, got {lookback}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    base = start if cursor is None else as_utc(cursor, "cursor")
    fetch_from = max(start, base - lookback)
    if fetch_from >= horizon:
        return []  # caught up (or the cursor is past a horizon that moved back)

    plans: list[WindowPlan] = []
    window_start = align_down(fetch_from, size)
    while window_start < horizon and (limit is None or len(plans) < limit):
        window = Window(window_start, window_start + size)
        plans.append(
            WindowPlan(
                window=window,
                fetch_from=max(fetch_from, window.start),
                fetch_to=min(window.end, horizon),
                complete=window.end <= horizon,
            )
        )
        window_start = window.end
    return plans


# The most data one group covers: a group is built as one unit, so what a format
# holds for it (a partition's merged table, a day of JSON Lines) is bounded by a day of data.
GATHER_LIMIT = timedelta(days=1)
# The most windows in one group: a per-window format (JSON Lines) keeps a temporary file open
# per window until the group publishes, and file handles are a per-process limit (often 1,024).
GATHER_MAX_WINDOWS = 96


def gather_span(partition: str) -> timedelta:
    """How far one group of windows may reach: its output partition, at most a day.

    Settings guarantee a window divides its partition and a day, so the aligned span of this
    size that holds a window holds it whole, and lies in one partition file.
    """
    return timedelta(hours=1) if partition == "hourly" else GATHER_LIMIT


@dataclass(frozen=True, slots=True)
class WindowGroup:
    """Consecutive windows built as one unit (and fetched in one request series with the
    other groups of their pass: docs/dev/request-series.md).

    A group of several holds consecutive windows all inside `covering`: the aligned span (one
    output partition, at most a day) a partitioned format's single writer is opened on; all
    but the last are complete, and the last may be the window in progress. A group of one is
    a window as planned, complete or not.
    """

    members: tuple[WindowPlan, ...]
    covering: Window

    @property
    def fetch_from(self) -> datetime:
        """Where the group's rows start in its pass's request series."""
        return self.members[0].fetch_from

    @property
    def fetch_to(self) -> datetime:
        """Where it ends: the cursor moves here once the group is committed."""
        return self.members[-1].fetch_to

    @property
    def complete(self) -> bool:
        """True when every member is behind the horizon (only the last can be in progress)."""
        return self.members[-1].complete

    @property
    def windows(self) -> list[Window]:
        """The members' windows, oldest first."""
        return [plan.window for plan in self.members]

    def label(self) -> str:
        """The window's label for a group of one; `<first start>_<last end>` otherwise."""
        if len(self.members) == 1:
            return self.members[0].window.label()
        return f"{format_instant(self.members[0].window.start)}_" + format_instant(
            self.members[-1].window.end
        )

    def singles(self) -> list[WindowGroup]:
        """Each member as a group of its own (the fallback when a group fails)."""
        return [WindowGroup((plan,), plan.window) for plan in self.members]


def group_plans(
    plans: Sequence[WindowPlan], span: timedelta, max_windows: int = GATHER_MAX_WINDOWS
) -> list[WindowGroup]:
    """`plans` gathered into groups: consecutive windows in one aligned `span`, at most
    `max_windows` of them.

    A window joins the group of the window before it when that one is complete and both lie
    in the same aligned span (so windows as large as `span` stay alone). The window in
    progress (always the last plan; completed on a later pass, as when it stands alone)
    joins too: a backlog that reaches the horizon writes its last partition once; a
    near-real-time poll inside one window stays one window. A near-real-time poll that
    crosses a window boundary inside its partition and its day (22:59:50 to 23:00:20 with
    hour windows, in a daily partition) is thus one append (and, as every pass, one request
    series): hundreds of streams cross the hour in the same cadence, and each extra build
    would cost them a publish and a commit.
    """
    require_size(span)
    groups: list[list[WindowPlan]] = []
    for plan in plans:
        previous = groups[-1][-1] if groups else None
        if (
            previous is not None
            and len(groups[-1]) < max_windows
            and previous.complete
            and previous.fetch_to == plan.fetch_from
            and align_down(previous.window.start, span) == align_down(plan.window.start, span)
        ):
            groups[-1].append(plan)
        else:
            groups.append([plan])
    return [
        WindowGroup(tuple(members), members[0].window)
        if len(members) == 1
        else WindowGroup(tuple(members), Window.containing(members[0].window.start, span))
        for members in groups
    ]


def within_limit(groups: Sequence[WindowGroup], limit: int) -> list[WindowGroup]:
    """The leading groups that hold at most `limit` windows together, none cut short.

    A group the limit would cut is left whole for the next pass, so its partition file is
    still built once; only a first group larger than the limit is cut, to fit.
    """
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    kept: list[WindowGroup] = []
    total = 0
    for group in groups:
        if total + len(group.members) > limit:
            if not kept:
                members = group.members[:limit]
                covering = group.covering if len(members) > 1 else members[0].window
                kept.append(WindowGroup(members, covering))
            break
        kept.append(group)
        total += len(group.members)
    return kept
