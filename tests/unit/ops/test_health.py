"""LoopMonitor: lag bookkeeping (pure) and a real heartbeat noticing a blocked loop."""

from __future__ import annotations

import asyncio
import time

import pytest

from pipeline.ops.health import LoopMonitor


def test_not_started_is_unhealthy() -> None:
    report = LoopMonitor(interval=1, threshold=5, clock=lambda: 100.0).report()
    assert not report.healthy
    assert report.detail == "heartbeat not started"
    assert report.as_json()["status"] == "unhealthy"


def test_small_lag_is_healthy_and_large_lag_is_not() -> None:
    monitor = LoopMonitor(interval=1, threshold=5, clock=lambda: 0.0)
    monitor.beat(0.2, now=10.0)
    assert monitor.report(now=10.5).healthy
    monitor.beat(7.0, now=18.0)
    report = monitor.report(now=18.0)
    assert not report.healthy
    assert "lag 7.00s" in report.detail
    # The next punctual beat makes it healthy again; the maximum is remembered.
    monitor.beat(0.0, now=19.0)
    report = monitor.report(now=19.0)
    assert report.healthy
    assert report.max_lag_s == 7.0
    assert report.beats == 3


def test_overdue_heartbeat_is_unhealthy() -> None:
    monitor = LoopMonitor(interval=1, threshold=5, clock=lambda: 0.0)
    monitor.beat(0.0, now=10.0)
    assert monitor.report(now=16.0).healthy  # exactly interval + threshold: still fine
    report = monitor.report(now=16.5)
    assert not report.healthy
    assert "overdue" in report.detail


def test_negative_lag_is_clamped() -> None:
    monitor = LoopMonitor(interval=1, threshold=5)
    monitor.beat(-0.3, now=1.0)
    assert monitor.lag == 0.0


def test_rejects_non_positive_settings() -> None:
    with pytest.raises(ValueError, match="positive"):
        LoopMonitor(interval=0)


async def test_heartbeat_measures_a_blocked_loop() -> None:
    monitor = LoopMonitor(interval=0.05, threshold=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(monitor.run(stop))
    while monitor.report().beats < 1:  # noqa: ASYNC110 - polls the monitor's own counter
        await asyncio.sleep(0.005)
    beats = monitor.report().beats
    time.sleep(0.3)  # noqa: ASYNC251 - deliberately blocks the event loop
    while monitor.report().beats == beats:  # noqa: ASYNC110 - as above
        await asyncio.sleep(0.001)
    report = monitor.report()
    # The first beat after the block woke at least 0.3 - interval seconds late.
    assert report.lag_s >= 0.25
    assert not report.healthy
    stop.set()
    await task
    assert task.done()
