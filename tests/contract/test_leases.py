"""Contract: leases, fenced commits and compare-and-set metadata, on every backend.

Memory and SQLite get them from `LocalCoordination`, PostgreSQL natively; the semantics are
the same. Expiry uses the real clock (the server's, for PostgreSQL), so the expiring tests
use TTLs of a fraction of a second and sleep past them; the "still held" side of each test
uses TTLs of minutes, so no assertion depends on how fast the machine is.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest

from pipeline.coordination import hold_lease, stream_resource, unit_resource
from pipeline.exceptions import StateError
from pipeline.state import Commit, CoordinationStore, LeaseLostError, StateStore
from tests.contract.conftest import T0
from tests.contract.helpers import entry

LONG = timedelta(minutes=5)
SHORT = timedelta(milliseconds=200)


async def expire() -> None:
    """Sleep past SHORT."""
    await asyncio.sleep(SHORT.total_seconds() * 2)


async def test_claim_grants_once_until_released(coordination: CoordinationStore) -> None:
    lease = await coordination.claim("stream:ctd", "a", LONG)
    assert lease is not None
    assert (lease.resource, lease.owner, lease.ttl) == ("stream:ctd", "a", LONG)
    assert lease.expires_at - lease.acquired_at == LONG
    assert await coordination.claim("stream:ctd", "b", LONG) is None
    assert await coordination.claim("stream:ctd", "a", LONG) is None  # not re-entrant
    assert await coordination.claim("stream:other", "b", LONG) is not None

    await coordination.release(lease)
    again = await coordination.claim("stream:ctd", "b", LONG)
    assert again is not None
    assert again.owner == "b"
    assert again.token == lease.token + 1


async def test_concurrent_claimers_get_exactly_one_lease(coordination: CoordinationStore) -> None:
    results = await asyncio.gather(
        *(coordination.claim("stream:ctd", f"owner{i}", LONG) for i in range(25))
    )
    granted = [lease for lease in results if lease is not None]
    assert len(granted) == 1
    assert [lease.owner for lease in await coordination.list_leases()] == [granted[0].owner]


async def test_expired_lease_is_taken_over_with_a_larger_token(
    coordination: CoordinationStore,
) -> None:
    old = await coordination.claim("ctd/window:20261124T000000Z", "a", SHORT)
    assert old is not None
    await expire()
    new = await coordination.claim("ctd/window:20261124T000000Z", "b", LONG)
    assert new is not None
    assert new.token > old.token
    assert await coordination.renew(old) is None  # the old holder learns it lost the lease
    await coordination.release(old)  # a lost lease's release must not free the new holder's
    assert await coordination.claim("ctd/window:20261124T000000Z", "c", LONG) is None
    assert await coordination.renew(new) is not None


async def test_renew_extends_and_keeps_the_token(coordination: CoordinationStore) -> None:
    lease = await coordination.claim("r", "a", LONG)
    assert lease is not None
    renewed = await coordination.renew(lease)
    assert renewed is not None
    assert renewed.token == lease.token
    assert renewed.expires_at >= lease.expires_at
    assert await coordination.renew(renewed) is not None


async def test_renew_after_release_or_expiry_fails(coordination: CoordinationStore) -> None:
    released = await coordination.claim("r1", "a", LONG)
    assert released is not None
    await coordination.release(released)
    assert await coordination.renew(released) is None

    expired = await coordination.claim("r2", "a", SHORT)
    assert expired is not None
    await expire()
    assert await coordination.renew(expired) is None  # expired even though nobody took it


async def test_list_leases_filters_by_prefix_and_hides_expired(
    coordination: CoordinationStore,
) -> None:
    for resource in ("stream:b", "stream:a", "ctd/window:1"):
        assert await coordination.claim(resource, "me", LONG) is not None
    released = await coordination.claim("stream:c", "me", LONG)
    assert released is not None
    await coordination.release(released)
    assert await coordination.claim("stream:d", "me", SHORT) is not None
    await expire()

    assert [lease.resource for lease in await coordination.list_leases("stream:")] == [
        "stream:a",
        "stream:b",
    ]
    assert [lease.resource for lease in await coordination.list_leases()] == [
        "ctd/window:1",
        "stream:a",
        "stream:b",
    ]


async def test_fenced_commit_applies_while_the_lease_is_held(
    coordination: CoordinationStore, store: StateStore
) -> None:
    lease = await coordination.claim(stream_resource("s1"), "a", LONG)
    assert lease is not None
    await store.put_inflight("s1", "w", {"n": 1})
    await coordination.commit_publish_fenced(
        Commit("s1", [entry("s1/a.jsonl")], cursor_time=T0, clear_inflight=["w"]), lease
    )
    record = await store.get_stream("s1")
    assert record is not None
    assert record.cursor_time == T0
    assert [e.path for e in await store.list_manifest()] == ["s1/a.jsonl"]
    assert await store.get_inflight("s1") == {}


async def test_stale_holder_commit_is_refused_after_takeover(
    coordination: CoordinationStore, store: StateStore
) -> None:
    resource = unit_resource("s1", "window", "20261124T000000Z")
    stale = await coordination.claim(resource, "a", SHORT)
    assert stale is not None
    await store.put_inflight("s1", "w", {"n": 1})
    await expire()
    fresh = await coordination.claim(resource, "b", LONG)
    assert fresh is not None

    with pytest.raises(LeaseLostError) as caught:
        await coordination.commit_publish_fenced(
            Commit(
                "s1",
                [entry("s1/stale.jsonl")],
                cursor_time=T0 + timedelta(days=9),
                clear_inflight=["w"],
            ),
            stale,
        )
    assert isinstance(caught.value, StateError)
    assert (caught.value.resource, caught.value.token) == (resource, stale.token)
    # Nothing of the stale commit landed: no manifest entry, no cursor, in-flight kept.
    assert await store.list_manifest() == []
    assert await store.get_inflight("s1") == {"w": {"n": 1}}
    record = await store.get_stream("s1")
    assert record is None or record.cursor_time is None

    await coordination.commit_publish_fenced(
        Commit("s1", [entry("s1/fresh.jsonl")], cursor_time=T0, clear_inflight=["w"]), fresh
    )
    record = await store.get_stream("s1")
    assert record is not None
    assert record.cursor_time == T0


async def test_fenced_commit_after_release_or_plain_expiry_is_refused(
    coordination: CoordinationStore, store: StateStore
) -> None:
    released = await coordination.claim("stream:s1", "a", LONG)
    assert released is not None
    await coordination.release(released)
    with pytest.raises(LeaseLostError):
        await coordination.commit_publish_fenced(Commit("s1", [], cursor_time=T0), released)

    expired = await coordination.claim("stream:s2", "a", SHORT)
    assert expired is not None
    await expire()
    with pytest.raises(LeaseLostError):
        await coordination.commit_publish_fenced(Commit("s2", [], cursor_time=T0), expired)
    assert await store.list_streams() == []


async def test_fenced_commit_validates_like_commit_publish(
    coordination: CoordinationStore, store: StateStore
) -> None:
    lease = await coordination.claim("stream:s1", "a", LONG)
    assert lease is not None
    with pytest.raises(ValueError, match="belongs to"):
        await coordination.commit_publish_fenced(
            Commit("s1", [entry("s2/x", stream="s2")], cursor_time=T0), lease
        )
    assert await store.list_manifest() == []


async def test_update_meta_reads_modifies_and_writes(
    coordination: CoordinationStore, store: StateStore
) -> None:
    seen: list[dict[str, Any] | None] = []

    def first(current: dict[str, Any] | None) -> dict[str, Any]:
        seen.append(current)
        return {"pending": True, "count": 1}

    assert await coordination.update_meta("registry", "h1", first) == {
        "pending": True,
        "count": 1,
    }
    assert seen == [None]
    # None leaves the value as it is and returns it.
    assert await coordination.update_meta("registry", "h1", lambda _: None) == {
        "pending": True,
        "count": 1,
    }
    await store.put_meta("registry", "h1", {"pending": False})
    assert await coordination.update_meta(
        "registry", "h1", lambda cur: {**(cur or {}), "x": 2}
    ) == {
        "pending": False,
        "x": 2,
    }
    assert await store.get_meta("registry", "h1") == {"pending": False, "x": 2}
    with pytest.raises(TypeError):
        await coordination.update_meta("registry", "h1", lambda _: {"bad": object()})
    assert await store.get_meta("registry", "h1") == {"pending": False, "x": 2}


async def test_concurrent_update_meta_loses_no_increment(
    coordination: CoordinationStore, store: StateStore
) -> None:
    def bump(current: dict[str, Any] | None) -> dict[str, Any]:
        return {"n": (current or {"n": 0})["n"] + 1}

    await asyncio.gather(*(coordination.update_meta("erddap", "flag", bump) for _ in range(40)))
    assert await store.get_meta("erddap", "flag") == {"n": 40}


async def test_only_one_of_many_claims_a_batch_through_update_meta(
    coordination: CoordinationStore,
) -> None:
    # The notifier's once-per-batch rule: whoever flips `pending` off sends the trigger.
    await coordination.update_meta("registry", "h", lambda _: {"pending": True})
    winners: list[str] = []

    async def take(owner: str) -> None:
        def flip(current: dict[str, Any] | None) -> dict[str, Any] | None:
            if not current or not current.get("pending"):
                return None
            winners.append(owner)
            return {"pending": False, "sent_by": owner}

        await coordination.update_meta("registry", "h", flip)

    await asyncio.gather(*(take(f"i{i}") for i in range(10)))
    assert len(winners) == 1


async def test_hold_lease_renews_and_releases(coordination: CoordinationStore) -> None:
    ttl = timedelta(milliseconds=300)
    async with hold_lease(coordination, "stream:s1", "a", ttl) as held:
        assert held is not None
        first = held.lease
        async with hold_lease(coordination, "stream:s1", "b", ttl) as other:
            assert other is None
        await asyncio.sleep(ttl.total_seconds() * 2.5)  # outlives the first expiry
        assert not held.lost.is_set()
        held.check()
        assert held.lease.token == first.token
        assert held.lease.expires_at > first.expires_at
        assert await coordination.claim("stream:s1", "b", ttl) is None
    # Released on exit: free at once, no need to wait for the TTL.
    after = await coordination.claim("stream:s1", "b", LONG)
    assert after is not None
    assert after.token == first.token + 1


async def test_hold_lease_notices_a_lost_lease(coordination: CoordinationStore) -> None:
    ttl = timedelta(milliseconds=300)
    async with hold_lease(coordination, "stream:s1", "a", ttl) as held:
        assert held is not None
        await coordination.release(held.lease)  # as if it had expired and been taken over
        thief = await coordination.claim("stream:s1", "b", LONG)
        assert thief is not None
        async with asyncio.timeout(5):
            await held.lost.wait()
        with pytest.raises(LeaseLostError):
            held.check()
    # The lost holder's exit must not release the new holder's lease.
    assert [lease.owner for lease in await coordination.list_leases("stream:")] == ["b"]
