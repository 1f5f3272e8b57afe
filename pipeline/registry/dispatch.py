"""Sending a due batch: dry run, busy registry, covered by another instance, retry on failure.

One job of the registry notifier. A due batch goes out through the `HarvestTrigger` (read,
claim, send); what the registry answers decides what happens to the batch in the
`HarvestBatcher`: taken when the trigger is sent (new events start the next batch), held for
`busy_recheck` while the registry still works, put back with an exponential backoff after a
registry error, and held for `auth_retry` when the credentials are refused (a person must fix
them; retrying sooner only fills the log). Never raises registry errors: the harvest loop must
not notice registry trouble.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog

from pipeline.exceptions import RegistryAuthError, RegistryError
from pipeline.registry.batches import HarvestBatcher, PendingBatch, wall_now
from pipeline.registry.client import backoff_delay
from pipeline.registry.journal import NotifierJournal
from pipeline.registry.metrics import RegistryMetrics
from pipeline.registry.models import HarvestDocument
from pipeline.registry.outcomes import HarvestOutcome
from pipeline.registry.trigger import Busy, HarvestTrigger

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long a batch waits after the registry said no (seconds)."""

    busy_recheck: float = 30.0  # the registry still works on the previous job
    retry_base: float = 5.0  # first backoff after a registry error, doubling from there
    retry_cap: float = 600.0  # longest backoff
    auth_retry: float = 900.0  # credentials refused


class TriggerDispatcher:
    """Sends the batch of one harvest id, or holds it in the batcher for a later try."""

    def __init__(
        self,
        batches: HarvestBatcher,
        trigger: HarvestTrigger,
        journal: NotifierJournal,
        metrics: RegistryMetrics,
        *,
        retry: RetryPolicy | None = None,
        dry_run: bool = False,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self._batches = batches
        self._trigger = trigger
        self._journal = journal
        self._metrics = metrics
        self._retry = retry or RetryPolicy()
        self._dry_run = dry_run
        self._clock = clock
        self._rng = rng or random.Random()
        self._failures: dict[str, int] = {}  # consecutive registry errors per harvest id

    async def dispatch(self, harvest_id: str) -> HarvestDocument | None:
        """Announce the batch of `harvest_id`; the document read before a trigger that was
        sent (its outcome is then to be watched), else None."""
        batch = self._batches.get(harvest_id)
        if batch is None:
            return None
        if self._dry_run:
            self._batches.take(harvest_id)
            log.info(
                "registry_trigger_dry_run",
                harvest_id=harvest_id,
                datasets=sorted(batch.datasets),
                events=batch.events,
            )
            self._metrics.trigger_sent(harvest_id, dry_run=True)
            await self._journal.save(
                harvest_id, pending=False, last_trigger=wall_now(), dry_run=True
            )
            return None
        return await self._send(harvest_id, batch)

    async def _send(self, harvest_id: str, batch: PendingBatch) -> HarvestDocument | None:
        try:
            step = await self._trigger.prepare(harvest_id, batch.last_wall)
            if isinstance(step, Busy):
                recheck = self._retry.busy_recheck
                self._batches.postpone(harvest_id, batch, self._clock() + recheck)
                log.info(
                    "registry_trigger_deferred",
                    harvest_id=harvest_id,
                    phase=step.before.phase.value,
                    recheck_s=recheck,
                )
                return None
            if step is None:
                # Another instance triggered after all of this batch's data was published.
                self._batches.take(harvest_id)
                log.info(
                    "registry_trigger_covered",
                    harvest_id=harvest_id,
                    datasets=sorted(batch.datasets),
                    events=batch.events,
                )
                await self._journal.save(harvest_id, pending=harvest_id in self._batches)
                return None
            # From here on, new events form the next batch: this trigger only announces data
            # that was published before it was sent.
            self._batches.take(harvest_id)
            try:
                await self._trigger.send(harvest_id, step)
            except BaseException:
                self._batches.put_back(harvest_id, batch)
                raise
        except RegistryAuthError as exc:
            wait = self._retry.auth_retry
            self._batches.postpone(harvest_id, batch, self._clock() + wait)
            self._metrics.trigger_failed(harvest_id, reason="auth")
            log.error(
                "registry_auth_failed",
                harvest_id=harvest_id,
                error=str(exc),
                status=exc.status,
                retry_in_s=wait,
            )
            await self._journal.save(harvest_id, last_error=str(exc))
            return None
        except RegistryError as exc:
            failures = self._failures.get(harvest_id, 0)
            self._failures[harvest_id] = failures + 1
            delay = backoff_delay(
                failures, base=self._retry.retry_base, cap=self._retry.retry_cap, rng=self._rng
            )
            self._batches.postpone(harvest_id, batch, self._clock() + delay)
            self._metrics.trigger_failed(harvest_id, reason="unavailable")
            log.warning(
                "registry_trigger_failed",
                harvest_id=harvest_id,
                error=str(exc),
                status=exc.status,
                failures=failures + 1,
                retry_in_s=round(delay, 3),
            )
            await self._journal.save(harvest_id, last_error=str(exc))
            return None
        self._failures.pop(harvest_id, None)
        self._metrics.trigger_sent(harvest_id, dry_run=False)
        log.info(
            "registry_trigger_sent",
            harvest_id=harvest_id,
            datasets=sorted(batch.datasets),
            events=batch.events,
        )
        await self._journal.save(
            harvest_id,
            pending=harvest_id in self._batches,
            last_trigger=wall_now(),
            last_error=None,
            dry_run=False,
        )
        return step.before


class OutcomeRecorder:
    """What the outcome watcher reports to: the metrics hook, then the journal."""

    def __init__(self, journal: NotifierJournal, metrics: RegistryMetrics) -> None:
        self._journal = journal
        self._metrics = metrics

    async def __call__(self, outcome: HarvestOutcome) -> None:
        """Count and keep one finished harvest's outcome."""
        self._metrics.harvest_finished(outcome)
        await self._journal.save(outcome.harvest_id, last_outcome=outcome.as_meta())
