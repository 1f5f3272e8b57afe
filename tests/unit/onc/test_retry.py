"""RetryPolicy: Retry-After parsing, full-jitter backoff, attempts, deadline, maintenance."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from pipeline.backoff import parse_retry_after
from pipeline.exceptions import OncUnavailable
from pipeline.onc.options import ClientOptions
from pipeline.onc.retry import RetryState
from tests.clocks import FakeClock


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(value, now=now) == expected


def test_max_attempts_and_full_jitter(options_factory: Callable[..., ClientOptions]) -> None:
    opts = options_factory(max_attempts=4, backoff_base=1.0, backoff_max=3.0, retry_deadline=1e9)
    state = RetryState(opts, rng=random.Random(1), clock=FakeClock(0.0))
    delays = [state.next_delay(OncUnavailable("x", status=500)) for _ in range(4)]
    assert delays[3] is None
    assert all(
        d is not None and 0 <= d <= c for d, c in zip(delays[:3], [1.0, 2.0, 3.0], strict=True)
    )


def test_deadline_stops_retries(options_factory: Callable[..., ClientOptions]) -> None:
    clock = FakeClock(0.0)
    opts = options_factory(max_attempts=100, retry_deadline=10.0)
    state = RetryState(opts, clock=clock)
    assert state.next_delay(OncUnavailable("x", status=502, retry_after=5.0)) == 5.0
    clock.now = 6.0
    assert state.next_delay(OncUnavailable("x", status=502, retry_after=5.0)) is None


def test_maintenance_is_waited_out_without_spending_attempts(
    options_factory: Callable[..., ClientOptions],
) -> None:
    clock = FakeClock(0.0)
    opts = options_factory(max_attempts=2, retry_deadline=5.0, maintenance_max_wait=3600.0)
    state = RetryState(opts, clock=clock)
    for _ in range(50):  # 50 x 60 s = 50 min of 503s: still waited out
        delay = state.next_delay(OncUnavailable("m", status=503, retry_after=60.0))
        assert delay is not None
        assert 60.0 <= delay <= 61.0
        clock.now += delay
    assert state.attempts == 0
    clock.now += 3600.0
    assert state.next_delay(OncUnavailable("m", status=503, retry_after=60.0)) is None


def test_maintenance_time_does_not_eat_the_retry_deadline(
    options_factory: Callable[..., ClientOptions],
) -> None:
    clock = FakeClock(0.0)
    opts = options_factory(max_attempts=5, retry_deadline=10.0, maintenance_max_wait=3600.0)
    state = RetryState(opts, clock=clock)
    state.next_delay(OncUnavailable("m", status=429, retry_after=100.0))
    clock.now = 500.0
    assert state.next_delay(OncUnavailable("x", status=500)) is not None
