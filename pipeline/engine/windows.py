"""Window plans: which aligned slices of time a time-series stream should harvest next.

Pure functions of their arguments (no clock, no I/O). Windows are half-open [start, end) and
aligned to multiples of their size since the Unix epoch in UTC, so the same instant always
falls in the same window, whatever the cursor, and an output file name derived from
(stream, window) is stable across restarts: a re-run after a crash rewrites the same file.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from pipeline.records import Window, align_down, require_size
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
