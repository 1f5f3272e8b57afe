"""Politeness towards ONC: a limiter that caps concurrent requests and the request rate.

The client only depends on the `RequestLimiter` Protocol, so a later limiter shared by several
processes (through PostgreSQL) can replace `LocalLimiter` without touching the HTTP layer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Protocol


class RequestLimiter(Protocol):
    """Grants the right to send one request: `async with limiter.slot(): ...`."""

    def slot(self, *, urgent: bool = False) -> AbstractAsyncContextManager[None]:
        """Wait for a free concurrency slot and a rate token; release the slot on exit.

        An `urgent` request (a short question other requests wait for the answer of) may be
        granted a freed slot before requests that asked earlier; a limiter may ignore it.
        """
        ...


class LocalLimiter:
    """Caps concurrent requests (slots) and the request rate (GCRA token bucket) in-process.

    The rate part is the generic cell rate algorithm: each grant reserves the next emission time
    `tat`; with `burst` b, up to b requests may start back to back, after which they are spaced
    1/rate apart. Hence at most `rate + burst` requests start within any one-second window.
    One instance is shared by every caller of one `OncClient`.

    A freed slot goes to the longest-waiting urgent caller, else to the longest-waiting other
    one: describing a dataset (four small requests its pages wait for) does not queue behind
    the data pages already asked for. The slot is handed over directly, so a caller arriving
    meanwhile cannot take it and the cap holds.
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
        self._free = max_concurrency
        # Callers waiting for a slot, urgent ones first, each in arrival order.
        self._waiting: tuple[deque[asyncio.Future[None]], ...] = (deque(), deque())
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

    def slot(self, *, urgent: bool = False) -> AbstractAsyncContextManager[None]:
        """Wait for a concurrency slot (before others when `urgent`), then for a rate token;
        hold the slot until exit."""
        return self._slot(urgent)

    @asynccontextmanager
    async def _slot(self, urgent: bool) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            await self._wait_for_token()
            self._in_flight += 1
            try:
                yield
            finally:
                self._in_flight -= 1
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if self._free > 0 and not any(self._waiting):
            self._free -= 1
            return
        queue = self._waiting[0 if urgent else 1]
        granted = asyncio.get_running_loop().create_future()
        queue.append(granted)
        try:
            await granted
        except asyncio.CancelledError:
            if granted.done() and not granted.cancelled():
                self._release()  # handed a slot, then cancelled before using it: pass it on
            else:
                with contextlib.suppress(ValueError):
                    queue.remove(granted)
            raise

    def _release(self) -> None:
        for queue in self._waiting:
            while queue:
                waiter = queue.popleft()
                if not waiter.done():  # a cancelled waiter's future is done
                    waiter.set_result(None)
                    return
        self._free += 1

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
