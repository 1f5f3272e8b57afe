"""The records module repeats two tiny time facts instead of importing pipeline.times (it
imports nothing of ours): they must stay equal to the originals."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pipeline import records, times


def test_the_epoch_and_utc_conversion_match_pipeline_times() -> None:
    assert records._EPOCH == times.EPOCH
    east = datetime(2026, 11, 20, 3, tzinfo=timezone(timedelta(hours=3)))
    assert records._as_utc(east, "x") == times.as_utc(east, "x")
    with pytest.raises(ValueError, match="x must be timezone-aware"):
        records._as_utc(datetime(2026, 11, 20), "x")
