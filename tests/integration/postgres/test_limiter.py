"""The shared request limiter: three independent instances together stay within one
concurrency cap and one rate cap (proven from the timestamps of what they let through),
slots come back on cancellation, and a killed instance's slots free themselves."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator

import pytest

from pipeline.coordination import PostgresLimiter
from tests.integration.onc.test_politeness import max_in_window, max_overlap
from tests.integration.postgres.conftest import StoreFactory

pytestmark = pytest.mark.postgres

MAX_CONCURRENCY = 4
MAX_RATE = 40.0
BURST = 2


@contextlib.asynccontextmanager
async def limiters(
    url: str, schema: str, count: int, **options: float
) -> AsyncIterator[list[PostgresLimiter]]:
    """`count` open limiters, each with its own pool, as separate processes would have."""
    settings: dict[str, float] = {
        "max_concurrency": MAX_CONCURRENCY,
        "max_rate_per_s": MAX_RATE,
        "burst": BURST,
    }
    settings.update(options)
    async with contextlib.AsyncExitStack() as stack:
        opened = [
            await stack.enter_async_context(
                PostgresLimiter(
                    url,
                    schema=schema,
                    max_concurrency=int(settings["max_concurrency"]),
                    max_rate_per_s=settings["max_rate_per_s"],
                    burst=int(settings["burst"]),
                    slot_ttl=settings.get("slot_ttl", 15.0),
                )
            )
            for _ in range(count)
        ]
        yield opened


async def free_slots(store_factory: StoreFactory) -> int:
    """Slots nobody holds right now, read straight from the table."""
    store = await store_factory()
    pool = store._pool
    assert pool is not None
    value = await pool.fetchval(
        "SELECT count(*) FROM limiter_slots WHERE name = 'onc' AND expires_at < clock_timestamp()"
    )
    return int(value)


async def test_three_instances_share_one_concurrency_cap(
    pg_url: str, schema: str, open_store: StoreFactory
) -> None:
    await open_store()  # migrates the schema
    intervals: list[tuple[float, float]] = []
    holding = 0
    peak = 0

    async def request(limiter: PostgresLimiter) -> None:
        nonlocal holding, peak
        async with limiter.slot():
            start = time.monotonic()
            holding += 1
            peak = max(peak, holding)
            await asyncio.sleep(random.uniform(0.1, 0.2))  # ONC answering, slower than the rate
            holding -= 1  # before the slot is handed back
            intervals.append((start, time.monotonic()))

    async with limiters(pg_url, schema, 3) as three:
        # 3 instances x 10 eager callers each: left alone they would run 30 deep.
        await asyncio.gather(*(request(lim) for lim in three for _ in range(10)))

    assert len(intervals) == 30
    assert peak <= MAX_CONCURRENCY
    assert max_overlap(intervals) <= MAX_CONCURRENCY
    assert peak >= MAX_CONCURRENCY - 1  # they really competed: the cap, not luck, held it
    assert await free_slots(open_store) == MAX_CONCURRENCY


async def test_three_instances_share_one_rate_cap(
    pg_url: str, schema: str, open_store: StoreFactory
) -> None:
    await open_store()
    starts: list[float] = []
    per_instance = [0, 0, 0]

    async def request(i: int, limiter: PostgresLimiter) -> None:
        async with limiter.slot():
            starts.append(time.monotonic())
            per_instance[i] += 1

    async with limiters(pg_url, schema, 3) as three:
        # 3 x 20 instant requests: each instance alone may start 40/s, together still 40/s.
        await asyncio.gather(*(request(i, lim) for i, lim in enumerate(three) for _ in range(20)))

    assert per_instance == [20, 20, 20]
    # GCRA lets at most rate + burst requests start in any one-second window, and spreads
    # n requests over at least (n - burst) / rate seconds. Starts are read on the caller's
    # side after its wait, so a start can only be later than its grant; 10% slack covers a
    # grant observed late enough to land in the next window.
    assert max_in_window(starts) <= (MAX_RATE + BURST) * 1.1
    assert max(starts) - min(starts) >= (len(starts) - BURST) / MAX_RATE * 0.9


async def test_cancelled_requests_give_their_slots_back_at_once(
    pg_url: str, schema: str, open_store: StoreFactory
) -> None:
    await open_store()
    entered = asyncio.Event()

    async def hang(limiter: PostgresLimiter) -> None:
        async with limiter.slot():
            entered.set()
            await asyncio.Event().wait()

    # A TTL of minutes: only an explicit release can explain slots coming back.
    async with limiters(pg_url, schema, 2, max_rate_per_s=1000.0, slot_ttl=300.0) as (a, b):
        tasks = [asyncio.create_task(hang(lim)) for lim in (a, b, a, b, a, b)]
        await entered.wait()
        await asyncio.sleep(0.2)  # some hold slots, some wait for one or poll for one
        assert a.in_flight + b.in_flight == MAX_CONCURRENCY
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert a.in_flight == b.in_flight == 0
        # A grant that arrived after its caller was cancelled is released in the background.
        await asyncio.gather(*a._background, *b._background)
        assert await free_slots(open_store) == MAX_CONCURRENCY
        async with b.slot():  # and the limiter still works
            assert b.in_flight == 1


async def test_a_killed_instance_slots_expire_and_others_take_them(
    pg_url: str, schema: str, open_store: StoreFactory
) -> None:
    await open_store()
    async with limiters(pg_url, schema, 2, max_rate_per_s=1000.0, slot_ttl=0.5) as (dead, alive):
        held = contextlib.AsyncExitStack()
        for _ in range(MAX_CONCURRENCY):
            await held.enter_async_context(dead.slot())
        # "kill -9": no heartbeat, no release, connections gone.
        assert dead._heartbeat is not None
        dead._heartbeat.cancel()
        assert dead._pool is not None
        dead._pool.terminate()

        async def take() -> None:
            async with alive.slot():
                await asyncio.sleep(0.05)

        async with asyncio.timeout(10):
            await asyncio.gather(*(take() for _ in range(MAX_CONCURRENCY)))
        assert alive.in_flight == 0
        with contextlib.suppress(Exception):
            await held.aclose()


async def test_heartbeat_keeps_long_requests_slots(
    pg_url: str, schema: str, open_store: StoreFactory
) -> None:
    await open_store()
    async with limiters(pg_url, schema, 1, max_rate_per_s=1000.0, slot_ttl=0.6) as (lim,):
        async with contextlib.AsyncExitStack() as stack:
            for _ in range(MAX_CONCURRENCY):
                await stack.enter_async_context(lim.slot())
            await asyncio.sleep(1.5)  # 2.5 TTLs: only the heartbeat keeps them held
            assert await free_slots(open_store) == 0
        assert await free_slots(open_store) == MAX_CONCURRENCY
