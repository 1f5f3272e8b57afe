"""The shared UTC helpers: one epoch, one ONC time format, naive datetimes refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from pipeline.times import as_utc, epoch_ms, format_onc_time, from_epoch_ms


def test_epoch_ms_round_trips_and_floors_before_1970() -> None:
    instant = datetime(2026, 11, 25, 12, 0, 0, 123000, tzinfo=UTC)
    assert from_epoch_ms(epoch_ms(instant)) == instant
    assert epoch_ms(datetime(1969, 12, 31, 23, 59, 59, 999500, tzinfo=UTC)) == -1


def test_onc_time_format_is_utc_with_milliseconds() -> None:
    pacific = timezone(timedelta(hours=-8))
    instant = datetime(2026, 11, 25, 4, 0, 0, 7999, tzinfo=pacific)
    assert format_onc_time(instant) == "2026-11-25T12:00:00.007Z"


def test_naive_datetimes_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="cursor must be timezone-aware"):
        as_utc(datetime(2026, 1, 1), "cursor")
