"""TriggerDispatcher alone: what each registry answer does to the batch, with a fake clock."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from structlog.testing import capture_logs

from pipeline.debounce import DebounceRule
from pipeline.exceptions import RegistryAuthError, RegistryError
from pipeline.registry.batches import HarvestBatcher
from pipeline.registry.claims import TriggerClaimer
from pipeline.registry.dispatch import OutcomeRecorder, RetryPolicy, TriggerDispatcher
from pipeline.registry.journal import META_NAMESPACE, NotifierJournal
from pipeline.registry.models import HarvestDocument
from pipeline.registry.outcomes import HarvestOutcome, OutcomeWatcher
from pipeline.registry.trigger import HarvestTrigger
from pipeline.state.memory import InMemoryStateStore
from tests.clocks import FakeClock

HARVEST = "h1"
OLD_DATE = "2020-01-01T00:00:00.000Z"
RETRY = RetryPolicy(busy_recheck=30.0, retry_base=10.0, retry_cap=1000.0, auth_retry=900.0)


class ScriptedRegistry:
    """The registry reads and triggers, each failing or acting as a test sets it up."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {"_id": HARVEST, "last_harvest_dt": OLD_DATE}
        self.read_error: RegistryError | None = None
        self.trigger_error: RegistryError | None = None
        self.during_trigger: Callable[[], object] = lambda: None
        self.triggers = 0

    async def harvest(self, harvest_id: str) -> HarvestDocument:
        if self.read_error is not None:
            raise self.read_error
        return HarvestDocument.model_validate(self.doc)

    async def trigger(self, harvest_id: str, *, before: HarvestDocument | None = None) -> None:
        self.during_trigger()
        if self.trigger_error is not None:
            raise self.trigger_error
        self.triggers += 1


