"""LocalLimiter: the concurrency cap and the GCRA rate cap, on a virtual clock (no timing)."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from pipeline.onc.politeness import LocalLimiter
from tests.clocks import FakeClock


async def test_concurrency_cap_holds_under_50_callers() -> None:
    limiter = LocalLimiter(3, 1e9)
    peak = 0

    async def call() -> None:
        nonlocal peak
        async with limiter.slot():
            peak = max(peak, limiter.in_flight)
            await asyncio.sleep(0.001)

    await asyncio.gather(*(call() for _ in range(50)))
    assert peak == 3
    assert limiter.in_flight == 0


async def test_rate_spacing_on_virtual_clock() -> None:
    vt = FakeClock(0.0)
    limiter = LocalLimiter(100, 5.0, burst=1, clock=vt, sleep=vt.sleep)
    starts: list[float] = []
    for _ in range(11):
        async with limiter.slot():
            starts.append(vt.now)
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert all(g == pytest.approx(0.2) for g in gaps)


async def test_burst_allows_back_to_back_then_spaces() -> None:
    vt = FakeClock(0.0)
    limiter = LocalLimiter(100, 2.0, burst=3, clock=vt, sleep=vt.sleep)
    starts: list[float] = []
    for _ in range(6):
        async with limiter.slot():
            starts.append(vt.now)
    assert starts[:3] == [0.0, 0.0, 0.0]
    assert starts[3:] == pytest.approx([0.5, 1.0, 1.5])
    # any 1 s window holds at most rate + burst starts
    for t in starts:
        assert sum(1 for s in starts if t <= s < t + 1.0) <= 2 + 3


async def test_slot_released_when_the_body_raises() -> None:
    limiter = LocalLimiter(1, 1e9)
    with pytest.raises(RuntimeError):
        async with limiter.slot():
            raise RuntimeError("boom")
    assert limiter.in_flight == 0
    async with asyncio.timeout(1):
        async with limiter.slot():
            assert limiter.in_flight == 1


def test_bad_limits_refused() -> None:
    with pytest.raises(ValueError, match="max_concurrency"):
        LocalLimiter(0, 1.0)
