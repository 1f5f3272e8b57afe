"""Time windows: which aligned slices of time a time-series stream should harvest next.

Pure functions of their arguments (no clock, no I/O). Windows are half-open [start, end) and
aligned to multiples of their size since the Unix epoch in UTC, so the same instant always
falls in the same window, whatever the cursor, and an output file name derived from
(stream, window) is stable across restarts: a re-run after a crash rewrites the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.times import EPOCH, as_utc


def _require_size(size: timedelta) -> None:
    # Whole seconds only: labels have second resolution, so a finer size could give two
    # windows the same file name.
    if size <= timedelta(0) or size % timedelta(seconds=1):
        raise ValueError(f"window size must be a positive whole number of seconds, got {size}")


def align_down(instant: datetime, size: timedelta) -> datetime:
    """The start of the size-aligned window containing `instant`."""
    _require_size(size)
    instant = as_utc(instant, "instant")
    # Floor division of timedeltas floors toward minus infinity, so pre-1970 works too.
    return EPOCH + ((instant - EPOCH) // size) * size


def format_instant(instant: datetime) -> str:
    """Compact UTC label for file names, e.g. `20261124T000000Z` (seconds resolution)."""
    instant = as_utc(instant, "instant")
    # strftime's %Y does not zero-pad years below 1000 on every platform; do it ourselves.
    return f"{instant.year:04d}{instant:%m%dT%H%M%SZ}"


@dataclass(frozen=True, slots=True, order=True)
class Window:
    """A half-open time range [start, end) in UTC whose start is a multiple of its size
    since the Unix epoch (ValueError otherwise)."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", as_utc(self.start, "start"))
        object.__setattr__(self, "end", as_utc(self.end, "end"))
        if self.end <= self.start:
            raise ValueError(f"window end {self.end} is not after its start {self.start}")
        _require_size(self.end - self.start)
        # Only aligned windows give restart-stable file names; refuse anything else.
        if (self.start - EPOCH) % (self.end - self.start):
            raise ValueError(f"window {self.start}..{self.end} is not aligned to its size")

    @classmethod
    def containing(cls, instant: datetime, size: timedelta) -> Window:
        """The aligned window of `size` that contains `instant`."""
        start = align_down(instant, size)
        return cls(start, start + size)

    @property
    def size(self) -> timedelta:
        """end - start."""
        return self.end - self.start

    def label(self) -> str:
        """`20261124T000000Z_20261125T000000Z`: start and end, for output file names.

        Both ends, not just the start: if a stream's window size is changed in the config,
        the new windows get new names instead of silently overwriting old files that start
        at the same instant but cover a different span.
        """
        return f"{format_instant(self.start)}_{format_instant(self.end)}"

    def contains(self, instant: datetime) -> bool:
        """True when start <= instant < end."""
        return self.start <= as_utc(instant, "instant") < self.end


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
    _require_size(size)
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
