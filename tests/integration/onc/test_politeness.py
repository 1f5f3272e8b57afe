"""The concurrency and rate caps hold under 50 concurrent callers, proven from the request log."""

from __future__ import annotations

import asyncio
from bisect import bisect_left

from pipeline.onc import DataSource, RawQuery
from tests.integration.onc.conftest import client, running_emulator

CALLERS = 50
MAX_CONCURRENCY = 3
MAX_RATE = 20.0
BURST = 1


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The largest number of [start, end] intervals that share an instant."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    # At equal instants ends sort before starts (-1 < 1): touching intervals do not overlap.
    peak = current = 0
    for _, delta in events:
        current += delta
        peak = max(peak, current)
    return peak


def max_in_window(starts: list[float], width: float = 1.0) -> int:
    """The largest number of starts inside any half-open window [t, t + width)."""
    ordered = sorted(starts)
    return max(bisect_left(ordered, t + width) - i for i, t in enumerate(ordered))


async def test_caps_hold_under_50_concurrent_callers() -> None:
    # Each reply takes 0.15-0.25 s, so without the caps 50 callers would overlap ~50 deep.
    latency = {"rules": [{"kind": "latency", "endpoint": "*", "seconds": 0.15, "jitter": 0.1}]}
    async with running_emulator(faults=latency) as emu:
        capped = client(
            emu, max_concurrency=MAX_CONCURRENCY, max_rate_per_s=MAX_RATE, rate_burst=BURST
        )
        async with capped as onc:

            async def caller(i: int) -> int:
                minute = f"2020-01-01T00:{i:02d}:00.000Z"
                until = f"2020-01-01T00:{i:02d}:05.000Z"
                query = RawQuery(DataSource(device_code="BPR_889"), minute, until)
                return sum([len(p) async for p in onc.raw_pages(query)])

            rows = await asyncio.gather(*(caller(i) for i in range(CALLERS)))
        records = [r for r in emu.requests if r.endpoint == "rawdata.device"]
    assert all(n > 0 for n in rows)
    assert len(records) == CALLERS
    intervals = [(r.started_monotonic, r.ended_monotonic) for r in records]
    peak = max_overlap(intervals)
    assert peak <= MAX_CONCURRENCY
    assert peak >= 2  # the callers really competed: the cap, not luck, kept it at 3
    assert emu.requests.peak_in_flight <= MAX_CONCURRENCY
    assert max_in_window([r.started_monotonic for r in records]) <= MAX_RATE + BURST


def test_window_helpers() -> None:
    assert max_overlap([(0, 1), (0.5, 2), (1, 3)]) == 2
    assert max_overlap([(0, 1), (1, 2)]) == 1
    assert max_in_window([0.0, 0.5, 0.99, 1.0, 1.5]) == 3


async def test_discovery_requests_go_before_data_requests_waiting_for_a_slot() -> None:
    """With one slot, a discovery question asked after three data pages is sent right after
    the page in flight (it is urgent), and the cap still holds."""
    # Long enough that the first page is still in flight when the question is asked.
    latency = {"rules": [{"kind": "latency", "endpoint": "*", "seconds": 0.25}]}
    async with running_emulator(faults=latency) as emu, client(emu, max_concurrency=1) as onc:

        async def page(i: int) -> None:
            minute = f"2020-01-01T00:{i:02d}:00.000Z"
            until = f"2020-01-01T00:{i:02d}:05.000Z"
            query = RawQuery(DataSource(device_code="BPR_889"), minute, until)
            async for _ in onc.raw_pages(query):
                pass

        pages = [asyncio.create_task(page(i)) for i in range(4)]
        for _ in range(50):
            await asyncio.sleep(0)  # one page in flight, the other three waiting for the slot
        await onc.deployments(device_code="BPR_889")
        await asyncio.gather(*pages)
    endpoints = [r.endpoint for r in sorted(emu.requests, key=lambda r: r.started_monotonic)]
    assert endpoints[:2] == ["rawdata.device", "deployments"]
    assert endpoints.count("rawdata.device") == 4
    assert emu.requests.peak_in_flight == 1
