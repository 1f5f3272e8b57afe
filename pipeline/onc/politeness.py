"""Politeness towards ONC: a limiter that caps concurrent requests and the request rate.

The client only depends on the `RequestLimiter` Protocol, so a later limiter shared by several
processes (through PostgreSQL) can replace `LocalLimiter` without touching the HTTP layer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol


class RequestLimiter(Protocol):
    """Grants the right to send one request: `async with limiter.slot(): ...`."""

    def slot(self) -> AbstractAsyncContextManager[None]:
        """Wait for a free concurrency slot and a rate token; release the slot on exit."""
        ...


class LocalLimiter:
    """Caps concurrent requests (a semaphore) and the request rate (GCRA token bucket) in-process.

    The rate part is the generic cell rate algorithm: each grant reserves the next emission time
    `tat`; with `burst` b, up to b requests may start back to back, after which they are spaced
    1/rate apart. Hence at most `rate + burst` requests start within any one-second window.
    One instance is shared by every caller of one `OncClient`.
    """

    def __init__(
        self,
        max_concurrency: int,
        max_rate_per_s: float,
        *,
        burst: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if max_concurrency < 1 or max_rate_per_s <= 0 or burst < 1:
            raise ValueError("max_concurrency >= 1, max_rate_per_s > 0 and burst >= 1 required")
        self.max_concurrency = max_concurrency
        self.max_rate_per_s = max_rate_per_s
        self.burst = burst
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._interval = 1.0 / max_rate_per_s
        self._tolerance = (burst - 1) * self._interval
        self._tat = 0.0
        self._clock = clock
        self._sleep = sleep
        self._in_flight = 0

    @property
    def in_flight(self) -> int:
        """Number of slots currently held."""
        return self._in_flight

    def __repr__(self) -> str:
        return (
            f"LocalLimiter(max_concurrency={self.max_concurrency}, "
            f"max_rate_per_s={self.max_rate_per_s}, burst={self.burst})"
        )

    def slot(self) -> AbstractAsyncContextManager[None]:
        """Wait for a concurrency slot, then for a rate token; hold the slot until exit."""
        return self._slot()

    @asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        async with self._semaphore:
            await self._wait_for_token()
            self._in_flight += 1
            try:
                yield
            finally:
                self._in_flight -= 1

    async def _wait_for_token(self) -> None:
        # The reservation is made synchronously (no await between read and write of `_tat`),
        # so concurrent tasks on one event loop can never claim the same emission time. A task
        # cancelled while sleeping simply wastes its reservation: conservative, never too fast.
        now = self._clock()
        tat = max(self._tat, now)
        start = tat - self._tolerance
        self._tat = tat + self._interval
        if start > now:
            await self._sleep(start - now)
