"""Liveness: a heartbeat task that measures event-loop lag, the basis of /healthz and the watchdog.

A coroutine that blocks the loop (a CPU-bound parse, a synchronous file call) delays every
other task; the heartbeat notices it as lateness. It sleeps `interval` seconds and records how
much later than asked it woke up. The loop is healthy while the last measured lag is under
`threshold` and the heartbeat itself is not overdue. A fully wedged loop answers no HTTP
request and sends no watchdog ping, which is the signal in that case; this catches the loop
that still turns but too slowly, and a heartbeat task that died.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL_S = 1.0
DEFAULT_THRESHOLD_S = 5.0


@dataclass(frozen=True, slots=True)
class HealthReport:
    """The loop's health at one instant; `lag_s` is the last measured lateness."""

    healthy: bool
    lag_s: float
    max_lag_s: float
    heartbeat_age_s: float | None
    beats: int
    detail: str

    def as_json(self) -> dict[str, Any]:
        """The /healthz body."""
        return {
            "status": "ok" if self.healthy else "unhealthy",
            "detail": self.detail,
            "loop_lag_s": round(self.lag_s, 6),
            "loop_lag_max_s": round(self.max_lag_s, 6),
            "heartbeat_age_s": None
            if self.heartbeat_age_s is None
            else round(self.heartbeat_age_s, 3),
            "beats": self.beats,
        }


class LoopMonitor:
    """Measures event-loop lag with a heartbeat; `run(stop)` is the long-lived task."""

    def __init__(
        self,
        *,
        interval: float = DEFAULT_INTERVAL_S,
        threshold: float = DEFAULT_THRESHOLD_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval <= 0 or threshold <= 0:
            raise ValueError("interval and threshold must be positive")
        self.interval = interval
        self.threshold = threshold
        self._clock = clock
        self._lag = 0.0
        self._max_lag = 0.0
        self._last_beat: float | None = None
        self._beats = 0

    @property
    def lag(self) -> float:
        """The last measured lateness of the heartbeat, in seconds."""
        return self._lag

    def beat(self, lag: float, now: float) -> None:
        """Record one heartbeat that woke `lag` seconds late at monotonic time `now`."""
        lag = max(0.0, lag)
        if lag > self.threshold and self._lag <= self.threshold:
            log.warning("event_loop_stalled", lag_s=round(lag, 3), threshold_s=self.threshold)
        self._lag = lag
        self._max_lag = max(self._max_lag, lag)
        self._last_beat = now
        self._beats += 1

    def report(self, now: float | None = None) -> HealthReport:
        """Health at `now` (monotonic seconds; default: the clock)."""
        now = self._clock() if now is None else now
        age = None if self._last_beat is None else max(0.0, now - self._last_beat)
        if age is None:
            healthy, detail = False, "heartbeat not started"
        elif age > self.interval + self.threshold:
            healthy, detail = False, f"heartbeat overdue by {age - self.interval:.1f}s"
        elif self._lag > self.threshold:
            healthy, detail = False, f"event loop lag {self._lag:.2f}s > {self.threshold:g}s"
        else:
            healthy, detail = True, "event loop responsive"
        return HealthReport(
            healthy=healthy,
            lag_s=self._lag,
            max_lag_s=self._max_lag,
            heartbeat_age_s=age,
            beats=self._beats,
            detail=detail,
        )

    def healthy(self) -> bool:
        """True while the loop is responsive (the watchdog's condition)."""
        return self.report().healthy

    async def run(self, stop: asyncio.Event) -> None:
        """Beat every `interval` seconds until `stop` is set."""
        self._last_beat = self._clock()
        while not stop.is_set():
            expected = self._clock() + self.interval
            # Sleeping on `stop` rather than asyncio.sleep lets shutdown end the task at once.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await stop.wait()
            if stop.is_set():
                return
            now = self._clock()
            self.beat(now - expected, now)
