"""NotifierJournal alone: what a restart finds, and a store that fails never stops notifying."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from pipeline.debounce import DebounceRule
from pipeline.exceptions import StateError
from pipeline.registry.batches import HarvestBatcher
from pipeline.registry.journal import META_NAMESPACE, NotifierJournal
from pipeline.state.memory import InMemoryStateStore

RULE = DebounceRule(quiet=60.0, max_wait=900.0)
MAPPING = {"ctd": "h1", "hydrophone": "h2"}


class FailingStore:
    """A store that fails every call, as a locked database would."""

    async def get_meta(self, namespace: str, key: str) -> dict[str, Any] | None:
        raise StateError("database is locked")

    async def put_meta(self, namespace: str, key: str, value: dict[str, Any]) -> None:
        raise StateError("database is locked")


async def test_saved_records_carry_the_pending_datasets_and_accumulate_changes() -> None:
    store = InMemoryStateStore()
    async with store:
        batcher = HarvestBatcher(MAPPING, RULE)
        journal = NotifierJournal(batcher, store)
        batcher.add("ctd", 0.0)
        await journal.save("h1", pending=True, pending_since="2026-01-01T00:00:00+00:00")
        await journal.save("h1", last_error="registry down")
        meta = await store.get_meta(META_NAMESPACE, "h1")
        assert meta is not None
        assert meta["harvest_id"] == "h1"
        assert meta["pending"] is True
        assert meta["last_error"] == "registry down"
        assert meta["datasets"] == ["ctd"]
        assert meta["updated"]
        batcher.take("h1")
        await journal.save("h1", pending=False)
        meta = await store.get_meta(META_NAMESPACE, "h1")
        assert meta is not None
        assert (meta["pending"], meta["datasets"]) == (False, [])


async def test_restore_brings_back_only_batches_left_pending() -> None:
    store = InMemoryStateStore()
    async with store:
        await store.put_meta(META_NAMESPACE, "h1", {"pending": True, "datasets": ["ctd"]})
        await store.put_meta(META_NAMESPACE, "h2", {"pending": False, "datasets": []})
        batcher = HarvestBatcher(MAPPING, RULE)
        with capture_logs() as logs:
            await NotifierJournal(batcher, store).restore(100.0)
        assert list(batcher) == ["h1"]
        assert batcher.datasets("h1") == ["ctd"]
        assert [e["event"] for e in logs] == ["registry_pending_restored"]


async def test_a_failing_store_is_logged_and_nothing_is_raised() -> None:
    batcher = HarvestBatcher(MAPPING, RULE)
    journal = NotifierJournal(batcher, FailingStore())
    with capture_logs() as logs:
        await journal.restore(0.0)
        await journal.save("h1", pending=True)
    events = [e["event"] for e in logs]
    assert events == [
        "registry_meta_unreadable",
        "registry_meta_unreadable",
        "registry_meta_unsaved",
    ]
    assert list(batcher) == []


async def test_without_a_store_nothing_is_restored_or_kept() -> None:
    batcher = HarvestBatcher(MAPPING, RULE)
    journal = NotifierJournal(batcher)
    await journal.restore(0.0)
    await journal.save("h1", pending=True)
    assert list(batcher) == []
