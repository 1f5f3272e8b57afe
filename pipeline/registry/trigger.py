"""The harvest trigger: one HTTP trigger of a harvest id, sent only when nothing stands in its way.

Before triggering, the harvest document is read: it shows whether the registry still works on
a job (then the trigger waits), and it is the `before` that lets `RegistryClient.trigger` tell
a trigger whose answer was lost from one that never arrived. Several instances share the
decision of who sends through the `TriggerClaimer`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from pipeline.registry.claims import TriggerClaimer
from pipeline.registry.models import HarvestDocument
from pipeline.registry.outcomes import OutcomeWatcher


class TriggerApi(Protocol):
    """The part of RegistryClient a trigger uses."""

    async def trigger(self, harvest_id: str, *, before: HarvestDocument | None = None) -> None: ...

    async def harvest(self, harvest_id: str) -> HarvestDocument: ...


@dataclass(frozen=True, slots=True)
class Busy:
    """The registry still works on a job of this id (or ours has not visibly started)."""

    before: HarvestDocument


@dataclass(frozen=True, slots=True)
class Claimed:
    """This instance may trigger now; `before` is the document read just before."""

    before: HarvestDocument
    claim: str


class HarvestTrigger:
    """Reads, claims and sends the trigger of one harvest id; registry errors propagate."""

    def __init__(
        self, client: TriggerApi, watcher: OutcomeWatcher, claimer: TriggerClaimer | None = None
    ) -> None:
        self._client = client
        self._watcher = watcher
        # Decides which instance sends a trigger (every one, with a single instance).
        self._claimer = claimer or TriggerClaimer(None)

    async def prepare(self, harvest_id: str, published: str) -> Busy | Claimed | None:
        """Whether a trigger announcing data published up to `published` (wall time) may go.

        None: another instance triggered after all of it was published (it is covered).
        """
        before = await self._client.harvest(harvest_id)
        # This read may be the first to see the previous trigger's outcome: report it here.
        await self._watcher.observe(before)
        # Busy while the registry works on a job, and also while our last trigger has not
        # visibly started yet (the document can lag behind the trigger's reply).
        if before.in_progress or self._watcher.watching(harvest_id):
            return Busy(before)
        claim = await self._claimer.claim(harvest_id, published)
        return None if claim is None else Claimed(before, claim)

    async def send(self, harvest_id: str, claimed: Claimed) -> None:
        """Send the trigger (with the lost-answer check) and settle the claim either way."""
        try:
            await self._client.trigger(harvest_id, before=claimed.before)
        except BaseException:
            await self._claimer.settle(harvest_id, claimed.claim, "failed")
            raise
        await self._claimer.settle(harvest_id, claimed.claim, "sent")
