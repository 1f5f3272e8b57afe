"""Window alignment, labels and plan_windows, with explicit datetimes only."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline.engine.windows import WindowPlan, plan_windows
from pipeline.records import Window, align_down, format_instant

DAY = timedelta(days=1)
HOUR = timedelta(hours=1)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc,arg-type]


def test_align_down_uses_epoch_multiples() -> None:
    assert align_down(utc(2026, 11, 24, 13, 7, 1), DAY) == utc(2026, 11, 24)
    assert align_down(utc(2026, 11, 24), DAY) == utc(2026, 11, 24)
    assert align_down(utc(2026, 11, 24, 13, 7, 1), HOUR) == utc(2026, 11, 24, 13)
    # 7-hour windows don't restart at midnight: they count from 1970-01-01T00:00Z.
    # 2026-11-24T01:00Z is epoch hour 498745 = 7 * 71249 + 2, so the window began 2 h earlier.
    assert align_down(utc(2026, 11, 24, 1), timedelta(hours=7)) == utc(2026, 11, 23, 23)
    assert align_down(utc(1969, 12, 31, 23, 30), HOUR) == utc(1969, 12, 31, 23)


def test_alignment_ignores_the_callers_offset() -> None:
    vancouver = timezone(timedelta(hours=-8))
    local_evening = datetime(2026, 11, 23, 18, 0, tzinfo=vancouver)  # 02:00Z on the 24th
    assert align_down(local_evening, DAY) == utc(2026, 11, 24)
    assert Window.containing(local_evening, DAY) == Window(utc(2026, 11, 24), utc(2026, 11, 25))


def test_window_containing_and_contains() -> None:
    window = Window.containing(utc(2026, 11, 24, 23, 59, 59, 999999), DAY)
    assert window == Window(utc(2026, 11, 24), utc(2026, 11, 25))
    assert window.size == DAY
    assert window.contains(utc(2026, 11, 24))
    assert not window.contains(utc(2026, 11, 25))  # half-open


def test_labels_are_compact_utc() -> None:
    assert format_instant(utc(2026, 11, 24)) == "20261124T000000Z"
    assert format_instant(datetime(2026, 11, 24, 9, 30, tzinfo=timezone(timedelta(hours=9)))) == (
        "20261124T003000Z"
    )
    assert format_instant(utc(999, 1, 2, 3, 4, 5)) == "09990102T030405Z"
    window = Window(utc(2026, 11, 24), utc(2026, 11, 25))
    assert window.label() == "20261124T000000Z_20261125T000000Z"
    # Same start, different size: different names, so a config change can't overwrite.
    assert Window(utc(2026, 11, 24), utc(2026, 11, 24, 1)).label() != window.label()


@pytest.mark.parametrize(
    "size", [timedelta(0), timedelta(seconds=-1), timedelta(milliseconds=1500)]
)
def test_bad_sizes_are_refused(size: timedelta) -> None:
    with pytest.raises(ValueError, match="whole number of seconds"):
        align_down(utc(2026, 1, 1), size)


def test_bad_windows_and_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="not after"):
        Window(utc(2026, 1, 2), utc(2026, 1, 1))
    with pytest.raises(ValueError, match="naive"):
        Window(datetime(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(ValueError, match="not aligned"):
        Window(utc(2026, 1, 1, 6), utc(2026, 1, 2, 6))
    with pytest.raises(ValueError, match="whole number of seconds"):
        Window(utc(2026, 1, 1), utc(2026, 1, 1, 0, 0, 0, 500))
    assert Window(utc(2026, 1, 1, 6), utc(2026, 1, 1, 12)).size == timedelta(hours=6)
    with pytest.raises(ValueError, match="naive"):
        plan_windows(cursor=None, start=datetime(2026, 1, 1), horizon=utc(2026, 1, 2), size=DAY)


def test_first_run_from_start_to_horizon() -> None:
    plans = plan_windows(
        cursor=None, start=utc(2026, 11, 22, 6), horizon=utc(2026, 11, 24, 12), size=DAY
    )
    assert plans == [
        WindowPlan(
            Window(utc(2026, 11, 22), utc(2026, 11, 23)),
            fetch_from=utc(2026, 11, 22, 6),
            fetch_to=utc(2026, 11, 23),
            complete=True,
        ),
        WindowPlan(
            Window(utc(2026, 11, 23), utc(2026, 11, 24)),
            fetch_from=utc(2026, 11, 23),
            fetch_to=utc(2026, 11, 24),
            complete=True,
        ),
        WindowPlan(
            Window(utc(2026, 11, 24), utc(2026, 11, 25)),
            fetch_from=utc(2026, 11, 24),
            fetch_to=utc(2026, 11, 24, 12),
            complete=False,
        ),
    ]
    assert plans[0].resumes_mid_window
    assert not plans[1].resumes_mid_window


def test_resume_from_cursor() -> None:
    plans = plan_windows(
        cursor=utc(2026, 11, 24, 10, 30),
        start=utc(2026, 1, 1),
        horizon=utc(2026, 11, 24, 13),
        size=HOUR,
    )
    assert [(p.fetch_from, p.fetch_to, p.complete) for p in plans] == [
        (utc(2026, 11, 24, 10, 30), utc(2026, 11, 24, 11), True),
        (utc(2026, 11, 24, 11), utc(2026, 11, 24, 12), True),
        (utc(2026, 11, 24, 12), utc(2026, 11, 24, 13), True),  # ends exactly at the horizon
    ]


def test_lookback_rereads_but_never_before_start() -> None:
    plans = plan_windows(
        cursor=utc(2026, 11, 24, 10, 30),
        start=utc(2026, 1, 1),
        horizon=utc(2026, 11, 24, 11),
        size=HOUR,
        lookback=timedelta(minutes=90),
    )
    assert [p.window.start for p in plans] == [utc(2026, 11, 24, 9), utc(2026, 11, 24, 10)]
    assert plans[0].fetch_from == utc(2026, 11, 24, 9)

    clipped = plan_windows(
        cursor=utc(2026, 11, 24, 10, 30),
        start=utc(2026, 11, 24, 10, 15),
        horizon=utc(2026, 11, 24, 11),
        size=HOUR,
        lookback=timedelta(hours=5),
    )
    assert [(p.window.start, p.fetch_from) for p in clipped] == [
        (utc(2026, 11, 24, 10), utc(2026, 11, 24, 10, 15))
    ]


@pytest.mark.parametrize(
    "cursor", [utc(2026, 11, 24, 12), utc(2026, 11, 24, 12, 0, 0, 1), utc(2026, 11, 25)]
)
def test_nothing_due_when_caught_up(cursor: datetime) -> None:
    assert (
        plan_windows(cursor=cursor, start=utc(2026, 1, 1), horizon=utc(2026, 11, 24, 12), size=DAY)
        == []
    )


def test_start_after_horizon_gives_nothing() -> None:
    assert plan_windows(cursor=None, start=utc(2027, 1, 1), horizon=utc(2026, 1, 1), size=DAY) == []


def test_no_window_at_or_after_horizon_or_before_start() -> None:
    plans = plan_windows(
        cursor=None, start=utc(2026, 11, 24, 3), horizon=utc(2026, 11, 24, 6), size=HOUR
    )
    assert all(p.window.end > utc(2026, 11, 24, 3) for p in plans)
    assert all(p.window.start < utc(2026, 11, 24, 6) for p in plans)
    assert [p.window.start.hour for p in plans] == [3, 4, 5]


def test_limit_takes_the_oldest_windows() -> None:
    plans = plan_windows(
        cursor=None, start=utc(2009, 1, 1), horizon=utc(2026, 11, 24), size=HOUR, limit=3
    )
    assert [p.window.start for p in plans] == [utc(2009, 1, 1, h) for h in range(3)]
    with pytest.raises(ValueError, match="limit"):
        plan_windows(cursor=None, start=utc(2009, 1, 1), horizon=utc(2026, 1, 1), size=DAY, limit=0)


def test_negative_lookback_is_refused() -> None:
    with pytest.raises(ValueError, match="lookback"):
        plan_windows(
            cursor=None,
            start=utc(2026, 1, 1),
            horizon=utc(2026, 1, 2),
            size=DAY,
            lookback=timedelta(seconds=-1),
        )


def test_windows_are_contiguous_and_tile_the_range() -> None:
    start, horizon = utc(2026, 2, 27, 5, 17), utc(2026, 3, 2, 1, 2, 3)
    plans = plan_windows(cursor=None, start=start, horizon=horizon, size=timedelta(hours=5))
    assert plans[0].fetch_from == start
    assert plans[-1].fetch_to == horizon
    for before, after in itertools.pairwise(plans):
        assert before.window.end == after.window.start
        assert before.fetch_to == after.fetch_from
        assert before.complete
    assert not plans[-1].complete
