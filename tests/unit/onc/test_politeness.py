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


async def _settle() -> None:
    for _ in range(10):  # let every task run up to its next wait
        await asyncio.sleep(0)


async def test_a_freed_slot_goes_to_an_urgent_caller_before_earlier_ones() -> None:
    limiter = LocalLimiter(1, 1e9)
    release = asyncio.Event()
    order: list[str] = []

    async def call(name: str, *, urgent: bool = False) -> None:
        async with limiter.slot(urgent=urgent):
            order.append(name)
            await release.wait()

    holder = asyncio.create_task(call("holder"))
    await _settle()
    waiting = [asyncio.create_task(call(f"data{i}")) for i in range(3)]
    await _settle()
    waiting.append(asyncio.create_task(call("describe", urgent=True)))
    await _settle()
    assert order == ["holder"]
    release.set()
    await asyncio.gather(holder, *waiting)
    assert order == ["holder", "describe", "data0", "data1", "data2"]


async def test_the_cap_holds_with_urgent_callers_and_cancellations() -> None:
    """Urgent callers go first, never past the cap; a cancelled waiter, or one cancelled
    after it was handed a slot, leaks no slot."""
    limiter = LocalLimiter(3, 1e9)
    peak = 0

    async def call(i: int) -> None:
        nonlocal peak
        async with limiter.slot(urgent=i % 3 == 0):
            peak = max(peak, limiter.in_flight)
            assert limiter.in_flight <= 3
            await asyncio.sleep(0)
            await asyncio.sleep(0)

    tasks = [asyncio.create_task(call(i)) for i in range(60)]
    await asyncio.sleep(0)
    for task in tasks[5::7]:
        task.cancel()  # some while waiting, some handed a slot they never used
    await _settle()
    for task in tasks[6::11]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert peak == 3
    assert limiter.in_flight == 0
    # Every slot came back: three callers at once get theirs without waiting.
    held = [limiter.slot() for _ in range(3)]
    async with asyncio.timeout(1):
        for slot in held:
            await slot.__aenter__()
    assert limiter.in_flight == 3
    for slot in held:
        await slot.__aexit__(None, None, None)


async def test_a_waiter_cancelled_after_its_grant_passes_the_slot_on() -> None:
    limiter = LocalLimiter(1, 1e9)
    entered: list[str] = []

    async def call(name: str) -> None:
        async with limiter.slot():
            entered.append(name)

    first = limiter.slot()
    await first.__aenter__()
    granted = asyncio.create_task(call("granted"))
    after = asyncio.create_task(call("after"))
    await _settle()
    await first.__aexit__(None, None, None)  # hands the slot to `granted`...
    granted.cancel()  # ...which is cancelled before it runs
    async with asyncio.timeout(1):
        await asyncio.gather(granted, after, return_exceptions=True)
    assert entered == ["after"]
    assert limiter.in_flight == 0
