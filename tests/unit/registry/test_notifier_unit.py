"""RegistryNotifier with an in-memory fake registry: lagging documents, timeouts, store trouble."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from structlog.testing import capture_logs

from pipeline.debounce import DebounceRule
from pipeline.exceptions import RegistryError, StateError
from pipeline.records import NewDataEvent
from pipeline.registry import (
    META_NAMESPACE,
    NotifierSettings,
    RegistryNotifier,
    build_notifier,
    open_notifier,
)
from pipeline.registry.dispatch import RetryPolicy
from pipeline.registry.journal import NotifierStore
from pipeline.registry.models import HarvestDocument
from pipeline.registry.outcomes import OutcomePolicy
from pipeline.settings import RegistrySettings
from pipeline.state.memory import InMemoryStateStore
from tests.notifiers import notifier_settings

HARVEST = "aBcDeFgHiJkMnPqRs"
OLD_DATE = "2020-01-01T00:00:00.000Z"


class FakeRegistry:
    """Just enough of RegistryClient; the document only moves when a test moves it."""

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {"_id": HARVEST, "last_harvest_dt": OLD_DATE}
        self.triggers = 0
        self.reads = 0
        self.logouts = 0
        self.missing = False

    async def trigger(self, harvest_id: str, *, before: HarvestDocument | None = None) -> None:
        self.triggers += 1

    async def harvest(self, harvest_id: str) -> HarvestDocument:
        self.reads += 1
        if self.missing:
            raise RegistryError(f"registry has no harvest {harvest_id}", status=404)
        return HarvestDocument.model_validate(self.doc)

    async def logout(self) -> None:
        self.logouts += 1


class BrokenStore:
    """A store that always fails, as a locked database would."""

    async def get_meta(self, namespace: str, key: str) -> dict[str, Any] | None:
        raise StateError("database is locked")

    async def put_meta(self, namespace: str, key: str, value: dict[str, Any]) -> None:
        raise StateError("database is locked")


def new_data(dataset_id: str = "ds") -> NewDataEvent:
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    return NewDataEvent(stream="s", dataset_id=dataset_id, time_start=moment, time_end=moment)


def make(
    fake: FakeRegistry, *, store: NotifierStore | None = None, **timing: float
) -> RegistryNotifier:
    settings: dict[str, float] = {
        "debounce": 0.01,
        "busy_recheck": 0.01,
        "poll_interval": 0.01,
        "retry_base": 0.01,
        "retry_cap": 0.02,
        **timing,
    }
    return build_notifier(fake, notifier_settings({"ds": HARVEST}, **settings), store=store)


async def wait_until(condition: Callable[[], bool], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110 - the fake signals nothing
            await asyncio.sleep(0.005)


@asynccontextmanager
async def running(notifier: RegistryNotifier) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await task


def count(logs: Sequence[Mapping[str, Any]], name: str) -> int:
    return sum(1 for entry in logs if entry["event"] == name)


async def test_no_second_trigger_while_the_document_still_lags_behind() -> None:
    fake = FakeRegistry()
    notifier = make(fake)
    with capture_logs() as logs:
        async with running(notifier):
            await notifier.publish(new_data())
            await wait_until(lambda: fake.triggers == 1)
            await notifier.publish(new_data())
            # The document still shows the old date: the first trigger has not visibly started.
            await wait_until(lambda: count(logs, "registry_trigger_deferred") >= 3)
            assert fake.triggers == 1
            fake.doc = {"_id": HARVEST, "last_harvest_dt": "2026-01-01T00:00:01.000Z",
                        "last_harvest_status": "ok", "last_record_count": 3}  # fmt: skip
            await wait_until(lambda: fake.triggers == 2)
    finished = [e for e in logs if e["event"] == "registry_harvest_finished"]
    assert finished[0]["record_count"] == 3
    assert finished[0]["log_level"] == "info"


async def test_outcome_seen_by_the_busy_check_is_still_reported() -> None:
    fake = FakeRegistry()
    # Polls so rare that the next trigger's busy check is first to see the finished harvest.
    notifier = make(fake, poll_interval=30.0)
    with capture_logs() as logs:
        async with running(notifier):
            await notifier.publish(new_data())
            await wait_until(lambda: fake.triggers == 1)
            fake.doc = {"_id": HARVEST, "last_harvest_dt": "2026-01-01T00:00:01.000Z",
                        "last_harvest_status": "fail", "last_bad_count": 2}  # fmt: skip
            await notifier.publish(new_data())
            await wait_until(lambda: fake.triggers == 2)
    finished = [e for e in logs if e["event"] == "registry_harvest_finished"]
    assert [e["status"] for e in finished] == ["fail"]
    assert finished[0]["log_level"] == "warning"
    assert finished[0]["bad_count"] == 2


async def test_outcome_given_up_after_timeout_then_triggers_resume() -> None:
    fake = FakeRegistry()
    notifier = make(fake, outcome_timeout=0.05)
    with capture_logs() as logs:
        async with running(notifier):
            await notifier.publish(new_data())
            await wait_until(lambda: fake.triggers == 1)
            await notifier.publish(new_data())
            await wait_until(lambda: fake.triggers == 2)
    assert count(logs, "registry_harvest_outcome_unknown") >= 1


async def test_registry_errors_back_off_and_keep_the_batch() -> None:
    fake = FakeRegistry()
    fake.missing = True
    notifier = make(fake)
    with capture_logs() as logs:
        async with running(notifier) as task:
            await notifier.publish(new_data())
            await wait_until(lambda: count(logs, "registry_trigger_failed") >= 3)
            assert not task.done()
            fake.missing = False
            await wait_until(lambda: fake.triggers == 1)
    failures = [e["failures"] for e in logs if e["event"] == "registry_trigger_failed"]
    assert failures[:3] == [1, 2, 3]
    assert all(e["status"] == 404 for e in logs if e["event"] == "registry_trigger_failed")


async def test_store_failures_do_not_reach_the_harvest_loop() -> None:
    fake = FakeRegistry()
    notifier = make(fake, store=BrokenStore())
    with capture_logs() as logs:
        async with running(notifier):
            await notifier.publish(new_data())
            await wait_until(lambda: fake.triggers == 1)
    assert count(logs, "registry_meta_unreadable") == 1
    assert count(logs, "registry_meta_unsaved") >= 1


async def test_unmapped_datasets_are_ignored_and_close_logs_out() -> None:
    fake = FakeRegistry()
    notifier = make(fake)
    await notifier.publish(new_data("elsewhere"))
    assert notifier.pending() == {}
    await notifier.publish(new_data())
    assert list(notifier.pending()) == [HARVEST]
    assert notifier.harvest_ids == [HARVEST]
    await notifier.close()
    assert fake.logouts == 1
    assert fake.triggers == 0


async def test_project_state_store_serves_as_notifier_store() -> None:
    store = InMemoryStateStore()
    await store.open()
    try:
        fake = FakeRegistry()
        first = make(fake, store=store, debounce=60.0)
        await first.publish(new_data())
        meta = await store.get_meta(META_NAMESPACE, HARVEST)
        assert meta is not None
        assert meta["pending"] is True
        second = make(fake, store=store)  # a restart: the pending batch is sent without events
        async with running(second):
            await wait_until(lambda: fake.triggers == 1)
        meta = await store.get_meta(META_NAMESPACE, HARVEST)
        assert meta is not None
        assert meta["pending"] is False
        assert meta["last_trigger"]
    finally:
        await store.close()


def test_settings_come_from_the_registry_section_and_keep_max_interval_above_debounce() -> None:
    section = RegistrySettings(
        enabled=True,
        harvests={"ds": HARVEST},
        debounce=timedelta(minutes=10),
        max_interval=timedelta(minutes=5),
        dry_run=True,
    )
    settings = NotifierSettings.from_settings(section)
    assert settings.harvests == {"ds": HARVEST}
    assert (settings.debounce, settings.max_interval, settings.dry_run) == (600.0, 300.0, True)
    assert settings.rule == DebounceRule(quiet=600.0, max_wait=600.0)
    assert settings.retry == RetryPolicy()
    assert settings.outcomes == OutcomePolicy()


async def test_open_notifier_is_none_when_disabled_and_built_without_login_when_enabled() -> None:
    off = RegistrySettings(harvests={"ds": HARVEST})
    on = RegistrySettings(enabled=True, base_url="http://127.0.0.1:9", harvests={"ds": HARVEST})
    async with InMemoryStateStore() as store:
        async with open_notifier(off, store) as nothing:
            assert nothing is None
        # Built without a login: the registry is first called when a batch is due.
        async with open_notifier(on, store) as notifier:
            assert notifier is not None
            assert notifier.harvest_ids == [HARVEST]
            await notifier.publish(new_data())
            assert list(notifier.pending()) == [HARVEST]
