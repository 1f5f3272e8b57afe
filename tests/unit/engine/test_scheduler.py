"""next_due, backoff and the two-lane Scheduler, with explicit datetimes only (no sleeping)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from pipeline.engine.scheduler import (
    Lane,
    Scheduler,
    backoff_delay,
    jitter_fraction,
    next_due,
)

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


def test_first_run_is_due_immediately() -> None:
    assert next_due(cadence=MIN, last_started=None, now=T0, spread=0.5, key="s") == T0


def test_without_spread_runs_fall_on_whole_cadences() -> None:
    due = next_due(cadence=10 * MIN, last_started=T0, now=T0 + MIN, spread=0.0, key="s")
    assert due == T0 + 10 * MIN
    late = next_due(
        cadence=10 * MIN, last_started=T0 + 3 * MIN, now=T0 + 4 * MIN, spread=0.0, key="s"
    )
    assert late == T0 + 10 * MIN  # a late start does not push the timetable back


def test_a_late_start_keeps_the_period_at_one_cadence() -> None:
    cadence = 30 * timedelta(seconds=1)
    on_time = next_due(cadence=cadence, last_started=T0, now=T0, spread=1.0, key="nrt-007")
    starts = [on_time + k * cadence + timedelta(seconds=k % 7) for k in range(20)]
    dues = [
        next_due(cadence=cadence, last_started=s, now=s, spread=1.0, key="nrt-007") for s in starts
    ]
    assert dues == [on_time + (k + 1) * cadence for k in range(20)]


def test_phases_are_deterministic_spread_over_the_cadence_and_differ_between_keys() -> None:
    def due(key: str) -> datetime:
        return next_due(cadence=10 * MIN, last_started=T0, now=T0, spread=0.2, key=key)

    assert due("a") == due("a")
    offsets = [due(f"stream-{i}") - T0 for i in range(50)]
    assert all(timedelta(0) < o <= 10 * MIN for o in offsets)  # within one cadence
    assert len(set(offsets)) == 50  # spread apart, not all at the same instant
    phases = [(o - 10 * MIN) % (10 * MIN) for o in offsets]
    assert all(p < 2 * MIN for p in phases)  # [0, spread * cadence) past whole cadences
    assert due("a") == T0 + 10 * MIN * (0.2 * jitter_fraction("a"))


def test_full_spread_shares_the_cadence_evenly() -> None:
    cadence = timedelta(seconds=30)
    dues = sorted(
        next_due(cadence=cadence, last_started=T0, now=T0, spread=1.0, key=f"nrt-{i:03d}")
        for i in range(200)
    )
    # 200 phases over 30 s: no 3-second stretch holds more than twice its fair share (20).
    for i, start in enumerate(dues):
        within = sum(1 for d in dues[i:] if d - start < timedelta(seconds=3))
        assert within <= 40


def test_jitter_fraction_is_stable_across_processes() -> None:
    # Pinned value: a salted hash() would change on every restart, sha256 never does.
    assert jitter_fraction("scalar-sbe37") == jitter_fraction("scalar-sbe37")
    assert 0.0 <= jitter_fraction("") < 1.0
    assert round(jitter_fraction("a"), 12) == round(
        int("ca978112ca1bbdca", 16) / 2**64, 12
    )  # first 8 bytes of sha256("a")


def test_a_clock_stepping_back_delays_at_most_one_cadence() -> None:
    future_start = T0 + timedelta(days=3)
    due = next_due(cadence=10 * MIN, last_started=future_start, now=T0, spread=0.0, key="s")
    assert due == T0 + 10 * MIN


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cadence": timedelta(0)}, "cadence"),
        ({"spread": -0.1}, "spread"),
        ({"spread": 1.5}, "spread"),
        ({"now": datetime(2026, 1, 1)}, "naive"),
    ],
)
def test_next_due_validates(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {
        "cadence": MIN,
        "last_started": T0,
        "now": T0,
        "spread": 0.1,
        "key": "s",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        next_due(**args)  # type: ignore[arg-type]


def test_backoff_doubles_up_to_the_cap() -> None:
    base, cap = timedelta(seconds=30), timedelta(minutes=10)
    delays = [
        backoff_delay(failures=n, base=base, cap=cap, jitter=0.0, key="s") for n in range(1, 8)
    ]
    assert delays == [
        timedelta(seconds=30),
        timedelta(minutes=1),
        timedelta(minutes=2),
        timedelta(minutes=4),
        timedelta(minutes=8),
        cap,
        cap,
    ]
    assert backoff_delay(failures=10_000, base=base, cap=cap, jitter=0.0, key="s") == cap
    jittered = backoff_delay(failures=9, base=base, cap=cap, jitter=0.5, key="s")
    assert cap / 2 <= jittered <= cap
    with pytest.raises(ValueError, match="failures"):
        backoff_delay(failures=0, base=base, cap=cap, jitter=0.0, key="s")


def _scheduler() -> Scheduler:
    return Scheduler(
        spread=0.0, jitter=0.0, backoff_base=timedelta(seconds=30), backoff_cap=timedelta(hours=1)
    )


def test_realtime_lane_comes_first_then_longest_waiting() -> None:
    s = _scheduler()
    s.add("backfill-a", timedelta(hours=1), Lane.BACKFILL)
    s.add("rt-b", MIN, Lane.REALTIME)
    s.add("rt-a", MIN, Lane.REALTIME)
    assert s.due(T0) == ["rt-a", "rt-b", "backfill-a"]

    s.started("rt-a", T0)
    s.finished("rt-a", T0, ok=True)
    s.started("rt-b", T0 + timedelta(seconds=30))
    s.finished("rt-b", T0 + timedelta(seconds=31), ok=True)
    # rt-a became due 30 s before rt-b, so it goes first although both are realtime.
    assert s.due(T0 + 2 * MIN) == ["rt-a", "rt-b", "backfill-a"]


def test_a_running_stream_is_never_due() -> None:
    s = _scheduler()
    s.add("slow", MIN, Lane.BACKFILL)
    s.started("slow", T0)
    assert s.due(T0 + timedelta(hours=5)) == []
    assert s.next_wakeup(T0 + timedelta(hours=5)) is None
    assert s.is_running("slow")
    with pytest.raises(ValueError, match="already running"):
        s.started("slow", T0 + MIN)
    s.finished("slow", T0 + timedelta(hours=5), ok=True)
    assert s.due(T0 + timedelta(hours=5)) == ["slow"]  # overran its cadence: due at once


def test_success_makes_the_stream_due_one_cadence_after_it_started() -> None:
    s = _scheduler()
    s.add("rt", 10 * MIN, Lane.REALTIME)
    s.started("rt", T0)
    s.finished("rt", T0 + MIN, ok=True)
    assert s.due(T0 + 10 * MIN - timedelta(microseconds=1)) == []
    assert s.next_wakeup(T0 + 2 * MIN) == T0 + 10 * MIN
    assert s.due(T0 + 10 * MIN) == ["rt"]


def test_failures_back_off_exponentially_and_success_resets() -> None:
    s = _scheduler()
    s.add("rt", timedelta(seconds=10), Lane.REALTIME)
    now = T0
    waits = []
    for _ in range(9):
        s.started("rt", now)
        s.finished("rt", now, ok=False)
        wakeup = s.next_wakeup(now)
        assert wakeup is not None
        assert s.due(wakeup - timedelta(microseconds=1)) == []
        assert s.due(wakeup) == ["rt"]
        waits.append(wakeup - now)
        now = wakeup
    assert waits[:4] == [timedelta(seconds=s) for s in (30, 60, 120, 240)]
    assert waits[-1] == timedelta(hours=1)  # capped
    assert s.failures("rt") == 9

    s.started("rt", now)
    s.finished("rt", now + timedelta(seconds=1), ok=True)
    assert s.failures("rt") == 0
    assert s.next_wakeup(now + timedelta(seconds=1)) == now + timedelta(seconds=10)


def test_a_failing_stream_never_polls_faster_than_its_cadence() -> None:
    s = _scheduler()
    s.add("every-10-min", 10 * MIN, Lane.REALTIME)
    s.started("every-10-min", T0)
    s.finished("every-10-min", T0, ok=False)
    assert s.next_wakeup(T0) == T0 + 10 * MIN  # not after the 30 s first backoff


def test_a_failing_daily_stream_retries_within_the_cap() -> None:
    s = _scheduler()
    s.add("daily-product", timedelta(days=1), Lane.BACKFILL)
    s.started("daily-product", T0)
    s.finished("daily-product", T0 + MIN, ok=False)
    assert s.next_wakeup(T0 + MIN) == T0 + MIN + timedelta(hours=1)


def test_the_due_time_follows_each_start_a_new_cadence_and_a_clock_stepping_back() -> None:
    s = _scheduler()
    s.add("rt", 10 * MIN, Lane.REALTIME)
    s.started("rt", T0)
    s.finished("rt", T0, ok=True)
    assert s.due_at("rt", T0 + MIN) == T0 + 10 * MIN
    s.update("rt", 30 * MIN, Lane.REALTIME)
    assert s.due_at("rt", T0 + MIN) == T0 + 30 * MIN
    s.started("rt", T0 + 30 * MIN)
    s.finished("rt", T0 + 31 * MIN, ok=True)
    assert s.due_at("rt", T0 + 31 * MIN) == T0 + 60 * MIN
    # The wall clock stepped back a day: due within one cadence of the new now.
    assert s.due_at("rt", T0 - timedelta(days=1)) == T0 - timedelta(days=1) + 30 * MIN
    assert s.due_at("rt", T0 + 31 * MIN) == T0 + 60 * MIN


def test_reload_add_update_remove() -> None:
    s = _scheduler()
    s.add("a", MIN, Lane.REALTIME)
    with pytest.raises(ValueError, match="already scheduled"):
        s.add("a", MIN, Lane.REALTIME)
    s.started("a", T0)
    s.finished("a", T0, ok=True)

    s.update("a", timedelta(hours=1), Lane.BACKFILL)  # history kept, new cadence applies
    assert s.lane("a") is Lane.BACKFILL
    assert s.due(T0 + 59 * MIN) == []
    assert s.next_wakeup(T0) == T0 + timedelta(hours=1)

    s.add("b", MIN, Lane.REALTIME)
    s.started("b", T0)
    s.remove("b")  # removed while running: its finish is ignored, it never comes back
    s.finished("b", T0 + MIN, ok=False)
    assert "b" not in s
    assert s.names() == ["a"]
    s.remove("never-there")
    with pytest.raises(KeyError, match="not scheduled"):
        s.update("ghost", MIN, Lane.REALTIME)
    with pytest.raises(KeyError, match="not scheduled"):
        s.started("ghost", T0)


def test_finishing_a_stream_that_was_not_running_is_a_bug() -> None:
    s = _scheduler()
    s.add("a", MIN, Lane.REALTIME)
    with pytest.raises(ValueError, match="not running"):
        s.finished("a", T0, ok=True)


def test_next_wakeup_is_never_in_the_past_and_none_when_empty() -> None:
    s = _scheduler()
    assert s.next_wakeup(T0) is None
    s.add("a", MIN, Lane.REALTIME)
    assert s.next_wakeup(T0) == T0  # never ran: due now
    s.started("a", T0)
    s.finished("a", T0, ok=True)
    assert s.next_wakeup(T0 + timedelta(hours=2)) == T0 + timedelta(hours=2)


def test_scheduler_spreads_equal_cadences() -> None:
    s = Scheduler(spread=0.5)
    for i in range(20):
        s.add(f"s{i}", 10 * MIN, Lane.REALTIME)
        s.started(f"s{i}", T0)
        s.finished(f"s{i}", T0, ok=True)
    times = {s.due_at(f"s{i}", T0) for i in range(20)}
    assert len(times) == 20
    assert all(T0 < t <= T0 + 10 * MIN for t in times)


def test_constructor_validates() -> None:
    with pytest.raises(ValueError, match="jitter"):
        Scheduler(jitter=2.0)
    with pytest.raises(ValueError, match="spread"):
        Scheduler(spread=-0.1)
    with pytest.raises(ValueError, match="backoff"):
        Scheduler(backoff_base=timedelta(hours=2), backoff_cap=timedelta(hours=1))
    with pytest.raises(ValueError, match="cadence"):
        Scheduler().add("a", timedelta(0), Lane.REALTIME)


def test_first_runs_of_streams_added_together_are_spread_over_the_cadence() -> None:
    scheduler = Scheduler()
    cadence = timedelta(seconds=30)
    for i in range(200):
        scheduler.add(f"s{i}", cadence=cadence, lane=Lane.REALTIME, now=T0)
    firsts = [scheduler.due_at(f"s{i}", T0) for i in range(200)]
    assert all(T0 <= when < T0 + cadence for when in firsts)
    # Spread out: no second of the cadence holds more than a fifth of them.
    per_second = [sum(1 for w in firsts if int((w - T0).total_seconds()) == s) for s in range(30)]
    assert max(per_second) < 40
    assert len(scheduler.due(T0 + cadence)) == 200
    # A daily stream still starts within the spread, not a day later.
    scheduler.add("daily", cadence=timedelta(days=1), lane=Lane.BACKFILL, now=T0)
    assert scheduler.due_at("daily", T0) < T0 + timedelta(seconds=30)
