"""Partitions: which file a window's records go to, and its fixed-width name."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from pipeline.outputs.partition import Partition
from pipeline.records import Window
from pipeline.times import epoch_ms


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc,arg-type]


@pytest.mark.parametrize(
    ("kind", "start", "end", "label"),
    [
        ("hourly", utc(2026, 11, 20, 6), utc(2026, 11, 20, 7), "2026112006"),
        ("daily", utc(2026, 11, 20), utc(2026, 11, 21), "20261120"),
        ("monthly", utc(2026, 11, 1), utc(2026, 12, 1), "202611"),
    ],
)
def test_partition_containing_an_instant(
    kind: str, start: datetime, end: datetime, label: str
) -> None:
    part = Partition.containing(utc(2026, 11, 20, 6, 59, 59), kind)  # type: ignore[arg-type]
    assert (part.start, part.end, part.label()) == (start, end, label)


def test_december_rolls_into_the_next_year() -> None:
    part = Partition.containing(utc(2026, 12, 31, 23, 59), "monthly")
    assert (part.start, part.end) == (utc(2026, 12, 1), utc(2027, 1, 1))


def test_offsets_are_normalised_to_utc() -> None:
    east = datetime(2026, 11, 21, 1, 30, tzinfo=__import__("datetime").timezone(timedelta(hours=3)))
    assert Partition.containing(east, "daily").label() == "20261120"


def test_every_window_of_a_day_maps_to_that_days_file() -> None:
    start = utc(2026, 11, 20)
    names = {
        Partition.of_window(
            Window(start + i * timedelta(hours=1), start + (i + 1) * timedelta(hours=1)), "daily"
        ).relative_path("onc_x", ".nc")
        for i in range(24)
    }
    assert names == {Path("onc_x/2026/onc_x_20261120.nc")}


def test_a_window_larger_than_the_partition_is_refused() -> None:
    with pytest.raises(ValueError, match="larger than a hourly partition"):
        Partition.of_window(Window(utc(2026, 11, 20), utc(2026, 11, 21)), "hourly")


def test_naive_instants_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Partition.containing(datetime(2026, 11, 20), "daily")


def test_epoch_ms() -> None:
    assert epoch_ms(utc(1970, 1, 1, 0, 0, 1)) == 1000
    assert (
        Partition.containing(utc(2026, 11, 20, 5), "daily").end_ms
        - Partition.containing(utc(2026, 11, 20, 5), "daily").start_ms
        == 86_400_000
    )
