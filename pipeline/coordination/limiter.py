"""PostgresLimiter: one concurrency and rate budget toward ONC shared by every instance.

Why rows rather than advisory locks: a session-level advisory lock lives as long as the
connection that took it, so holding N slots would pin N pooled connections for the whole
length of each request (seconds, for a large download) and a stuck connection would hold its
slot forever. Leased rows cost one connection only for the instant of a statement, and a
killed instance's slots free themselves when their short TTL runs out.

- Rate: GCRA, the same algorithm as `LocalLimiter`, with the theoretical arrival time in one
  row per limiter name. A grant pushes it forward by 1/rate in one UPDATE and is told how
  long to wait, so across all instances at most `rate + burst` requests start per second.
- Concurrency: `max_concurrency` slot rows. A grant takes a free or expired one with
  `FOR UPDATE SKIP LOCKED`, in the same statement as the rate reservation (one round trip),
  and a background heartbeat renews the slots this instance holds every ttl/3.
- Release happens on exit whatever the exit, shielded from cancellation; a grant that
  completes after its caller was cancelled is released as soon as it arrives.

Per request that is two short statements (grant, release). Waiting for a slot polls with
jittered backoff, one poller per instance, so a crowd of local callers does not become a crowd
of queries. When the database cannot be reached `slot()` raises StateError at once (bounded
by the connect/command timeouts), or uses `fallback` if one was given.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import random
import secrets
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager

import structlog

from pipeline.exceptions import StateError
from pipeline.lifecycle import AsyncResource
from pipeline.onc.politeness import RequestLimiter
from pipeline.state.sql import postgres_queries as q
from pipeline.state.sql.postgres_connection import (
    DEFAULT_CONNECT_TIMEOUT,
    Pool,
    close_pool,
    create_pool,
    parse_postgres_url,
    translate_errors,
)

log = structlog.get_logger(__name__)

DEFAULT_SLOT_TTL = 15.0
POLL_MIN = 0.002
POLL_MAX = 0.05


class PostgresLimiter(AsyncResource):
    """A `RequestLimiter` whose caps hold across every instance using the same database.

    Needs the state schema (open the `PostgresStateStore` first: it migrates). Instances
    share a budget when they use the same `name`; each should pass the same caps.
    """

    def __init__(
        self,
        url: str,
        *,
        max_concurrency: int,
        max_rate_per_s: float,
        burst: int = 1,
        name: str = "onc",
        schema: str | None = None,
        slot_ttl: float = DEFAULT_SLOT_TTL,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        command_timeout: float = 5.0,
        fallback: RequestLimiter | None = None,
    ) -> None:
        if max_concurrency < 1 or max_rate_per_s <= 0 or burst < 1:
            raise ValueError("max_concurrency >= 1, max_rate_per_s > 0 and burst >= 1 required")
        if slot_ttl <= 0:
            raise ValueError("slot_ttl must be positive")
        self.target = parse_postgres_url(url, schema=schema)
        self.name = name
        self.max_concurrency = max_concurrency
        self.max_rate_per_s = max_rate_per_s
        self.burst = burst
        self.slot_ttl = slot_ttl
        self._interval = 1.0 / max_rate_per_s
        self._tolerance = (burst - 1) * self._interval
        self._connect_timeout = connect_timeout
        self._command_timeout = command_timeout
        self._fallback = fallback
        self._instance = secrets.token_hex(8)
        self._grants = itertools.count(1)
        self._held: dict[int, int] = {}  # grant id -> slot
        self._pool: Pool | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        # At most max_concurrency local callers hold or seek a slot, and only one of them
        # polls the database at a time: the rest wait here, not in a query queue.
        self._local = asyncio.Semaphore(max_concurrency)
        self._poller = asyncio.Lock()
        self._degraded = False

    def __repr__(self) -> str:
        return (
            f"PostgresLimiter({self.target.display!r}, name={self.name!r}, "
            f"max_concurrency={self.max_concurrency}, max_rate_per_s={self.max_rate_per_s}, "
            f"burst={self.burst})"
        )

    @property
    def in_flight(self) -> int:
        """Slots this instance holds now."""
        return len(self._held)

    async def open(self) -> None:
        """Connect and make sure the bucket and slot rows exist."""
        if self._pool is not None:
            raise StateError("the shared request limiter is already open")
        pool = await create_pool(
            self.target,
            max_size=3,  # the poller, releases and the heartbeat; each holds it for one query
            connect_timeout=self._connect_timeout,
            command_timeout=self._command_timeout,
            application_name="onc-pipeline-limiter",
        )
        try:
            with translate_errors(self.target, "cannot set up the shared request limiter"):
                await pool.execute(q.ENSURE_BUCKET, self.name)
                await pool.execute(q.ENSURE_SLOTS, self.name, self.max_concurrency)
        except BaseException:
            await close_pool(pool, self._connect_timeout)
            raise
        self._pool = pool
        self._heartbeat = asyncio.create_task(self._renew_forever(), name="limiter-heartbeat")
        log.info("shared_limiter_opened", limiter=repr(self))

    async def close(self) -> None:
        """Stop the heartbeat and close the pool; held slots expire by their TTL."""
        heartbeat, self._heartbeat = self._heartbeat, None
        if heartbeat is not None:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        if self._background:
            await asyncio.wait(set(self._background), timeout=self._command_timeout)
        pool, self._pool = self._pool, None
        if pool is not None:
            await close_pool(pool, self._connect_timeout)

    def slot(self, *, urgent: bool = False) -> AbstractAsyncContextManager[None]:
        """Wait for a shared slot and a shared rate token; hold the slot until exit.

        `urgent` is only passed on to the fallback: shared slots go to whichever instance
        polls first (first come, first served locally), since putting an urgent caller of
        one instance before the callers of others would need a queue in the database.
        """
        return self._slot(urgent)

    @contextlib.asynccontextmanager
    async def _slot(self, urgent: bool) -> AsyncIterator[None]:
        async with self._local:
            try:
                grant_id, wait = await self._acquire()
            except StateError as exc:
                if self._fallback is None:
                    raise
                self._note_degraded(exc)
                async with self._fallback.slot(urgent=urgent):
                    yield
                return
            self._degraded = False
            try:
                if wait > 0:
                    await asyncio.sleep(wait)
                yield
            finally:
                slot = self._held.pop(grant_id)
                # Shielded: a cancelled request must still hand its slot back now, not in
                # slot_ttl seconds; a second cancellation leaves the release running.
                with contextlib.suppress(StateError):
                    await asyncio.shield(self._release(slot, grant_id))

    async def _acquire(self) -> tuple[int, float]:
        """Poll for a slot; returns (grant id, seconds to wait for the rate token)."""
        delay = POLL_MIN
        async with self._poller:
            while True:
                grant_id = next(self._grants)
                task = asyncio.ensure_future(self._try_acquire(grant_id))
                try:
                    row = await asyncio.shield(task)
                except asyncio.CancelledError:
                    task.add_done_callback(functools.partial(self._late_grant, grant_id))
                    raise
                if row is not None:
                    return grant_id, row
                await asyncio.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, POLL_MAX)

    async def _try_acquire(self, grant_id: int) -> float | None:
        pool = self._open_pool()
        with translate_errors(self.target, "shared request limiter unavailable"):
            row = await pool.fetchrow(
                q.ACQUIRE_SLOT,
                self.name,
                self.max_concurrency,
                self._instance,
                grant_id,
                self.slot_ttl,
                self._interval,
                self._tolerance,
            )
        if row is None:
            return None
        # Registered before anyone can observe the grant, so the heartbeat renews it.
        self._held[grant_id] = int(row[0])
        return float(row[1])

    def _late_grant(self, grant_id: int, done: asyncio.Future[float | None]) -> None:
        """A grant whose caller was cancelled while the query ran: give it back."""
        if done.cancelled() or done.exception() is not None or done.result() is None:
            return
        slot = self._held.pop(grant_id)
        task = asyncio.ensure_future(self._release(slot, grant_id))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _release(self, slot: int, grant_id: int) -> None:
        pool = self._pool
        if pool is None:
            return  # closed: the slot expires by its TTL
        try:
            with translate_errors(self.target, "cannot release a shared request slot"):
                await pool.execute(q.RELEASE_SLOT, self.name, slot, self._instance, grant_id)
        except StateError as exc:
            log.warning("shared_limiter_release_failed", slot=slot, error=str(exc))

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.slot_ttl / 3)
            grants = list(self._held)
            if not grants:
                continue
            try:
                with translate_errors(self.target, "cannot renew shared request slots"):
                    await self._open_pool().execute(
                        q.RENEW_SLOTS, self.name, self._instance, self.slot_ttl, grants
                    )
            except StateError as exc:
                log.warning("shared_limiter_renew_failed", slots=len(grants), error=str(exc))

    def _open_pool(self) -> Pool:
        if self._pool is None:
            raise StateError("the shared request limiter is not open")
        return self._pool

    def _note_degraded(self, exc: StateError) -> None:
        if not self._degraded:
            self._degraded = True
            log.warning("shared_limiter_degraded", fallback=repr(self._fallback), error=str(exc))
