"""The one fake clock of the test suite: time that moves only when a test (or a sleep) says so.

It stands in for both kinds of clock the pipeline takes: wall time (`Callable[[], datetime]`,
state stores, metrics, the ops server) when started from a datetime, and monotonic seconds
(`Callable[[], float]`, retries, limiters, progress) when started from a number. Its `sleep`
takes no real time and moves the clock instead, so a rate limiter's waits are instant.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Generic, TypeVar

T = TypeVar("T", datetime, float)


class FakeClock(Generic[T]):
    """A clock tests move by hand: `clock()` reads it, `advance()` and `sleep()` move it."""

    def __init__(self, start: T) -> None:
        self.now: T = start

    def __call__(self) -> T:
        return self.now

    def advance(self, by: float | timedelta) -> T:
        """Move the clock forward by `by` (seconds or a timedelta) and return the new time."""
        seconds = by.total_seconds() if isinstance(by, timedelta) else by
        if isinstance(self.now, datetime):
            self.now = self.now + timedelta(seconds=seconds)
        else:
            self.now = self.now + seconds
        return self.now

    async def sleep(self, seconds: float) -> None:
        """Sleep without waiting: the clock moves by `seconds` and other tasks get a turn."""
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)
