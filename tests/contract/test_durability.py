"""Contract for backends whose state outlives the process: persistence, schema guard, and an
all-or-nothing commit_publish when the database fails half-way through it."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pipeline.exceptions import StateError
from pipeline.state.base import Commit
from tests.contract.conftest import T0, DurableBackend
from tests.contract.helpers import entry


async def test_everything_survives_close_and_reopen(durable_backend: DurableBackend) -> None:
    async with durable_backend.make() as store:
        await store.commit_publish(
            Commit(
                "s1", [entry("s1/a.jsonl"), entry("s1/b.jsonl")], cursor_time=T0, cursor_file="f"
            )
        )
        await store.record_failure("s1", T0 + timedelta(seconds=1), "oops")
        await store.put_inflight("s1", "product", {"dpRequestId": 9, "dpRunId": 10})
        await store.note_attempt("s1", "page", "bad")
        await store.note_attempt("s1", "page", "bad")
        await store.quarantine("s1", "file", "sha", "detail")
        await store.put_meta("registry", "ds", {"pending": True})
        streams = await store.list_streams()
        manifest = await store.list_manifest()
        quarantined = await store.list_quarantine()

    async with durable_backend.make() as store:
        assert await store.list_streams() == streams
        assert await store.list_manifest() == manifest
        assert await store.list_quarantine() == quarantined
        assert await store.get_inflight("s1") == {"product": {"dpRequestId": 9, "dpRunId": 10}}
        assert await store.note_attempt("s1", "page", "bad") == 3
        assert await store.get_meta("registry", "ds") == {"pending": True}


async def test_a_newer_schema_is_refused(durable_backend: DurableBackend) -> None:
    async with durable_backend.make() as store:
        version = await store.schema_version()
        await store.record_success("s1", T0)
    assert version >= 1
    durable_backend.stamp_schema_version(version + 1)
    with pytest.raises(StateError, match=f"schema version {version + 1}, newer"):
        await durable_backend.make().open()


async def test_failure_mid_commit_changes_nothing(durable_backend: DurableBackend) -> None:
    async with durable_backend.make() as store:
        kept = entry("s1/a.jsonl", size=1)
        await store.commit_publish(Commit("s1", [kept], cursor_time=T0, cursor_file="f1"))
        await store.put_inflight("s1", "w2", {"n": 2})
        await store.put_inflight("s1", "poison", {"n": 3})
        before = (
            await store.list_manifest(),
            await store.get_stream("s1"),
            await store.get_inflight("s1"),
        )

    durable_backend.fail_when_deleting_inflight("poison")
    durable_backend.clock.advance(timedelta(hours=1))

    async with durable_backend.make() as store:
        with pytest.raises(StateError, match="injected fault"):
            await store.commit_publish(
                Commit(
                    "s1",
                    [entry("s1/a.jsonl", size=999), entry("s1/b.jsonl")],
                    cursor_time=T0 + timedelta(days=1),
                    cursor_file="f2",
                    clear_inflight=["w2", "poison"],
                )
            )
        after = (
            await store.list_manifest(),
            await store.get_stream("s1"),
            await store.get_inflight("s1"),
        )
        assert after == before
        # The store is still usable: the failed transaction was rolled back, not left open.
        await store.commit_publish(Commit("s1", [entry("s1/c.jsonl")], clear_inflight=["w2"]))
        assert [e.path for e in await store.list_manifest()] == ["s1/a.jsonl", "s1/c.jsonl"]

    async with durable_backend.make() as store:
        assert await store.get_inflight("s1") == {"poison": {"n": 3}}
        assert await store.get_manifest("s1/a.jsonl") == kept
