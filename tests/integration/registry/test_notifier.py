"""RegistryNotifier against the registry emulator over a real socket: debounce, guard, recovery."""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from pipeline.emulator.registry import (
    DEFAULT_EMAIL,
    DEFAULT_HARVEST_IDS,
    DEFAULT_PASSWORD,
    RegistryState,
    default_registry_state,
)
from pipeline.records import NewDataEvent
from pipeline.registry import (
    META_NAMESPACE,
    HarvestOutcome,
    HarvestStatus,
    RegistryClient,
    RegistryNotifier,
    build_notifier,
    password_digest,
)
from pipeline.registry.claims import TriggerClaims
from tests.integration.registry.conftest import RegistryServer, StartRegistry
from tests.notifiers import notifier_settings

HARVEST_A, HARVEST_B = DEFAULT_HARVEST_IDS
# Five datasets feeding two harvests, as in the acceptance test.
MAPPING = {
    "bacax_ctd": HARVEST_A,
    "bacvp_ctd": HARVEST_A,
    "nc89_bpr": HARVEST_A,
    "sevip_hydrophone": HARVEST_B,
    "tssd_csv": HARVEST_B,
}
DEBOUNCE = 0.3


class DictStore:
    """In-test NotifierStore: keeps JSON text, so whatever is stored must be serializable."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], str] = {}

    async def get_meta(self, namespace: str, key: str) -> dict[str, Any] | None:
        raw = self.rows.get((namespace, key))
        return None if raw is None else dict(json.loads(raw))

    async def put_meta(self, namespace: str, key: str, value: dict[str, Any]) -> None:
        self.rows[(namespace, key)] = json.dumps(value)


class RecordingMetrics:
    """Metrics hook that remembers every call."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bool]] = []
        self.failed: list[tuple[str, str]] = []
        self.finished: list[HarvestOutcome] = []

    def trigger_sent(self, harvest_id: str, *, dry_run: bool) -> None:
        self.sent.append((harvest_id, dry_run))

    def trigger_failed(self, harvest_id: str, *, reason: str) -> None:
        self.failed.append((harvest_id, reason))

    def harvest_finished(self, outcome: HarvestOutcome) -> None:
        self.finished.append(outcome)


def event(dataset_id: str, n: int = 0) -> NewDataEvent:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    return NewDataEvent(
        stream=f"stream-{dataset_id}",
        dataset_id=dataset_id,
        time_start=start,
        time_end=start,
        records=n,
    )


async def wait_until(condition: Callable[[], bool], within: float = 10.0) -> None:
    """Poll `condition` until true; fail the test (TimeoutError) when it never becomes true."""
    async with asyncio.timeout(within):
        # Polling on purpose: the conditions read the emulator's state, which signals nothing.
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


def fast_state() -> RegistryState:
    state = default_registry_state()
    state.pending_duration = state.harvesting_duration = 0.05
    return state


