"""Retry policy: which failures are retried, how long to wait, and when to give up."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline.backoff import FULL_JITTER, backoff_delay
from pipeline.exceptions import OncUnavailable
from pipeline.onc.options import ClientOptions

#: Statuses that announce a maintenance window or throttling: waited out, not counted as attempts.
MAINTENANCE_STATUSES = frozenset({429, 503})


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
        # Full jitter: many workers retry against one API (see pipeline.backoff).
        opts = self.options
        return backoff_delay(
            attempt,
            base=opts.backoff_base,
            cap=opts.backoff_max,
            jitter=FULL_JITTER,
            draw=self.rng.random(),
        )
