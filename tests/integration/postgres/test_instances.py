"""Several instances (independent stores, each with its own pool) on one PostgreSQL:
mutual exclusion of leases, takeover with fencing, the forward-only cursor, shared metadata,
and concurrent first-time migrations."""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from pipeline.coordination import hold_lease
from pipeline.state import Commit, LeaseLostError, PostgresStateStore
from pipeline.state.sql.postgres_schema import MIGRATIONS
from tests.contract.helpers import entry
from tests.integration.postgres.conftest import StoreFactory

pytestmark = pytest.mark.postgres

T0 = datetime(2026, 11, 24, tzinfo=UTC)
LONG = timedelta(minutes=5)


async def test_many_claimers_on_several_connections_get_one_lease_per_round(
    open_store: StoreFactory,
) -> None:
    stores = [await open_store() for _ in range(4)]
    tokens = []
    for _ in range(5):
        # 4 instances x 10 concurrent claims each, spread over 12 pooled connections.
        claims = [
            store.claim("stream:ctd", f"instance{i}-task{j}", LONG)
            for i, store in enumerate(stores)
            for j in range(10)
        ]
        granted = [lease for lease in await asyncio.gather(*claims) if lease is not None]
        assert len(granted) == 1
        tokens.append(granted[0].token)
        await stores[0].release(granted[0])
    assert tokens == sorted(set(tokens))  # strictly increasing across grants


async def test_workers_never_hold_a_resource_at_the_same_time(open_store: StoreFactory) -> None:
    stores = [await open_store() for _ in range(3)]
    resources = [f"ctd/window:{i}" for i in range(3)]
    held: dict[str, list[tuple[float, float, str]]] = {r: [] for r in resources}

    async def worker(store: PostgresStateStore, name: str) -> None:
        for _ in range(15):
            resource = random.choice(resources)
            lease = await store.claim(resource, name, LONG)
            if lease is None:
                await asyncio.sleep(0.001)
                continue
            start = time.monotonic()
            await asyncio.sleep(random.uniform(0, 0.004))
            end = time.monotonic()  # noted before the release is even sent
            held[resource].append((start, end, name))
            await store.release(lease)

    await asyncio.gather(
        *(worker(store, f"w{i}-{j}") for i, store in enumerate(stores) for j in range(4))
    )
    assert sum(len(spans) for spans in held.values()) >= 10  # the workers really competed
    for spans in held.values():
        spans.sort()
        for (_, end, _), (start, _, _) in itertools.pairwise(spans):
            assert end < start


async def test_takeover_after_a_crash_and_the_stale_commit_is_fenced(
    open_store: StoreFactory,
) -> None:
    crashed, survivor = await open_store(), await open_store()
    stale = await crashed.claim("stream:ctd", "crashed", timedelta(milliseconds=300))
    assert stale is not None
    await crashed.put_inflight("ctd", "w1", {"part": 1})
    await asyncio.sleep(0.6)  # the crashed instance stops heartbeating; its lease expires

    fresh = await survivor.claim("stream:ctd", "survivor", LONG)
    assert fresh is not None
    assert fresh.token == stale.token + 1
    await survivor.commit_publish_fenced(
        Commit("ctd", [entry("ctd/a.jsonl", stream="ctd")], cursor_time=T0 + timedelta(1)), fresh
    )
    # The "crashed" instance wakes up and tries to commit what it had: refused, nothing lands.
    assert await crashed.renew(stale) is None
    with pytest.raises(LeaseLostError):
        await crashed.commit_publish_fenced(
            Commit(
                "ctd",
                [entry("ctd/stale.jsonl", stream="ctd")],
                cursor_time=T0 + timedelta(days=30),
                clear_inflight=["w1"],
            ),
            stale,
        )
    record = await survivor.get_stream("ctd")
    assert record is not None
    assert record.cursor_time == T0 + timedelta(1)
    assert [e.path for e in await survivor.list_manifest()] == ["ctd/a.jsonl"]
    assert await survivor.get_inflight("ctd") == {"w1": {"part": 1}}


async def test_a_claim_waits_for_a_fenced_commit_in_progress(open_store: StoreFactory) -> None:
    holder, claimer = await open_store(), await open_store()
    lease = await holder.claim("stream:ctd", "holder", timedelta(milliseconds=400))
    assert lease is not None
    # Hold the lease row as a fenced commit does, past the lease's expiry.
    pool = holder._pool
    assert pool is not None
    async with pool.acquire() as conn, conn.transaction():
        await conn.fetchrow("SELECT 1 FROM leases WHERE resource = $1 FOR SHARE", "stream:ctd")
        await asyncio.sleep(0.5)  # the lease expires while the commit still runs
        claim = asyncio.create_task(claimer.claim("stream:ctd", "claimer", LONG))
        await asyncio.sleep(0.3)
        assert not claim.done()  # blocked behind the commit, though the lease has expired
    taken = await claim
    assert taken is not None
    assert taken.token == lease.token + 1


async def test_cursor_only_moves_forward_under_concurrent_instances(
    open_store: StoreFactory,
) -> None:
    stores = [await open_store() for _ in range(3)]
    hours = list(range(60))
    random.shuffle(hours)

    async def commit(i: int, hour: int) -> None:
        await stores[i % 3].commit_publish(
            Commit("ctd", [], cursor_time=T0 + timedelta(hours=hour), cursor_file=f"f{hour}")
        )

    await asyncio.gather(*(commit(i, hour) for i, hour in enumerate(hours)))
    record = await stores[0].get_stream("ctd")
    assert record is not None
    assert (record.cursor_time, record.cursor_file) == (T0 + timedelta(hours=59), "f59")


async def test_update_meta_is_atomic_across_instances(open_store: StoreFactory) -> None:
    stores = [await open_store() for _ in range(3)]

    def bump(current: dict[str, Any] | None) -> dict[str, Any]:
        return {"n": (current or {"n": 0})["n"] + 1}

    await asyncio.gather(
        *(store.update_meta("erddap", "ds1", bump) for store in stores for _ in range(25))
    )
    assert await stores[1].get_meta("erddap", "ds1") == {"n": 75}


async def test_hold_lease_lets_one_instance_run_a_stream_pass(open_store: StoreFactory) -> None:
    stores = [await open_store() for _ in range(3)]
    ran: list[int] = []

    async def instance(i: int) -> None:
        async with hold_lease(stores[i], "stream:ctd", f"i{i}", LONG) as held:
            if held is None:
                return
            ran.append(i)
            await asyncio.sleep(0.05)

    await asyncio.gather(*(instance(i) for i in range(3)))
    assert len(ran) == 1
    assert await stores[0].list_leases() == []  # released on exit


async def test_instances_starting_together_migrate_once(open_store: StoreFactory) -> None:
    stores = await asyncio.gather(*(open_store() for _ in range(4)))
    assert {await store.schema_version() for store in stores} == {len(MIGRATIONS)}
    pool = stores[0]._pool
    assert pool is not None
    rows = await pool.fetch("SELECT version FROM schema_version ORDER BY version")
    assert [row[0] for row in rows] == list(range(1, len(MIGRATIONS) + 1))


async def test_read_only_store_reads_and_refuses_writes(open_store: StoreFactory) -> None:
    writer = await open_store()
    await writer.commit_publish(Commit("ctd", [], cursor_time=T0))
    reader = await open_store(read_only=True)
    record = await reader.get_stream("ctd")
    assert record is not None
    assert record.cursor_time == T0
    with pytest.raises(Exception, match="read-only"):
        await reader.record_success("ctd", T0)
