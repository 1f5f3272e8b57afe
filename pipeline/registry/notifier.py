"""The debounced registry notifier: one harvest trigger per batch of new data, never a pile-up.

The registry has no guard: every trigger queues another harvest job. So new-data events are
collected per harvest id into a batch, and a batch is sent once it has been quiet for
`debounce` seconds, or `max_interval` seconds after its first event while events keep coming,
and never while the registry still works on the previous trigger of that id. The decision of
when a batch is due is pure (`batch_due_at`, `due_harvests`) and takes `now`, so it is tested
without sleeping. State that must outlive a restart (a batch not yet announced, the last
trigger and outcome) goes to a small store; secrets never do.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import structlog

from pipeline.debounce import due_at
from pipeline.exceptions import RegistryAuthError, RegistryError, StateError
from pipeline.records import NewDataEvent
from pipeline.registry.claims import TriggerClaimer
from pipeline.registry.client import backoff_delay
from pipeline.registry.models import HarvestDocument
from pipeline.registry.outcomes import HarvestOutcome, OutcomeWatcher
from pipeline.registry.trigger import Busy, HarvestTrigger

log = structlog.get_logger(__name__)

META_NAMESPACE = "registry"


# Who sends the next trigger of a harvest id when several instances share one store.
class NotifierStore(Protocol):
    """The two state-store methods the notifier needs (the project's StateStore has them)."""

    async def get_meta(self, namespace: str, key: str) -> dict[str, Any] | None: ...

    async def put_meta(self, namespace: str, key: str, value: dict[str, Any]) -> None: ...


class RegistryApi(Protocol):
    """The part of RegistryClient the notifier uses."""

    async def trigger(self, harvest_id: str, *, before: HarvestDocument | None = None) -> None: ...

    async def harvest(self, harvest_id: str) -> HarvestDocument: ...

    async def logout(self) -> None: ...


class RegistryMetrics(Protocol):
    """Hook for metrics (the ops module plugs Prometheus in); calls must not block."""

    def trigger_sent(self, harvest_id: str, *, dry_run: bool) -> None: ...

    def trigger_failed(self, harvest_id: str, *, reason: str) -> None: ...

    def harvest_finished(self, outcome: HarvestOutcome) -> None: ...


class NullRegistryMetrics:
    """Metrics hook that records nothing (the default)."""

    def trigger_sent(self, harvest_id: str, *, dry_run: bool) -> None:
        """Ignore a sent trigger."""

    def trigger_failed(self, harvest_id: str, *, reason: str) -> None:
        """Ignore a failed trigger."""

    def harvest_finished(self, outcome: HarvestOutcome) -> None:
        """Ignore an outcome."""


@dataclass(slots=True)
class PendingBatch:
    """New data for one harvest id not yet announced; times are monotonic seconds."""

    first_event: float
    last_event: float
    events: int = 0
    datasets: set[str] = field(default_factory=set)
    not_before: float = 0.0  # set while the registry is busy or after a failure
    # Wall time of the latest event: shared trigger claims compare it across instances.
    last_wall: str = field(default_factory=lambda: _wall_now())

    def add(self, now: float, dataset_id: str) -> None:
        """Count one more event."""
        self.last_event = max(self.last_event, now)
        self.events += 1
        self.datasets.add(dataset_id)
        self.last_wall = max(self.last_wall, _wall_now())

    def merge(self, newer: PendingBatch | None) -> PendingBatch:
        """This batch (put back after a failed trigger) joined with events that came meanwhile."""
        if newer is None:
            return self
        return PendingBatch(
            first_event=min(self.first_event, newer.first_event),
            last_event=max(self.last_event, newer.last_event),
            events=self.events + newer.events,
            datasets=self.datasets | newer.datasets,
            not_before=max(self.not_before, newer.not_before),
            last_wall=max(self.last_wall, newer.last_wall),
        )


def batch_due_at(batch: PendingBatch, *, debounce: float, max_interval: float) -> float:
    """When `batch` should be sent: after a quiet `debounce`, at the latest `max_interval` after
    its first event, and never before its `not_before`."""
    return due_at(
        first_event=batch.first_event,
        last_event=batch.last_event,
        quiet=debounce,
        max_wait=max_interval,
        not_before=batch.not_before,
    )


def due_harvests(
    batches: Mapping[str, PendingBatch],
    now: float,
    *,
    debounce: float,
    max_interval: float,
    busy: Iterable[str] = (),
) -> list[str]:
    """Harvest ids whose batch is due at `now`, skipping those already being handled."""
    skip = set(busy)
    return sorted(
        hid
        for hid, batch in batches.items()
        if hid not in skip
        and batch_due_at(batch, debounce=debounce, max_interval=max_interval) <= now
    )


def next_wakeup(
    batches: Mapping[str, PendingBatch],
    *,
    debounce: float,
    max_interval: float,
    busy: Iterable[str] = (),
) -> float | None:
    """The earliest time any idle batch becomes due, or None when there is nothing to wait for."""
    skip = set(busy)
    times = [
        batch_due_at(batch, debounce=debounce, max_interval=max_interval)
        for hid, batch in batches.items()
        if hid not in skip
    ]
    return min(times, default=None)


def _wall_now() -> str:
    return datetime.now(UTC).isoformat()


class RegistryNotifier:
    """Consumes NewDataEvents and asks the registry to re-harvest, debounced per harvest id."""

    def __init__(
        self,
        client: RegistryApi,
        harvests: Mapping[str, str],
        *,
        store: NotifierStore | None = None,
        debounce: float = 60.0,
        max_interval: float = 900.0,
        busy_recheck: float = 30.0,
        poll_interval: float = 15.0,
        outcome_timeout: float = 3600.0,
        retry_base: float = 5.0,
        retry_cap: float = 600.0,
        auth_retry: float = 900.0,
        dry_run: bool = False,
        metrics: RegistryMetrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        claimer: TriggerClaimer | None = None,
    ) -> None:
        self._client = client
        self._harvests = dict(harvests)  # dataset id -> harvest id
        self._store = store
        self._debounce = debounce
        self._max_interval = max(max_interval, debounce)
        self._busy_recheck = busy_recheck
        self._retry_base = retry_base
        self._retry_cap = retry_cap
        self._auth_retry = auth_retry
        self._dry_run = dry_run
        self._metrics: RegistryMetrics = metrics or NullRegistryMetrics()
        self._clock = clock
        self._rng = rng or random.Random()
        self._batches: dict[str, PendingBatch] = {}
        self._meta: dict[str, dict[str, Any]] = {}
        self._firing: set[str] = set()
        self._failures: dict[str, int] = {}
        # Follows each sent trigger to the outcome of the harvest it queued.
        self._watcher = OutcomeWatcher(
            client,
            self._record_outcome,
            poll_interval=poll_interval,
            outcome_timeout=outcome_timeout,
            clock=clock,
        )
        # Reads, claims and sends one trigger (`claimer` decides which instance sends).
        self._trigger = HarvestTrigger(client, self._watcher, claimer)
        self._pollers: dict[str, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._group: asyncio.TaskGroup | None = None
        # Set whenever something may change what is due: an event, a finished task, stop.
        self._changed = asyncio.Event()

    @property
    def harvest_ids(self) -> list[str]:
        """Every harvest id some dataset maps to."""
        return sorted(set(self._harvests.values()))

    def pending(self) -> dict[str, PendingBatch]:
        """A snapshot of the batches not yet announced, by harvest id."""
        return dict(self._batches)

    async def publish(self, event: NewDataEvent) -> None:
        """Note new data; the trigger itself happens later, in `run`. Never raises for registry
        trouble, so the harvest loop is not disturbed."""
        harvest_id = self._harvests.get(event.dataset_id)
        if harvest_id is None:
            log.debug("registry_dataset_unmapped", dataset_id=event.dataset_id)
            return
        now = self._clock()
        batch = self._batches.get(harvest_id)
        if batch is None:
            self._batches[harvest_id] = PendingBatch(now, now, 1, {event.dataset_id})
            # Persist once per batch, not per event: a restart still announces this data.
            await self._save(harvest_id, pending=True, pending_since=_wall_now())
        else:
            batch.add(now, event.dataset_id)
        self._changed.set()

    async def run(self, stop: asyncio.Event) -> None:
        """The long-lived loop: sends due batches until `stop` is set, then cancels its tasks."""
        await self._restore()
        async with asyncio.TaskGroup() as group:
            self._group = group
            watcher = group.create_task(self._wake_on(stop), name="registry-stop-watch")
            try:
                while not stop.is_set():
                    self._changed.clear()
                    now = self._clock()
                    for harvest_id in due_harvests(
                        self._batches,
                        now,
                        debounce=self._debounce,
                        max_interval=self._max_interval,
                        busy=self._firing,
                    ):
                        self._firing.add(harvest_id)
                        self._spawn(self._fire(harvest_id), f"registry-trigger-{harvest_id}")
                    wake = next_wakeup(
                        self._batches,
                        debounce=self._debounce,
                        max_interval=self._max_interval,
                        busy=self._firing,
                    )
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
        log.info("registry_notifier_stopped", unsent=sorted(self._batches))

    async def flush(self) -> None:
        """Send every pending batch now, ignoring the debounce (`once` ends with this).

        Batches the registry defers (a harvest still running) or refuses stay pending in the
        store, and the next run sends them. Outcomes are not awaited.
        """
        await self._restore()
        for harvest_id in sorted(self._batches):
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

    async def _restore(self) -> None:
        """Reload persisted meta; a batch left pending by the last run is announced again."""
        if self._store is None:
            return
        now = self._clock()
        for harvest_id in self.harvest_ids:
            try:
                meta = await self._store.get_meta(META_NAMESPACE, harvest_id)
            except StateError as exc:
                log.warning("registry_meta_unreadable", harvest_id=harvest_id, error=str(exc))
                continue
            if not meta:
                continue
            self._meta[harvest_id] = dict(meta)
            if meta.get("pending") and harvest_id not in self._batches:
                datasets = {str(d) for d in meta.get("datasets") or ()}
                self._batches[harvest_id] = PendingBatch(now, now, 0, datasets)
                log.info("registry_pending_restored", harvest_id=harvest_id)

    async def _save(self, harvest_id: str, **changes: Any) -> None:
        meta = self._meta.setdefault(harvest_id, {"harvest_id": harvest_id})
        meta.update(changes)
        batch = self._batches.get(harvest_id)
        meta["datasets"] = sorted(batch.datasets) if batch else []
        meta["updated"] = _wall_now()
        if self._store is None:
            return
        try:
            await self._store.put_meta(META_NAMESPACE, harvest_id, dict(meta))
        except StateError as exc:
            log.warning("registry_meta_unsaved", harvest_id=harvest_id, error=str(exc))

    def _postpone(self, harvest_id: str, batch: PendingBatch, delay: float) -> None:
        # By now the batch is back in place (merged with any newer events) or was never taken.
        current = self._batches.setdefault(harvest_id, batch)
        current.not_before = self._clock() + delay

    async def _fire(self, harvest_id: str) -> None:
        """Send one due batch, or put it back for later when the registry is busy or failing."""
        batch = self._batches.get(harvest_id)
        try:
            if batch is None:
                return
            if self._dry_run:
                del self._batches[harvest_id]
                log.info(
                    "registry_trigger_dry_run",
                    harvest_id=harvest_id,
                    datasets=sorted(batch.datasets),
                    events=batch.events,
                )
                self._metrics.trigger_sent(harvest_id, dry_run=True)
                await self._save(harvest_id, pending=False, last_trigger=_wall_now(), dry_run=True)
                return
            await self._send(harvest_id, batch)
        finally:
            self._firing.discard(harvest_id)
            self._changed.set()

    async def _send(self, harvest_id: str, batch: PendingBatch) -> None:
        try:
            step = await self._trigger.prepare(harvest_id, batch.last_wall)
            if isinstance(step, Busy):
                batch.not_before = self._clock() + self._busy_recheck
                log.info(
                    "registry_trigger_deferred",
                    harvest_id=harvest_id,
                    phase=step.before.phase.value,
                    recheck_s=self._busy_recheck,
                )
                return
            if step is None:
                # Another instance triggered after all of this batch's data was published.
                del self._batches[harvest_id]
                log.info(
                    "registry_trigger_covered",
                    harvest_id=harvest_id,
                    datasets=sorted(batch.datasets),
                    events=batch.events,
                )
                await self._save(harvest_id, pending=harvest_id in self._batches)
                return
            # From here on, new events form the next batch: this trigger only announces data
            # that was published before it was sent.
            del self._batches[harvest_id]
            try:
                await self._trigger.send(harvest_id, step)
            except BaseException:
                self._batches[harvest_id] = batch.merge(self._batches.get(harvest_id))
                raise
            before = step.before
        except RegistryAuthError as exc:
            self._postpone(harvest_id, batch, self._auth_retry)
            self._metrics.trigger_failed(harvest_id, reason="auth")
            log.error(
                "registry_auth_failed",
                harvest_id=harvest_id,
                error=str(exc),
                status=exc.status,
                retry_in_s=self._auth_retry,
            )
            await self._save(harvest_id, last_error=str(exc))
            return
        except RegistryError as exc:
            failures = self._failures.get(harvest_id, 0)
            self._failures[harvest_id] = failures + 1
            delay = backoff_delay(
                failures, base=self._retry_base, cap=self._retry_cap, rng=self._rng
            )
            self._postpone(harvest_id, batch, delay)
            self._metrics.trigger_failed(harvest_id, reason="unavailable")
            log.warning(
                "registry_trigger_failed",
                harvest_id=harvest_id,
                error=str(exc),
                status=exc.status,
                failures=failures + 1,
                retry_in_s=round(delay, 3),
            )
            await self._save(harvest_id, last_error=str(exc))
            return
        self._failures.pop(harvest_id, None)
        self._metrics.trigger_sent(harvest_id, dry_run=False)
        log.info(
            "registry_trigger_sent",
            harvest_id=harvest_id,
            datasets=sorted(batch.datasets),
            events=batch.events,
        )
        await self._save(
            harvest_id,
            pending=harvest_id in self._batches,
            last_trigger=_wall_now(),
            last_error=None,
            dry_run=False,
        )
        self._watcher.expect(harvest_id, before)
        poller = self._pollers.get(harvest_id)
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

    async def _record_outcome(self, outcome: HarvestOutcome) -> None:
        self._metrics.harvest_finished(outcome)
        await self._save(outcome.harvest_id, last_outcome=outcome.as_meta())
