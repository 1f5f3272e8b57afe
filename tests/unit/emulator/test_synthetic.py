"""Synthetic data: pure function of (seed, sensor, time), paging-independent, with gaps."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from pipeline.emulator.catalogue import DEVICES, ms
from pipeline.emulator.clock import EmulatorClock
from pipeline.emulator.synthetic import GAP_FILL, Synthesizer, iso_times, raw_lines

CTD = DEVICES["SBECTD16p7128"]
START, END = ms("2023-03-01T00:00:00.000Z"), ms("2023-03-02T00:00:00.000Z")


def test_rows_do_not_depend_on_how_the_window_is_split() -> None:
    sig = Synthesizer(7).signal(CTD)
    whole = sig.rows(START, END, 10**9, gap_fill=True)
    mid = int(whole.times[40_000])
    left = sig.rows(START, mid, 10**9, gap_fill=True)
    right = sig.rows(mid, END, 10**9, gap_fill=True)
    assert np.array_equal(np.concatenate([left.times, right.times]), whole.times)
    joined = np.concatenate([left.values, right.values], axis=1)
    assert np.array_equal(joined, whole.values, equal_nan=True)


def test_seed_changes_values_and_same_seed_repeats() -> None:
    a = Synthesizer(7).signal(CTD).rows(START, START + 60_000, 100, gap_fill=True)
    b = Synthesizer(7).signal(CTD).rows(START, START + 60_000, 100, gap_fill=True)
    c = Synthesizer(8).signal(CTD).rows(START, START + 60_000, 100, gap_fill=True)
    assert np.array_equal(a.values, b.values, equal_nan=True)
    assert not np.array_equal(a.values, c.values, equal_nan=True)


def test_gaps_and_gap_fill_rows_exist_and_times_increase() -> None:
    end = START + 4 * 86_400_000
    rows = Synthesizer(7).signal(CTD).rows(START, end, 10**9, gap_fill=True)
    assert np.all(np.diff(rows.times) > 0)
    gap = rows.kinds == GAP_FILL
    assert gap.any()
    assert np.isnan(rows.values[:, gap]).all()
    assert (rows.flags[:, gap] == 9).all()
    assert len(rows) < 4 * 86_400  # some outages leave no rows at all
    readings_only = Synthesizer(7).signal(CTD).rows(START, end, 10**9, gap_fill=False)
    assert len(readings_only) == len(rows) - int(gap.sum())


def test_formats() -> None:
    rows = (
        Synthesizer(7)
        .signal(DEVICES["BPR_889"])
        .rows(ms("2020-01-28T00:00:00.000Z"), ms("2020-01-28T00:00:03.000Z"), 10, gap_fill=False)
    )
    assert iso_times(rows.times)[0].startswith("2020-01-28T00:00:00.")
    assert all(len(x) == 26 and int(x, 16) >= 0 for x in raw_lines(DEVICES["BPR_889"], rows))


def test_clock_pin_advance_and_release() -> None:
    clock = EmulatorClock(datetime(2024, 1, 1))
    assert clock.now() == datetime(2024, 1, 1, tzinfo=UTC)
    assert clock.pinned
    clock.advance(1.5)
    assert clock.now_ms() == ms("2024-01-01T00:00:01.500Z")
    clock.resume_real()
    clock.advance(3600)
    assert not clock.pinned
    assert clock.now() > datetime.now(UTC)
