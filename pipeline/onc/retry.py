"""Retry policy: which failures are retried, how long to wait, and when to give up."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from pipeline.exceptions import OncUnavailable
from pipeline.onc.options import ClientOptions

#: Statuses that announce a maintenance window or throttling: waited out, not counted as attempts.
MAINTENANCE_STATUSES = frozenset({429, 503})


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if seconds == seconds else None  # NaN guard
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now or datetime.now(UTC)
    return max((when - current).total_seconds(), 0.0)


@dataclass(slots=True)
class RetryState:
    """Book-keeping of one logical request across its attempts (not shared between requests)."""

    options: ClientOptions
    rng: random.Random = field(default_factory=random.Random)
    clock: Callable[[], float] = time.monotonic
    attempts: int = 0
    maintenance_waits: int = 0
    started: float = 0.0
    maintenance_started: float | None = None
    maintenance_spent: float = 0.0

    def __post_init__(self) -> None:
        self.started = self.clock()

    def next_delay(self, exc: OncUnavailable) -> float | None:
        """Seconds to sleep before the next attempt after `exc`, or None to give up."""
        now = self.clock()
        opts = self.options
        if exc.status in MAINTENANCE_STATUSES:
            # A maintenance window or throttling: Retry-After (else backoff) is honoured and the
            # attempt is not counted; only the time spent in consecutive 503/429 is bounded.
            if self.maintenance_started is None:
                self.maintenance_started = now
            remaining = opts.maintenance_max_wait - (now - self.maintenance_started)
            if remaining <= 0:
                return None
            self.maintenance_waits += 1
            if exc.retry_after is None:
                return min(self._backoff(self.maintenance_waits), remaining)
            # A little jitter on top of Retry-After spreads the herd of waiting workers.
            base = exc.retry_after
            return min(base + self.rng.uniform(0.0, min(1.0, 0.1 * base)), remaining)
        if self.maintenance_started is not None:
            self.maintenance_spent += now - self.maintenance_started
            self.maintenance_started = None
            self.maintenance_waits = 0
        self.attempts += 1
        if self.attempts >= opts.max_attempts:
            return None
        delay = exc.retry_after if exc.retry_after is not None else self._backoff(self.attempts)
        elapsed = now - self.started - self.maintenance_spent
        if elapsed + delay > opts.retry_deadline:
            return None
        return delay

    def _backoff(self, attempt: int) -> float:
        # Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2^(n-1))].
        opts = self.options
        ceiling = min(opts.backoff_max, opts.backoff_base * (2.0 ** min(attempt - 1, 30)))
        return self.rng.uniform(0.0, ceiling)
