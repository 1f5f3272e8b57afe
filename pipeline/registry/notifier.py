"""The debounced registry notifier: one harvest trigger per batch of new data, never a pile-up.

The registry has no guard: every trigger queues another harvest job. So new-data events are
collected per harvest id into a batch, and a batch is sent once it has been quiet for
`debounce` seconds, or `max_interval` seconds after its first event while events keep coming,
and never while the registry still works on the previous trigger of that id.

`RegistryNotifier` is the long-lived loop over single-purpose parts, each built and tested
alone: `HarvestBatcher` (batches and when they are due, pure), `NotifierJournal` (what outlives
a restart), `TriggerDispatcher` (one send with its retry policy, through `HarvestTrigger` and
the `TriggerClaimer`), `OutcomeWatcher` (the outcome of each sent trigger) and the metrics hook.
`build_notifier` wires them from `NotifierSettings`; `open_notifier` does it from the
`registry` settings section, with the client it logs out and closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from pipeline.debounce import DebounceRule
from pipeline.records import NewDataEvent
from pipeline.registry.batches import HarvestBatcher, PendingBatch, wall_now
from pipeline.registry.claims import TriggerClaimer, TriggerClaims
from pipeline.registry.client import RegistryClient
from pipeline.registry.dispatch import OutcomeRecorder, RetryPolicy, TriggerDispatcher
from pipeline.registry.journal import NotifierJournal, NotifierStore
from pipeline.registry.metrics import NullRegistryMetrics, RegistryMetrics
from pipeline.registry.models import HarvestDocument
from pipeline.registry.outcomes import OutcomePolicy, OutcomeWatcher
from pipeline.registry.trigger import HarvestTrigger
from pipeline.settings import RegistrySettings

log = structlog.get_logger(__name__)


class RegistryApi(Protocol):
    """The part of RegistryClient the notifier uses."""

    async def trigger(self, harvest_id: str, *, before: HarvestDocument | None = None) -> None: ...

    async def harvest(self, harvest_id: str) -> HarvestDocument: ...

    async def logout(self) -> None: ...


@dataclass(frozen=True, slots=True)
class NotifierSettings:
    """Everything that decides the notifier's behaviour, as plain values (seconds)."""

    harvests: Mapping[str, str]  # dataset id -> IOOS Catalog harvest id
    debounce: float = 60.0
    max_interval: float = 900.0
    dry_run: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    outcomes: OutcomePolicy = field(default_factory=OutcomePolicy)

    @property
    def rule(self) -> DebounceRule:
        """The debounce rule; `max_interval` is never shorter than `debounce`."""
        return DebounceRule(quiet=self.debounce, max_wait=max(self.max_interval, self.debounce))

    @classmethod
    def from_settings(cls, registry: RegistrySettings) -> NotifierSettings:
        """The `registry` section's choices; retry and outcome timing keep their defaults."""
        return cls(
            harvests=dict(registry.harvests),
            debounce=registry.debounce.total_seconds(),
            max_interval=registry.max_interval.total_seconds(),
            dry_run=registry.dry_run,
        )


