"""Gathering a pass's windows: which consecutive windows are fetched and built as one unit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pipeline.engine.windows import (
    GATHER_MAX_WINDOWS,
    WindowGroup,
    gather_span,
    group_plans,
    plan_windows,
    within_limit,
)
from pipeline.records import Window

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc,arg-type]


def groups(
    start: datetime,
    horizon: datetime,
    *,
    size: timedelta = HOUR,
    partition: str = "daily",
    cursor: datetime | None = None,
    lookback: timedelta = timedelta(0),
) -> list[WindowGroup]:
    plans = plan_windows(cursor=cursor, start=start, horizon=horizon, size=size, lookback=lookback)
    gathered = group_plans(plans, gather_span(partition))
    # Nothing lost, nothing repeated, order kept: the groups are the plans, cut.
    assert [plan for group in gathered for plan in group.members] == plans
    return gathered


def spans(gathered: list[WindowGroup]) -> list[tuple[datetime, datetime, int]]:
    return [(g.fetch_from, g.fetch_to, len(g.members)) for g in gathered]


def test_a_two_day_backfill_is_one_group_per_day_covering_the_day() -> None:
    gathered = groups(utc(2026, 11, 18), utc(2026, 11, 20))
    assert spans(gathered) == [
        (utc(2026, 11, 18), utc(2026, 11, 19), 24),
        (utc(2026, 11, 19), utc(2026, 11, 20), 24),
    ]
    assert [g.covering for g in gathered] == [
        Window(utc(2026, 11, 18), utc(2026, 11, 19)),
        Window(utc(2026, 11, 19), utc(2026, 11, 20)),
    ]
    assert all(g.complete for g in gathered)
    assert gathered[0].label() == "20261118T000000Z_20261119T000000Z"


def test_an_unaligned_backfill_gathers_from_its_start_and_takes_the_open_window_along() -> None:
    # From 05:20 on day 1 to 14:40 on day 2: the first window resumes mid-way; the last is in
    # progress and joins its day's group (one request series), completed on a later pass.
    gathered = groups(utc(2026, 11, 18, 5, 20), utc(2026, 11, 19, 14, 40))
    assert spans(gathered) == [
        (utc(2026, 11, 18, 5, 20), utc(2026, 11, 19), 19),
        (utc(2026, 11, 19), utc(2026, 11, 19, 14, 40), 15),
    ]
    assert gathered[0].covering == Window(utc(2026, 11, 18), utc(2026, 11, 19))
    assert gathered[0].complete
    last = gathered[-1]
    assert not last.complete
    assert not last.members[-1].complete
    assert all(plan.complete for plan in last.members[:-1])
    assert last.covering == Window(utc(2026, 11, 19), utc(2026, 11, 20))
    assert last.label() == "20261119T000000Z_20261119T150000Z"


def test_the_open_window_of_a_new_day_stays_alone() -> None:
    gathered = groups(utc(2026, 11, 18, 20), utc(2026, 11, 19, 0, 30))
    assert spans(gathered) == [
        (utc(2026, 11, 18, 20), utc(2026, 11, 19), 4),
        (utc(2026, 11, 19), utc(2026, 11, 19, 0, 30), 1),
    ]
    assert gathered[-1].covering == gathered[-1].members[0].window


def test_a_poll_that_crosses_an_hour_is_one_fetch_of_its_partition() -> None:
    gathered = groups(
        utc(2026, 11, 18), utc(2026, 11, 19, 23, 0, 20), cursor=utc(2026, 11, 19, 22, 59, 50)
    )
    assert spans(gathered) == [(utc(2026, 11, 19, 22, 59, 50), utc(2026, 11, 19, 23, 0, 20), 2)]
    [poll] = gathered
    assert not poll.complete
    assert poll.covering == Window(utc(2026, 11, 19), utc(2026, 11, 20))
    # Across midnight the partitions differ: two fetches, as before.
    midnight = groups(
        utc(2026, 11, 18), utc(2026, 11, 20, 0, 0, 20), cursor=utc(2026, 11, 19, 23, 59, 50)
    )
    assert [len(g.members) for g in midnight] == [1, 1]
    # In hourly partitions every hour is its own file: two fetches.
    hourly = groups(
        utc(2026, 11, 18),
        utc(2026, 11, 19, 23, 0, 20),
        cursor=utc(2026, 11, 19, 22, 59, 50),
        partition="hourly",
    )
    assert [len(g.members) for g in hourly] == [1, 1]


def test_a_near_real_time_poll_is_one_window_alone() -> None:
    gathered = groups(utc(2026, 11, 18), utc(2026, 11, 19, 6, 30), cursor=utc(2026, 11, 19, 6, 10))
    assert spans(gathered) == [(utc(2026, 11, 19, 6, 10), utc(2026, 11, 19, 6, 30), 1)]


def test_a_catch_up_after_downtime_gathers_what_is_complete() -> None:
    gathered = groups(
        utc(2026, 11, 1),
        utc(2026, 11, 19, 9, 30),
        cursor=utc(2026, 11, 19, 2, 45),
        lookback=timedelta(minutes=20),
    )
    # The lookback reaches into 02:00; 02:00..09:00 is complete, 09:00 in progress: one group.
    assert spans(gathered) == [(utc(2026, 11, 19, 2, 25), utc(2026, 11, 19, 9, 30), 8)]
    assert not gathered[0].complete


def test_hourly_partitions_gather_within_the_hour_only() -> None:
    gathered = groups(
        utc(2026, 11, 18, 5, 30),
        utc(2026, 11, 18, 8),
        size=timedelta(minutes=15),
        partition="hourly",
    )
    assert spans(gathered) == [
        (utc(2026, 11, 18, 5, 30), utc(2026, 11, 18, 6), 2),
        (utc(2026, 11, 18, 6), utc(2026, 11, 18, 7), 4),
        (utc(2026, 11, 18, 7), utc(2026, 11, 18, 8), 4),
    ]
    assert gathered[0].covering == Window(utc(2026, 11, 18, 5), utc(2026, 11, 18, 6))
    # Hour windows in hour partitions: every window is its own partition, nothing to gather.
    hours = groups(utc(2026, 11, 18), utc(2026, 11, 18, 5), partition="hourly")
    assert [len(g.members) for g in hours] == [1] * 5


def test_monthly_partitions_are_gathered_a_day_at_most() -> None:
    gathered = groups(utc(2026, 11, 29, 12), utc(2026, 12, 2), partition="monthly")
    assert spans(gathered) == [
        (utc(2026, 11, 29, 12), utc(2026, 11, 30), 12),
        (utc(2026, 11, 30), utc(2026, 12, 1), 24),
        (utc(2026, 12, 1), utc(2026, 12, 2), 24),
    ]


def test_day_windows_are_never_gathered() -> None:
    gathered = groups(utc(2026, 11, 10), utc(2026, 11, 14), size=DAY)
    assert spans(gathered) == [
        (utc(2026, 11, d), utc(2026, 11, d + 1), 1) for d in (10, 11, 12, 13)
    ]


def test_a_failed_group_splits_into_its_windows_alone() -> None:
    group = groups(utc(2026, 11, 18, 20), utc(2026, 11, 19))[0]
    singles = group.singles()
    assert [s.members for s in singles] == [(plan,) for plan in group.members]
    assert [s.covering for s in singles] == group.windows
    assert [s.fetch_to for s in singles] == [utc(2026, 11, 18, h) for h in (21, 22, 23)] + [
        utc(2026, 11, 19)
    ]


def test_a_pass_limit_leaves_a_group_it_would_cut_to_the_next_pass() -> None:
    # 24 windows a pass from 05:00: the limit would cut the second day's group at 05:00, so
    # the pass stops at midnight and the next one builds the second day whole.
    plans = plan_windows(
        cursor=utc(2026, 11, 18, 5),
        start=utc(2026, 11, 1),
        horizon=utc(2026, 11, 21),
        size=HOUR,
        limit=25,
    )
    kept = within_limit(group_plans(plans, DAY), 24)
    assert spans(kept) == [(utc(2026, 11, 18, 5), utc(2026, 11, 19), 19)]
    # Aligned, a whole day fits: the window past the limit opens the next day's group.
    aligned = plan_windows(
        cursor=utc(2026, 11, 18),
        start=utc(2026, 11, 1),
        horizon=utc(2026, 11, 21),
        size=HOUR,
        limit=25,
    )
    assert spans(within_limit(group_plans(aligned, DAY), 24)) == [
        (utc(2026, 11, 18), utc(2026, 11, 19), 24)
    ]


def test_a_first_group_larger_than_the_limit_is_cut_to_fit() -> None:
    plans = plan_windows(
        cursor=None,
        start=utc(2026, 11, 18),
        horizon=utc(2026, 11, 19),
        size=timedelta(minutes=10),
        limit=25,
    )
    [kept] = within_limit(group_plans(plans, DAY), 24)
    assert (kept.fetch_from, kept.fetch_to, len(kept.members)) == (
        utc(2026, 11, 18),
        utc(2026, 11, 18, 4),
        24,
    )
    assert kept.covering == Window(utc(2026, 11, 18), utc(2026, 11, 19))
    [one] = within_limit(group_plans(plans, DAY), 1)
    assert one.covering == one.members[0].window  # a group of one: the window as planned


def test_minute_windows_are_gathered_a_bounded_number_at_a_time() -> None:
    # A JSON Lines writer per window holds a temporary file open until its group publishes.
    gathered = groups(utc(2026, 11, 18), utc(2026, 11, 19), size=timedelta(minutes=1))
    assert [len(g.members) for g in gathered] == [GATHER_MAX_WINDOWS] * 15
    assert {g.covering for g in gathered} == {Window(utc(2026, 11, 18), utc(2026, 11, 19))}
