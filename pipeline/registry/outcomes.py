"""The outcome watcher: after a trigger, read the harvest document until the job it queued ends.

The registry answers a trigger before the job starts, and its document keeps showing the
previous harvest until the job is marked pending. So a finished document counts as the
outcome of our trigger only once a run was seen in progress, or once its date moved past the
one read just before the trigger. An outcome not seen within the `OutcomePolicy`'s timeout is
logged as unknown.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import structlog

from pipeline.exceptions import RegistryError
from pipeline.registry.models import HarvestDocument, HarvestPhase, HarvestStatus

log = structlog.get_logger(__name__)


@dataclass(frozen=True, slots=True)
class HarvestOutcome:
    """The registry's verdict on one finished harvest."""

    harvest_id: str
    status: HarvestStatus | None
    finished_at: datetime | None
    record_count: int | None
    good_count: int | None
    bad_count: int | None

    def as_meta(self) -> dict[str, Any]:
        """JSON-ready form for the state store."""
        return {
            "status": self.status.value if self.status else None,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "record_count": self.record_count,
            "good_count": self.good_count,
            "bad_count": self.bad_count,
        }


@dataclass(frozen=True, slots=True)
class OutcomePolicy:
    """How the watcher follows a trigger: read every `poll_interval` seconds, give up after
    `timeout` seconds without an outcome."""

    poll_interval: float = 15.0
    timeout: float = 3600.0


class HarvestReader(Protocol):
    """The registry read the watcher polls."""

    async def harvest(self, harvest_id: str) -> HarvestDocument: ...


@dataclass(slots=True)
class _Watch:
    """A sent trigger whose outcome is not known yet."""

    baseline: str | None  # `last_harvest_dt` just before the trigger (an older date, or None)
    deadline: float  # monotonic time after which the outcome is given up as unknown
    seen_progress: bool = False


class OutcomeWatcher:
    """Watches sent triggers and reports each harvest's outcome once, through `report`."""

    def __init__(
        self,
        client: HarvestReader,
        report: Callable[[HarvestOutcome], Awaitable[None]],
        policy: OutcomePolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._report = report
        self._policy = policy or OutcomePolicy()
        self._clock = clock
        self._watches: dict[str, _Watch] = {}

    def watching(self, harvest_id: str) -> bool:
        """True while a trigger of `harvest_id` awaits its outcome."""
        return harvest_id in self._watches

    def expect(self, harvest_id: str, before: HarvestDocument) -> None:
        """A trigger of `harvest_id` was just sent; `before` is the document read before it."""
        self._watches[harvest_id] = _Watch(
            baseline=before.last_harvest_dt, deadline=self._clock() + self._policy.timeout
        )

    async def poll(self, harvest_id: str) -> None:
        """Poll the harvest document while a trigger of `harvest_id` awaits its outcome."""
        while (watch := self._watches.get(harvest_id)) is not None:
            if self._clock() >= watch.deadline:
                del self._watches[harvest_id]
                log.warning(
                    "registry_harvest_outcome_unknown",
                    harvest_id=harvest_id,
                    waited_s=self._policy.timeout,
                )
                return
            await asyncio.sleep(self._policy.poll_interval)
            try:
                doc = await self._client.harvest(harvest_id)
            except RegistryError as exc:
                log.warning("registry_poll_failed", harvest_id=harvest_id, error=str(exc))
                continue
            await self.observe(doc)

    async def observe(self, doc: HarvestDocument) -> None:
        """Feed one read of a harvest document to the watch of its id, if any."""
        watch = self._watches.get(doc.id)
        if watch is None:
            return
        if doc.in_progress:
            watch.seen_progress = True
            return
        # Until the registry marks the job pending, the old date still shows: not our outcome.
        if doc.phase is HarvestPhase.FINISHED and (
            watch.seen_progress or doc.last_harvest_dt != watch.baseline
        ):
            del self._watches[doc.id]
            await self._finished(doc)

    async def _finished(self, doc: HarvestDocument) -> None:
        outcome = HarvestOutcome(
            harvest_id=doc.id,
            status=doc.status,
            finished_at=doc.finished_at,
            record_count=doc.last_record_count,
            good_count=doc.last_good_count,
            bad_count=doc.last_bad_count,
        )
        fields = {
            "harvest_id": doc.id,
            "status": doc.last_harvest_status,
            "finished_at": doc.last_harvest_dt,
            "record_count": doc.last_record_count,
            "good_count": doc.last_good_count,
            "bad_count": doc.last_bad_count,
        }
        if outcome.status is HarvestStatus.OK:
            log.info("registry_harvest_finished", **fields)
        else:
            # A failed catalog harvest is the registry's problem to fix, not a reason to stop.
            log.warning("registry_harvest_finished", **fields)
        await self._report(outcome)
