"""OutcomeWatcher alone: a finished document is our outcome only once it moved past the old one."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from pipeline.exceptions import RegistryError
from pipeline.registry.models import HarvestDocument, HarvestStatus
from pipeline.registry.outcomes import HarvestOutcome, OutcomePolicy, OutcomeWatcher
from tests.clocks import FakeClock

HARVEST = "h1"
OLD = {"_id": HARVEST, "last_harvest_dt": "2020-01-01T00:00:00.000Z"}
NEW = {
    "_id": HARVEST,
    "last_harvest_dt": "2026-01-01T00:00:01.000Z",
    "last_harvest_status": "ok",
    "last_record_count": 7,
}


def doc(fields: dict[str, Any]) -> HarvestDocument:
    return HarvestDocument.model_validate(fields)


class Reader:
    """Serves the documents a test queues, then keeps serving the last one."""

    def __init__(self, *docs: dict[str, Any] | RegistryError) -> None:
        self.docs = list(docs)
        self.reads = 0

    async def harvest(self, harvest_id: str) -> HarvestDocument:
        self.reads += 1
        item = self.docs.pop(0) if len(self.docs) > 1 else self.docs[0]
        if isinstance(item, RegistryError):
            raise item
        return doc(item)


def watcher_with(
    reader: Reader, policy: OutcomePolicy, clock: FakeClock[float] | None = None
) -> tuple[OutcomeWatcher, list[HarvestOutcome]]:
    reported: list[HarvestOutcome] = []

    async def report(outcome: HarvestOutcome) -> None:
        reported.append(outcome)

    watcher = OutcomeWatcher(reader, report, policy, clock=clock or FakeClock(0.0))
    return watcher, reported


async def test_the_old_document_is_not_our_outcome_a_moved_one_is_once() -> None:
    watcher, reported = watcher_with(Reader(OLD), OutcomePolicy())
    await watcher.observe(doc(NEW))  # nothing watched yet: ignored
    watcher.expect(HARVEST, doc(OLD))
    assert watcher.watching(HARVEST)
    await watcher.observe(doc(OLD))  # the registry has not started our job yet
    assert reported == []
    await watcher.observe(doc(NEW))
    await watcher.observe(doc(NEW))
    assert [(o.status, o.record_count) for o in reported] == [(HarvestStatus.OK, 7)]
    assert not watcher.watching(HARVEST)


async def test_a_run_seen_in_progress_makes_even_the_same_date_our_outcome() -> None:
    watcher, reported = watcher_with(Reader(OLD), OutcomePolicy())
    watcher.expect(HARVEST, doc(OLD))
    await watcher.observe(doc({"_id": HARVEST, "last_harvest_dt": "harvesting"}))
    await watcher.observe(doc(OLD))
    assert len(reported) == 1


async def test_poll_reads_through_errors_until_the_outcome() -> None:
    reader = Reader(OLD, RegistryError("busy", status=503), NEW)
    watcher, reported = watcher_with(reader, OutcomePolicy(poll_interval=0.0))
    watcher.expect(HARVEST, doc(OLD))
    with capture_logs() as logs:
        await watcher.poll(HARVEST)
    assert reader.reads == 3
    assert len(reported) == 1
    assert [e["event"] for e in logs] == ["registry_poll_failed", "registry_harvest_finished"]


async def test_poll_gives_up_after_the_policy_timeout() -> None:
    clock = FakeClock(100.0)
    watcher, reported = watcher_with(Reader(OLD), OutcomePolicy(timeout=10.0), clock)
    watcher.expect(HARVEST, doc(OLD))
    clock.advance(10.0)
    with capture_logs() as logs:
        await watcher.poll(HARVEST)
    assert reported == []
    assert not watcher.watching(HARVEST)
    assert [(e["event"], e["waited_s"]) for e in logs] == [
        ("registry_harvest_outcome_unknown", 10.0)
    ]