class RegistryNotifier:
    """Consumes NewDataEvents and asks the registry to re-harvest, debounced per harvest id."""

    def __init__(
        self,
        client: RegistryApi,
        batches: HarvestBatcher,
        journal: NotifierJournal,
        dispatcher: TriggerDispatcher,
        watcher: OutcomeWatcher,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._batches = batches
        self._journal = journal
        self._dispatcher = dispatcher
        self._watcher = watcher
        self._clock = clock
        self._firing: set[str] = set()
        self._pollers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None
        # Set whenever something may change what is due: an event, a finished task, stop.
        self._changed = asyncio.Event()

    @property
    def harvest_ids(self) -> list[str]:
        """Every harvest id some dataset maps to."""
        return self._batches.harvest_ids

    def pending(self) -> dict[str, PendingBatch]:
        """A snapshot of the batches not yet announced, by harvest id."""
        return self._batches.pending()

    async def publish(self, event: NewDataEvent) -> None:
        """Note new data; the trigger itself happens later, in `run`. Never raises for registry
        trouble, so the harvest loop is not disturbed."""
        noted = self._batches.add(event.dataset_id, self._clock())
        if noted is None:
            log.debug("registry_dataset_unmapped", dataset_id=event.dataset_id)
            return
        if noted.opened:
            # Persist once per batch, not per event: a restart still announces this data.
            await self._journal.save(noted.harvest_id, pending=True, pending_since=wall_now())
        self._changed.set()

    async def run(self, stop: asyncio.Event) -> None:
        """The long-lived loop: sends due batches until `stop` is set, then cancels its tasks."""
        await self._journal.restore(self._clock())
        async with asyncio.TaskGroup() as group:
            self._group = group
            watcher = group.create_task(self._wake_on(stop), name="registry-stop-watch")
            try:
                while not stop.is_set():
                    self._changed.clear()
                    for harvest_id in self._batches.due(self._clock(), busy=self._firing):
                        self._firing.add(harvest_id)
                        self._spawn(self._fire(harvest_id), f"registry-trigger-{harvest_id}")
                    wake = self._batches.next_due(busy=self._firing)
                    timeout = None if wake is None else max(0.0, wake - self._clock())
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await self._changed.wait()
            finally:
                # Unsent batches stay flagged `pending` in the store and are sent after restart.
                watcher.cancel()
                for task in list(self._tasks):
                    task.cancel()
                self._group = None
        log.info("registry_notifier_stopped", unsent=list(self._batches))

    async def flush(self) -> None:
        """Send every pending batch now, ignoring the debounce (`once` ends with this).

        Batches the registry defers (a harvest still running) or refuses stay pending in the
        store, and the next run sends them. Outcomes are not awaited.
        """
        await self._journal.restore(self._clock())
        for harvest_id in list(self._batches):
            if harvest_id in self._firing:
                continue
            self._firing.add(harvest_id)
            await self._fire(harvest_id)

    async def close(self) -> None:
        """Log out of the registry (its tokens never expire on their own)."""
        await self._client.logout()

    # -- internals ---------------------------------------------------------------------------

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._changed.set()

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        assert self._group is not None
        task = self._group.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _fire(self, harvest_id: str) -> None:
        """Dispatch one due batch; follow the trigger to its outcome when one was sent."""
        try:
            before = await self._dispatcher.dispatch(harvest_id)
            if before is not None:
                self._watch(harvest_id, before)
        finally:
            self._firing.discard(harvest_id)
            self._changed.set()

    def _watch(self, harvest_id: str, before: HarvestDocument) -> None:
        self._watcher.expect(harvest_id, before)
        poller = self._pollers.get(harvest_id)
        # `flush` has no task group: `once` does not wait for outcomes.
        if self._group is not None and (poller is None or poller.done()):
            self._pollers[harvest_id] = self._spawn(
                self._poll_outcome(harvest_id), f"registry-outcome-{harvest_id}"
            )

    async def _poll_outcome(self, harvest_id: str) -> None:
        """Run the watcher's poll of `harvest_id`; wake the loop when it ends."""
        try:
            await self._watcher.poll(harvest_id)
        finally:
            if self._pollers.get(harvest_id) is asyncio.current_task():
                del self._pollers[harvest_id]
            self._changed.set()


def build_notifier(
    client: RegistryApi,
    settings: NotifierSettings,
    *,
    store: NotifierStore | None = None,
    metrics: RegistryMetrics | None = None,
    claims: TriggerClaims | None = None,
    clock: Callable[[], float] = time.monotonic,
    rng: random.Random | None = None,
) -> RegistryNotifier:
    """A notifier wired from its parts; `claims` shares trigger decisions between instances
    (None: this instance sends every trigger)."""
    hook: RegistryMetrics = metrics or NullRegistryMetrics()
    batches = HarvestBatcher(settings.harvests, settings.rule)
    journal = NotifierJournal(batches, store)
    watcher = OutcomeWatcher(client, OutcomeRecorder(journal, hook), settings.outcomes, clock=clock)
    trigger = HarvestTrigger(client, watcher, TriggerClaimer(claims))
    dispatcher = TriggerDispatcher(
        batches,
        trigger,
        journal,
        hook,
        retry=settings.retry,
        dry_run=settings.dry_run,
        clock=clock,
        rng=rng,
    )
    return RegistryNotifier(client, batches, journal, dispatcher, watcher, clock=clock)


@asynccontextmanager
async def open_notifier(
    registry: RegistrySettings,
    store: NotifierStore,
    *,
    metrics: RegistryMetrics | None = None,
    claims: TriggerClaims | None = None,
) -> AsyncIterator[RegistryNotifier | None]:
    """The IOOS registry notifier when `registry.enabled` (else None); on exit it logs out
    and its client closes."""
    if not registry.enabled:
        yield None
        return
    password = registry.password.get_secret_value() if registry.password is not None else ""
    async with RegistryClient(registry.base_url, registry.email or "", password) as client:
        notifier = build_notifier(
            client,
            NotifierSettings.from_settings(registry),
            store=store,
            metrics=metrics,
            claims=claims,
        )
        try:
            yield notifier
        finally:
            with contextlib.suppress(Exception):
                await notifier.close()