_clients: list[RegistryClient] = []


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Close every client a test built (their HTTP sessions), after the test."""
    yield
    while _clients:
        await _clients.pop().close()


def make_notifier(
    server: RegistryServer,
    *,
    password: str = DEFAULT_PASSWORD,
    store: DictStore | None = None,
    metrics: RecordingMetrics | None = None,
    claims: TriggerClaims | None = None,
    dry_run: bool = False,
    **timing: float,
) -> RegistryNotifier:
    client = RegistryClient(
        server.base_url, DEFAULT_EMAIL, password, attempts=2, backoff_base=0.01, backoff_cap=0.05
    )
    _clients.append(client)
    settings: dict[str, float] = {
        "debounce": DEBOUNCE,
        "max_interval": 30.0,
        "busy_recheck": 0.05,
        "poll_interval": 0.03,
        "retry_base": 0.05,
        "retry_cap": 0.2,
        **timing,
    }
    return build_notifier(
        client,
        notifier_settings(MAPPING, dry_run=dry_run, **settings),
        store=store,
        metrics=metrics,
        claims=claims,
    )


@asynccontextmanager
async def running(notifier: RegistryNotifier) -> AsyncIterator[asyncio.Task[None]]:
    """Run the notifier in the background; stop it, wait for it and close it afterwards."""
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop), name="notifier-under-test")
    try:
        yield task
    finally:
        stop.set()
        await task
        await notifier.close()


def triggered(state: RegistryState) -> list[str]:
    return [harvest_id for harvest_id, _ in state.triggers]


async def burst(notifier: RegistryNotifier, count: int = 200) -> None:
    datasets = list(MAPPING)
    for n in range(count):
        await notifier.publish(event(datasets[n % len(datasets)], n))


async def test_burst_of_200_events_gives_one_trigger_per_harvest_per_period(
    start_registry: StartRegistry,
) -> None:
    server = await start_registry(fast_state())
    store, metrics = DictStore(), RecordingMetrics()
    notifier = make_notifier(server, store=store, metrics=metrics)
    async with running(notifier):
        await burst(notifier)
        await notifier.publish(event("not_mapped"))  # ignored
        await wait_until(lambda: len(server.state.triggers) >= 2)
        await wait_until(lambda: len(metrics.finished) == 2)
        await asyncio.sleep(DEBOUNCE * 2)  # a whole further period: nothing else may be sent
        assert Counter(triggered(server.state)) == {HARVEST_A: 1, HARVEST_B: 1}

        await burst(notifier)  # the next batch is a new period: one more each
        await wait_until(lambda: len(metrics.finished) == 4)
        await asyncio.sleep(DEBOUNCE * 2)
    assert Counter(triggered(server.state)) == {HARVEST_A: 2, HARVEST_B: 2}
    assert Counter(metrics.sent) == {(HARVEST_A, False): 2, (HARVEST_B, False): 2}
    assert all(o.status is HarvestStatus.OK for o in metrics.finished)
    meta = await store.get_meta(META_NAMESPACE, HARVEST_A)
    assert meta is not None
    assert meta["pending"] is False
    assert meta["last_outcome"]["status"] == "ok"
    assert meta["last_outcome"]["record_count"] == server.state.record_count
    assert meta["last_trigger"]


async def test_server_side_invalidation_recovered_by_one_relogin(
    start_registry: StartRegistry,
) -> None:
    server = await start_registry(fast_state())
    metrics = RecordingMetrics()
    notifier = make_notifier(server, metrics=metrics, debounce=0.05)
    async with running(notifier):
        await notifier.publish(event("bacax_ctd"))
        await wait_until(lambda: len(metrics.finished) == 1)
        server.state.invalidate_tokens()
        await notifier.publish(event("bacax_ctd"))
        await wait_until(lambda: len(metrics.finished) == 2)
    assert triggered(server.state) == [HARVEST_A, HARVEST_A]
    assert server.state.logins == 2


async def test_wrong_password_is_logged_and_does_not_stop_the_caller(
    start_registry: StartRegistry,
) -> None:
    server = await start_registry(fast_state())
    metrics = RecordingMetrics()
    notifier = make_notifier(server, password="wrong-password", metrics=metrics, debounce=0.05)
    with capture_logs() as logs:
        async with running(notifier) as task:
            await notifier.publish(event("bacax_ctd"))
            await wait_until(lambda: metrics.failed == [(HARVEST_A, "auth")])
            await notifier.publish(event("tssd_csv"))  # the harvest loop keeps publishing
            await wait_until(lambda: len(metrics.failed) == 2)
            assert not task.done()
    assert task.exception() is None
    errors = [e for e in logs if e["event"] == "registry_auth_failed"]
    assert errors[0]["log_level"] == "error"
    assert "wrong email or password" in errors[0]["error"]
    assert server.state.triggers == []
    assert set(notifier.pending()) == {HARVEST_A, HARVEST_B}  # kept for a later retry


async def test_close_logs_out(start_registry: StartRegistry) -> None:
    server = await start_registry(fast_state())
    metrics = RecordingMetrics()
    notifier = make_notifier(server, metrics=metrics, debounce=0.05)
    async with running(notifier):
        await notifier.publish(event("sevip_hydrophone"))
        await wait_until(lambda: len(server.state.triggers) == 1)
        assert len(server.state.tokens) == 1
    assert server.state.tokens == {}
    assert server.state.logouts == 1


async def test_no_trigger_while_last_harvest_is_still_running(
    start_registry: StartRegistry,
) -> None:
    state = default_registry_state()
    state.pending_duration, state.harvesting_duration = 0.1, 0.5
    server = await start_registry(state)
    metrics = RecordingMetrics()
    notifier = make_notifier(server, metrics=metrics, debounce=0.02)
    with capture_logs() as logs:
        async with running(notifier):
            await notifier.publish(event("bacax_ctd"))
            await wait_until(lambda: len(state.triggers) == 1)
            await notifier.publish(event("bacax_ctd"))  # due long before the harvest ends
            await wait_until(lambda: len(metrics.finished) == 2)
    deferred = [e for e in logs if e["event"] == "registry_trigger_deferred"]
    assert deferred
    assert {e["phase"] for e in deferred} <= {"pending", "harvesting"}
    first_finished = metrics.finished[0].finished_at
    assert first_finished is not None
    assert state.triggers[1][1] >= first_finished  # the second trigger waited for the first


async def test_failed_harvest_is_a_warning_with_counts(start_registry: StartRegistry) -> None:
    server = await start_registry(fast_state())
    server.state.fail_next_harvest(HARVEST_B)
    metrics, store = RecordingMetrics(), DictStore()
    notifier = make_notifier(server, metrics=metrics, store=store, debounce=0.05)
    with capture_logs() as logs:
        async with running(notifier) as task:
            await notifier.publish(event("tssd_csv"))
            await wait_until(lambda: len(metrics.finished) == 1)
            assert not task.done()
    finished = [e for e in logs if e["event"] == "registry_harvest_finished"]
    assert finished[0]["log_level"] == "warning"
    assert finished[0]["status"] == "fail"
    # A failed harvest keeps the counts the trigger reset to 0 (ioos/catalog-harvesting).
    assert finished[0]["bad_count"] == 0
    meta = await store.get_meta(META_NAMESPACE, HARVEST_B)
    assert meta is not None
    assert meta["last_outcome"]["status"] == "fail"


async def test_transient_trigger_failures_are_retried(start_registry: StartRegistry) -> None:
    server = await start_registry(fast_state())
    # The client tries twice per call; four 500s exhaust it twice, the notifier retries again.
    server.state.fail_next_triggers(4)
    metrics = RecordingMetrics()
    notifier = make_notifier(server, metrics=metrics, debounce=0.05)
    async with running(notifier):
        await notifier.publish(event("nc89_bpr"))
        await wait_until(lambda: len(metrics.finished) == 1)
    assert metrics.failed == [(HARVEST_A, "unavailable")] * 2
    assert triggered(server.state) == [HARVEST_A]


async def test_dry_run_logs_instead_of_calling(start_registry: StartRegistry) -> None:
    server = await start_registry(fast_state())
    metrics, store = RecordingMetrics(), DictStore()
    notifier = make_notifier(server, metrics=metrics, store=store, debounce=0.05, dry_run=True)
    with capture_logs() as logs:
        async with running(notifier):
            await burst(notifier, 20)
            await wait_until(lambda: len(metrics.sent) == 2)
    dry = [e for e in logs if e["event"] == "registry_trigger_dry_run"]
    assert Counter(e["harvest_id"] for e in dry) == {HARVEST_A: 1, HARVEST_B: 1}
    assert sum(e["events"] for e in dry) == 20
    assert server.state.triggers == []
    assert server.state.logins == 0
    meta = await store.get_meta(META_NAMESPACE, HARVEST_A)
    assert meta is not None
    assert meta["dry_run"] is True
    assert meta["pending"] is False


async def test_batch_left_pending_is_sent_after_restart(start_registry: StartRegistry) -> None:
    server = await start_registry(fast_state())
    store = DictStore()
    first = make_notifier(server, store=store, debounce=60.0)
    async with running(first):
        await first.publish(event("bacvp_ctd"))
    assert server.state.triggers == []  # stopped before the batch was due
    meta = await store.get_meta(META_NAMESPACE, HARVEST_A)
    assert meta is not None
    assert meta["pending"] is True
    assert meta["datasets"] == ["bacvp_ctd"]

    metrics = RecordingMetrics()
    second = make_notifier(server, store=store, metrics=metrics, debounce=0.05)
    async with running(second):
        await wait_until(lambda: len(metrics.finished) == 1)
    assert triggered(server.state) == [HARVEST_A]


async def test_max_interval_forces_a_trigger_while_events_keep_coming(
    start_registry: StartRegistry,
) -> None:
    server = await start_registry(fast_state())
    notifier = make_notifier(server, debounce=0.3, max_interval=0.2)
    async with running(notifier):
        for n in range(30):  # an event every 0.03 s for 0.9 s: never quiet for 0.3 s
            await notifier.publish(event("bacax_ctd", n))
            await asyncio.sleep(0.03)
        during = len(server.state.triggers)
    # Debounce alone would have sent nothing before the events stopped.
    assert during >= 2


async def test_no_secret_in_logs_or_state(
    start_registry: StartRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    server = await start_registry(fast_state())
    server.state.fail_next_triggers(3)
    store, metrics = DictStore(), RecordingMetrics()
    notifier = make_notifier(server, store=store, metrics=metrics, debounce=0.05)
    caplog.set_level(logging.DEBUG)
    with capture_logs() as logs:
        async with running(notifier):
            await burst(notifier, 50)
            await wait_until(lambda: len(metrics.finished) == 2)
            server.state.invalidate_tokens()
            await burst(notifier, 10)
            await wait_until(lambda: len(metrics.finished) == 4)
        wrong = make_notifier(server, password="another-secret", debounce=0.02)
        async with running(wrong):
            await wrong.publish(event("bacax_ctd"))
            await wait_until(lambda: any(e["event"] == "registry_auth_failed" for e in logs))
    secrets = [
        DEFAULT_PASSWORD,
        password_digest(DEFAULT_PASSWORD),
        "another-secret",
        password_digest("another-secret"),
        *server.state.issued_tokens,
    ]
    assert len(server.state.issued_tokens) >= 2
    assert len(store.rows) == 2
    text = repr(logs) + repr(store.rows) + caplog.text
    leaked = [secret for secret in secrets if secret in text]
    assert leaked == []
    assert "registry_harvest_finished" in text  # the capture did see the notifier's output