class Recording:
    """RegistryMetrics that remembers its calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, object]] = []

    def trigger_sent(self, harvest_id: str, *, dry_run: bool) -> None:
        self.calls.append(("sent", harvest_id, dry_run))

    def trigger_failed(self, harvest_id: str, *, reason: str) -> None:
        self.calls.append(("failed", harvest_id, reason))

    def harvest_finished(self, outcome: HarvestOutcome) -> None:
        self.calls.append(("finished", outcome.harvest_id, outcome.record_count))


class SentElsewhere:
    """Shared claims in which another instance already sent a trigger after every event."""

    async def update_meta(
        self,
        namespace: str,
        key: str,
        fn: Callable[[dict[str, Any] | None], dict[str, Any] | None],
    ) -> dict[str, Any] | None:
        return fn({"at": "9999-01-01T00:00:00+00:00", "state": "sent", "claim": "theirs"})


class Parts:
    """A dispatcher over a real batcher, journal (in-memory store) and trigger."""

    def __init__(
        self, store: InMemoryStateStore, *, dry_run: bool = False, claims: Any = None
    ) -> None:
        self.registry = ScriptedRegistry()
        self.clock = FakeClock(1000.0)
        self.metrics = Recording()
        self.batches = HarvestBatcher({"ctd": HARVEST}, DebounceRule(quiet=60.0))
        self.journal = NotifierJournal(self.batches, store)
        self.watcher = OutcomeWatcher(
            self.registry, OutcomeRecorder(self.journal, self.metrics), clock=self.clock
        )
        trigger = HarvestTrigger(self.registry, self.watcher, TriggerClaimer(claims))
        self.dispatcher = TriggerDispatcher(
            self.batches,
            trigger,
            self.journal,
            self.metrics,
            retry=RETRY,
            dry_run=dry_run,
            clock=self.clock,
            rng=random.Random(7),
        )

    def not_before(self) -> float:
        batch = self.batches.get(HARVEST)
        assert batch is not None
        return batch.not_before


@pytest.fixture
async def store() -> AsyncIterator[InMemoryStateStore]:
    async with InMemoryStateStore() as opened:
        yield opened


async def test_a_sent_trigger_takes_the_batch_and_returns_the_document_read_before(
    store: InMemoryStateStore,
) -> None:
    parts = Parts(store)
    parts.batches.add("ctd", 1000.0)
    before = await parts.dispatcher.dispatch(HARVEST)
    assert before is not None
    assert before.last_harvest_dt == OLD_DATE
    assert parts.registry.triggers == 1
    assert HARVEST not in parts.batches
    assert parts.metrics.calls == [("sent", HARVEST, False)]
    meta = await store.get_meta(META_NAMESPACE, HARVEST)
    assert meta is not None
    assert (meta["pending"], meta["last_error"], meta["dry_run"]) == (False, None, False)
    assert meta["last_trigger"]


async def test_nothing_pending_sends_nothing(store: InMemoryStateStore) -> None:
    parts = Parts(store)
    assert await parts.dispatcher.dispatch(HARVEST) is None
    assert parts.registry.triggers == 0
    assert parts.metrics.calls == []


async def test_dry_run_takes_the_batch_without_reading_or_triggering(
    store: InMemoryStateStore,
) -> None:
    parts = Parts(store, dry_run=True)
    parts.registry.read_error = RegistryError("must not be read")
    parts.batches.add("ctd", 1000.0)
    assert await parts.dispatcher.dispatch(HARVEST) is None
    assert HARVEST not in parts.batches
    assert parts.metrics.calls == [("sent", HARVEST, True)]
    meta = await store.get_meta(META_NAMESPACE, HARVEST)
    assert meta is not None
    assert (meta["pending"], meta["dry_run"]) == (False, True)


async def test_a_busy_registry_holds_the_batch_for_busy_recheck(store: InMemoryStateStore) -> None:
    parts = Parts(store)
    parts.registry.doc = {"_id": HARVEST, "last_harvest_dt": "harvesting"}
    parts.batches.add("ctd", 1000.0)
    with capture_logs() as logs:
        assert await parts.dispatcher.dispatch(HARVEST) is None
    assert parts.registry.triggers == 0
    assert parts.not_before() == 1030.0
    assert [(e["event"], e["phase"]) for e in logs] == [("registry_trigger_deferred", "harvesting")]


async def test_a_batch_another_instance_announced_is_dropped(store: InMemoryStateStore) -> None:
    parts = Parts(store, claims=SentElsewhere())
    parts.batches.add("ctd", 1000.0)
    with capture_logs() as logs:
        assert await parts.dispatcher.dispatch(HARVEST) is None
    assert parts.registry.triggers == 0
    assert HARVEST not in parts.batches
    assert [e["event"] for e in logs] == ["registry_trigger_covered"]
    meta = await store.get_meta(META_NAMESPACE, HARVEST)
    assert meta is not None
    assert meta["pending"] is False


async def test_registry_errors_back_off_exponentially_and_success_resets_the_count(
    store: InMemoryStateStore,
) -> None:
    parts = Parts(store)
    parts.registry.read_error = RegistryError("registry unavailable", status=503)
    parts.batches.add("ctd", 1000.0)
    waits = []
    for _ in range(3):
        await parts.dispatcher.dispatch(HARVEST)
        waits.append(parts.not_before() - parts.clock())
    # Equal jitter: between half and all of 10 s, 20 s, 40 s.
    assert 5.0 <= waits[0] <= 10.0
    assert 10.0 <= waits[1] <= 20.0
    assert 20.0 <= waits[2] <= 40.0
    assert parts.metrics.calls == [("failed", HARVEST, "unavailable")] * 3
    meta = await store.get_meta(META_NAMESPACE, HARVEST)
    assert meta is not None
    assert meta["last_error"] == "registry unavailable"
    parts.registry.read_error = None
    assert await parts.dispatcher.dispatch(HARVEST) is not None
    parts.registry.read_error = RegistryError("registry unavailable", status=503)
    parts.batches.add("ctd", 1100.0)
    with capture_logs() as logs:
        await parts.dispatcher.dispatch(HARVEST)
    assert [e["failures"] for e in logs] == [1]


async def test_a_failed_send_puts_the_batch_back_with_events_that_came_meanwhile(
    store: InMemoryStateStore,
) -> None:
    parts = Parts(store)
    parts.batches.add("ctd", 1000.0)
    parts.registry.during_trigger = lambda: parts.batches.add("ctd", 1001.0)
    parts.registry.trigger_error = RegistryError("reset by peer")
    assert await parts.dispatcher.dispatch(HARVEST) is None
    batch = parts.batches.get(HARVEST)
    assert batch is not None
    assert (batch.first_event, batch.last_event, batch.events) == (1000.0, 1001.0, 2)
    assert batch.not_before > parts.clock()


async def test_refused_credentials_hold_the_batch_for_auth_retry(
    store: InMemoryStateStore,
) -> None:
    parts = Parts(store)
    parts.registry.read_error = RegistryAuthError("wrong email or password", status=401)
    parts.batches.add("ctd", 1000.0)
    with capture_logs() as logs:
        assert await parts.dispatcher.dispatch(HARVEST) is None
    assert parts.not_before() == 1900.0
    assert parts.metrics.calls == [("failed", HARVEST, "auth")]
    assert [(e["event"], e["log_level"], e["status"]) for e in logs] == [
        ("registry_auth_failed", "error", 401)
    ]


async def test_the_outcome_recorder_counts_then_journals(store: InMemoryStateStore) -> None:
    parts = Parts(store)
    outcome = HarvestOutcome(HARVEST, None, None, 12, 12, 0)
    await OutcomeRecorder(parts.journal, parts.metrics)(outcome)
    assert parts.metrics.calls == [("finished", HARVEST, 12)]
    meta = await store.get_meta(META_NAMESPACE, HARVEST)
    assert meta is not None
    assert meta["last_outcome"]["record_count"] == 12
