"""Batching of new-data events per harvest id: what is waiting to be announced, and when.

One job of the registry notifier, pure and synchronous so it is tested without sleeping: each
dataset maps to a harvest id, events of one harvest id gather into a `PendingBatch`, and a
batch is due by the notifier's `DebounceRule` (quiet for `debounce` seconds, or `max_interval`
seconds after its first event while events keep coming), never before its `not_before` (the
registry busy, a failure's backoff). Times are monotonic seconds passed in as `now`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pipeline.debounce import DebounceRule


def wall_now() -> str:
    """The wall time as ISO text: what the store and the shared trigger claims compare."""
    return datetime.now(UTC).isoformat()


@dataclass(slots=True)
class PendingBatch:
    """New data for one harvest id not yet announced; times are monotonic seconds."""

    first_event: float
    last_event: float
    events: int = 0
    datasets: set[str] = field(default_factory=set)
    not_before: float = 0.0  # set while the registry is busy or after a failure
    # Wall time of the latest event: shared trigger claims compare it across instances.
    last_wall: str = field(default_factory=wall_now)

    def add(self, now: float, dataset_id: str) -> None:
        """Count one more event."""
        self.last_event = max(self.last_event, now)
        self.events += 1
        self.datasets.add(dataset_id)
        self.last_wall = max(self.last_wall, wall_now())

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


def batch_due_at(batch: PendingBatch, rule: DebounceRule) -> float:
    """When `batch` should be sent under `rule`, and never before its `not_before`."""
    return rule.due_at(
        first_event=batch.first_event, last_event=batch.last_event, not_before=batch.not_before
    )


def due_harvests(
    batches: Mapping[str, PendingBatch],
    now: float,
    rule: DebounceRule,
    *,
    busy: Iterable[str] = (),
) -> list[str]:
    """Harvest ids whose batch is due at `now`, skipping those already being handled."""
    skip = set(busy)
    return sorted(
        hid
        for hid, batch in batches.items()
        if hid not in skip and batch_due_at(batch, rule) <= now
    )


def next_wakeup(
    batches: Mapping[str, PendingBatch], rule: DebounceRule, *, busy: Iterable[str] = ()
) -> float | None:
    """The earliest time any idle batch becomes due, or None when there is nothing to wait for."""
    skip = set(busy)
    times = [batch_due_at(batch, rule) for hid, batch in batches.items() if hid not in skip]
    return min(times, default=None)


@dataclass(frozen=True, slots=True)
class Noted:
    """Where an event went: its harvest id, and whether it opened a new batch."""

    harvest_id: str
    opened: bool


class HarvestBatcher:
    """The batches of every harvest id, keyed by the dataset-to-harvest-id mapping."""

    def __init__(self, harvests: Mapping[str, str], rule: DebounceRule) -> None:
        self._harvests = dict(harvests)  # dataset id -> harvest id
        self._rule = rule
        self._batches: dict[str, PendingBatch] = {}

    @property
    def harvest_ids(self) -> list[str]:
        """Every harvest id some dataset maps to."""
        return sorted(set(self._harvests.values()))

    def pending(self) -> dict[str, PendingBatch]:
        """A snapshot of the batches not yet announced, by harvest id."""
        return dict(self._batches)

    def get(self, harvest_id: str) -> PendingBatch | None:
        """The batch waiting for `harvest_id`, if any."""
        return self._batches.get(harvest_id)

    def datasets(self, harvest_id: str) -> list[str]:
        """The datasets in the batch of `harvest_id`, sorted (none when nothing waits)."""
        batch = self._batches.get(harvest_id)
        return sorted(batch.datasets) if batch else []

    def add(self, dataset_id: str, now: float) -> Noted | None:
        """Count one event of `dataset_id`; None when no harvest id is mapped to it."""
        harvest_id = self._harvests.get(dataset_id)
        if harvest_id is None:
            return None
        batch = self._batches.get(harvest_id)
        if batch is None:
            self._batches[harvest_id] = PendingBatch(now, now, 1, {dataset_id})
            return Noted(harvest_id, opened=True)
        batch.add(now, dataset_id)
        return Noted(harvest_id, opened=False)

    def restore(self, harvest_id: str, datasets: Iterable[str], now: float) -> bool:
        """Bring back a batch a previous run left unannounced; False when one is already here."""
        if harvest_id in self._batches:
            return False
        self._batches[harvest_id] = PendingBatch(now, now, 0, set(datasets))
        return True

    def take(self, harvest_id: str) -> None:
        """The batch of `harvest_id` is being announced: new events start the next one."""
        del self._batches[harvest_id]

    def put_back(self, harvest_id: str, batch: PendingBatch) -> None:
        """A taken batch whose trigger failed, joined with any batch that started meanwhile."""
        self._batches[harvest_id] = batch.merge(self._batches.get(harvest_id))

    def postpone(self, harvest_id: str, batch: PendingBatch, until: float) -> None:
        """Hold the batch of `harvest_id` (`batch` when none is in place) until `until`."""
        current = self._batches.setdefault(harvest_id, batch)
        current.not_before = until

    def due(self, now: float, *, busy: Iterable[str] = ()) -> list[str]:
        """Harvest ids due at `now`, except those in `busy`."""
        return due_harvests(self._batches, now, self._rule, busy=busy)

    def next_due(self, *, busy: Iterable[str] = ()) -> float | None:
        """When the next idle batch is due; None when none waits."""
        return next_wakeup(self._batches, self._rule, busy=busy)

    def __contains__(self, harvest_id: object) -> bool:
        return harvest_id in self._batches

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._batches))
