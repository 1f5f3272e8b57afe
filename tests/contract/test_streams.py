"""Contract: per-stream health records, forgetting a stream, open/closed state, datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline.exceptions import StateError
from pipeline.state import Commit, StateStore
from tests.contract.conftest import T0, Backend
from tests.contract.helpers import entry


async def test_unknown_stream_is_none(store: StateStore) -> None:
    assert await store.get_stream("nope") is None
    assert await store.list_streams() == []


async def test_success_and_failure_are_recorded(backend: Backend, store: StateStore) -> None:
    backend.clock.now = T0 + timedelta(minutes=5)
    await store.record_failure("s1", T0, "boom:\n  ünïcode 'quoted' token=<redacted>")
    record = await store.get_stream("s1")
    assert record is not None
    assert record.last_error == "boom:\n  ünïcode 'quoted' token=<redacted>"
    assert record.last_error_at == T0
    assert record.last_success is None
    assert record.cursor_time is None
    assert record.updated_at == T0 + timedelta(minutes=5)

    backend.clock.now = T0 + timedelta(minutes=9)
    await store.record_success("s1", T0 + timedelta(minutes=8))
    record = await store.get_stream("s1")
    assert record is not None
    assert record.last_success == T0 + timedelta(minutes=8)
    # The last error is history, kept for `status`; its time tells it is no longer current.
    assert record.last_error == "boom:\n  ünïcode 'quoted' token=<redacted>"
    assert record.updated_at == T0 + timedelta(minutes=9)


async def test_list_streams_is_ordered_by_name(store: StateStore) -> None:
    for name in ("zeta", "alpha", "Mid", "beta"):
        await store.record_success(name, T0)
    assert [s.name for s in await store.list_streams()] == ["Mid", "alpha", "beta", "zeta"]


async def test_datetimes_round_trip_exactly_and_come_back_in_utc(store: StateStore) -> None:
    pacific = timezone(timedelta(hours=-8))
    at = datetime(2026, 11, 24, 3, 4, 5, 123456, tzinfo=pacific)
    await store.commit_publish(
        Commit("s1", [], cursor_time=datetime(1999, 1, 1, 0, 0, 0, 1, tzinfo=UTC))
    )
    await store.record_success("s1", at)  # after: a commit with a cursor time sets it too
    record = await store.get_stream("s1")
    assert record is not None
    assert record.last_success == at
    assert record.last_success.tzinfo == UTC
    assert record.last_success.hour == 11
    assert record.cursor_time == datetime(1999, 1, 1, 0, 0, 0, 1, tzinfo=UTC)


async def test_naive_datetimes_are_refused(store: StateStore) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.record_success("s1", datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.commit_publish(Commit("s1", [], cursor_time=datetime(2026, 1, 1)))
    assert await store.get_stream("s1") is None


async def test_calls_on_a_closed_store_raise_state_error(backend: Backend) -> None:
    store = backend.make()
    with pytest.raises(StateError):
        await store.get_stream("s1")
    async with store:
        await store.record_success("s1", T0)
    with pytest.raises(StateError):
        await store.record_success("s1", T0)
    with pytest.raises(StateError):
        await store.list_manifest()
    await store.close()  # a second close is harmless


async def test_close_and_reopen_keeps_data(backend: Backend) -> None:
    async with backend.make() as store:
        await store.commit_publish(Commit("s1", [entry("s1/a.jsonl")], cursor_time=T0))
        await store.put_meta("registry", "ds_s1", {"last": "x"})
    async with backend.make() as store:
        record = await store.get_stream("s1")
        assert record is not None
        assert record.cursor_time == T0
        assert await store.get_meta("registry", "ds_s1") == {"last": "x"}


async def test_schema_version_is_reported(store: StateStore) -> None:
    version = await store.schema_version()
    assert isinstance(version, int)
    assert version >= 0
