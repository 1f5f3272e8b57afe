"""The notifier's pure batching: when a batch of new data is due, with no sleeping."""

from __future__ import annotations

import pytest

from pipeline.debounce import DebounceRule
from pipeline.registry.batches import (
    HarvestBatcher,
    Noted,
    PendingBatch,
    batch_due_at,
    due_harvests,
    next_wakeup,
)

RULE = DebounceRule(quiet=60.0, max_wait=900.0)


def batch(first: float, last: float, not_before: float = 0.0) -> PendingBatch:
    return PendingBatch(first_event=first, last_event=last, events=1, not_before=not_before)


def test_quiet_period_decides_when_events_stop() -> None:
    assert batch_due_at(batch(0, 100), RULE) == 160


def test_max_interval_caps_the_wait_while_events_keep_coming() -> None:
    assert batch_due_at(batch(0, 880), RULE) == 900


def test_not_before_postpones_a_due_batch() -> None:
    due = batch_due_at(batch(0, 10, not_before=500), RULE)
    assert due == 500


def test_each_new_event_pushes_the_quiet_deadline() -> None:
    pending = batch(0, 0)
    for now in (30, 59, 90):
        pending.add(now, "bacax_ctd")
    assert pending.events == 4
    assert batch_due_at(pending, RULE) == 150


def test_due_harvests_at_a_given_now() -> None:
    batches = {"a": batch(0, 0), "b": batch(0, 50), "c": batch(0, 0)}
    assert due_harvests(batches, 59.9, RULE) == []
    assert due_harvests(batches, 60, RULE) == ["a", "c"]
    assert due_harvests(batches, 200, RULE, busy={"c"}) == ["a", "b"]


def test_one_trigger_per_period_for_a_simulated_burst() -> None:
    # 200 events over 10 s on two ids, then silence: each id is due exactly once.
    batches: dict[str, PendingBatch] = {}
    sent: list[tuple[str, float]] = []
    for step in range(200):
        now = step * 0.05
        harvest_id = "a" if step % 5 < 3 else "b"
        if harvest_id in batches:
            batches[harvest_id].add(now, "x")
        else:
            batches[harvest_id] = batch(now, now)
    for tick in range(0, 2000):
        now = tick * 0.5
        for harvest_id in due_harvests(batches, now, RULE):
            sent.append((harvest_id, now))
            del batches[harvest_id]
    assert sent == [("a", 70.0), ("b", 70.0)]  # last events at 9.85 s and 9.95 s, +60 s quiet


def test_next_wakeup_is_the_earliest_idle_deadline() -> None:
    batches = {"a": batch(0, 10), "b": batch(0, 5)}
    assert next_wakeup(batches, RULE) == 65
    assert next_wakeup(batches, RULE, busy={"b"}) == 70
    assert next_wakeup({}, RULE) is None


def test_merge_keeps_the_oldest_start_and_all_events() -> None:
    old = PendingBatch(10, 20, 3, {"a"}, not_before=5)
    new = PendingBatch(30, 40, 2, {"b"})
    merged = old.merge(new)
    assert (merged.first_event, merged.last_event, merged.events) == (10, 40, 5)
    assert merged.datasets == {"a", "b"}
    assert merged.not_before == 5
    assert old.merge(None) is old


@pytest.mark.parametrize(("last", "expected"), [(0, 60), (850, 900), (899, 900)])
def test_due_never_later_than_max_interval(last: float, expected: float) -> None:
    assert batch_due_at(batch(0, last), RULE) == expected


# -- HarvestBatcher: the batches of every harvest id, built alone ---------------------------------

MAPPING = {"ctd": "h1", "adcp": "h1", "hydrophone": "h2"}


def test_batcher_maps_datasets_and_opens_one_batch_per_harvest_id() -> None:
    batcher = HarvestBatcher(MAPPING, RULE)
    assert batcher.harvest_ids == ["h1", "h2"]
    assert batcher.add("elsewhere", 0.0) is None
    assert batcher.add("ctd", 0.0) == Noted("h1", opened=True)
    assert batcher.add("adcp", 5.0) == Noted("h1", opened=False)
    assert batcher.add("hydrophone", 7.0) == Noted("h2", opened=True)
    assert list(batcher) == ["h1", "h2"]
    assert batcher.datasets("h1") == ["adcp", "ctd"]
    assert batcher.datasets("nothing") == []
    batch = batcher.get("h1")
    assert batch is not None
    assert (batch.first_event, batch.last_event, batch.events) == (0.0, 5.0, 2)


def test_batcher_says_what_is_due_and_when_the_next_is() -> None:
    batcher = HarvestBatcher(MAPPING, RULE)
    batcher.add("ctd", 0.0)
    batcher.add("hydrophone", 30.0)
    assert batcher.due(59.0) == []
    assert batcher.next_due() == 60.0
    assert batcher.due(60.0) == ["h1"]
    assert batcher.due(90.0, busy={"h1"}) == ["h2"]
    assert batcher.next_due(busy={"h1"}) == 90.0


def test_a_taken_batch_put_back_joins_the_batch_that_started_meanwhile() -> None:
    batcher = HarvestBatcher(MAPPING, RULE)
    batcher.add("ctd", 0.0)
    taken = batcher.get("h1")
    assert taken is not None
    batcher.take("h1")
    assert "h1" not in batcher
    assert batcher.add("adcp", 70.0) == Noted("h1", opened=True)  # the next batch
    batcher.put_back("h1", taken)
    merged = batcher.get("h1")
    assert merged is not None
    assert (merged.first_event, merged.last_event, merged.events) == (0.0, 70.0, 2)
    assert merged.datasets == {"ctd", "adcp"}


def test_postpone_holds_the_batch_in_place_or_puts_the_given_one_back() -> None:
    batcher = HarvestBatcher(MAPPING, RULE)
    batcher.add("ctd", 0.0)
    in_place = batcher.get("h1")
    assert in_place is not None
    batcher.postpone("h1", PendingBatch(0.0, 0.0), until=500.0)
    assert batcher.get("h1") is in_place
    assert batcher.due(499.0) == []
    assert batcher.due(500.0) == ["h1"]
    batcher.take("h1")
    gone = PendingBatch(0.0, 0.0, 1, {"ctd"})
    batcher.postpone("h1", gone, until=800.0)
    assert batcher.get("h1") is gone
    assert batcher.next_due() == 800.0


def test_restore_brings_back_a_pending_batch_but_never_over_a_live_one() -> None:
    batcher = HarvestBatcher(MAPPING, RULE)
    assert batcher.restore("h1", ["ctd"], 100.0)
    restored = batcher.get("h1")
    assert restored is not None
    assert (restored.events, restored.datasets) == (0, {"ctd"})
    assert batcher.due(160.0) == ["h1"]  # due after a quiet period, like any batch
    batcher.add("hydrophone", 100.0)
    assert not batcher.restore("h2", ["hydrophone"], 200.0)
    assert batcher.add("ctd", 110.0) == Noted("h1", opened=False)  # joins the restored one
